"""``python -m harmony_core <command> ...``: one entry point, one module per subcommand.

Each subcommand lives in its own module exposing ``main(argv)`` (returning an exit status, or
anything else for 0); ``SUBCOMMANDS`` maps the command name to that module (relative to this
package) and a one-line help. Only the chosen module is imported, so ``python -m harmony_core
--help`` stays instant. Add a command by adding one entry.

Errors a user can fix (bad option values, missing files, an existing run) are printed as one line
on stderr with exit status 2; a non-finite loss during training exits with status 1.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "generate": (".cli.generate", "generate a synchronized clip with sound as an MP4"),
    "eval": (".cli.eval", "measure synchronization of generated clips (text CFG vs SyncCFG)"),
    "train": (".training.cli", "train a Harmony model (stage presets, latent cache, DDP/FSDP, resume, bundle)"),
    "build-default": (".cli.build_default", "reproduce the shipped tiny model from scratch (VAEs + DiT)"),
    "memory": (".memory.cli", "estimate the memory of a run (weights, activations, guidance passes, offload)"),
    "mmaudio-vae": (".io.mmaudio_comfy", "MMAudio's v1-16.pth + best_netG.pt as one file for ComfyUI's Load VAE"),
}


def _usage() -> str:
    lines = ["usage: python -m harmony_core <command> [options]", "", "commands:"]
    for name, (_, help_line) in SUBCOMMANDS.items():
        lines.append(f"  {name:13s} {help_line}")
    lines.append("\nRun `python -m harmony_core <command> --help` for a command's options.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a subcommand; returns the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"python -m harmony_core: unknown command {name!r}; expected one of {sorted(SUBCOMMANDS)}.",
              file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(SUBCOMMANDS[name][0], __package__)
    try:
        status = module.main(rest)
    except FloatingPointError as e:
        print(f"python -m harmony_core {name}: {e}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as e:
        print(f"python -m harmony_core {name}: error: {e}", file=sys.stderr)
        return 2
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
