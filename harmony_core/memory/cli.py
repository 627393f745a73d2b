"""``python -m harmony_core.memory``: print the memory breakdown of a run.

Example::

    python -m harmony_core.memory --preset ovi --width 704 --height 704 --seconds 5 --dtype fp8 --offload model
    python -m harmony_core.memory --preset ovi --width 704 --height 704 --seconds 5 --table
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..config import PRESETS, get_preset
from .dit import DTYPE_BYTES
from .estimate import GIB, OFFLOAD, estimate_memory

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harmony_core.memory", description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="ovi", choices=sorted(PRESETS), help="model preset")
    p.add_argument("--width", type=int, default=704, help="frame width in pixels")
    p.add_argument("--height", type=int, default=704, help="frame height in pixels")
    p.add_argument("--seconds", type=float, default=5.0, help="clip length")
    p.add_argument("--dtype", default="bf16", choices=sorted(DTYPE_BYTES), help="DiT weight dtype")
    p.add_argument("--text-encoder-dtype", default=None, choices=sorted(DTYPE_BYTES), help="default: --dtype")
    p.add_argument("--offload", default="model", choices=OFFLOAD, help="what stays on the device")
    p.add_argument("--passes", type=int, default=3, help="guidance passes per step (SyncCFG 3, text CFG 2)")
    p.add_argument("--sequential", action="store_true", help="run the guidance passes one at a time")
    p.add_argument("--attention", default="flash", choices=("flash", "sdpa", "math"))
    p.add_argument("--space-stride", type=int, default=16, help="video VAE spatial stride (Wan2.2: 16)")
    p.add_argument("--table", action="store_true", help="print peaks for every dtype / offload / batching")
    return p


def _table(args: argparse.Namespace) -> str:
    cfg = get_preset(args.preset)
    rows = [f"{'weights':<8}{'offload':<8}" + "".join(f"{h:>14}" for h in ("batched", "sequential"))]
    for dtype in ("bf16", "fp8"):
        for off in OFFLOAD:
            peaks = [
                estimate_memory(
                    cfg, width=args.width, height=args.height, seconds=args.seconds, weight_dtype=dtype,
                    offload=off, passes=args.passes, batched=batched, attention=args.attention,
                    space_stride=args.space_stride, text_encoder_dtype=args.text_encoder_dtype,
                ).peak
                for batched in (True, False)
            ]  # fmt: skip
            rows.append(f"{dtype:<8}{off:<8}" + "".join(f"{p / GIB:>10.1f} GiB" for p in peaks))
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the estimate (or, with ``--table``, the peak of every setting); returns 0."""
    args = _parser().parse_args(argv)
    if args.table:
        print(f"{args.preset}, {args.width}x{args.height}, {args.seconds:g} s, {args.passes} passes: peak")
        print(_table(args))
        return 0
    est = estimate_memory(
        get_preset(args.preset), width=args.width, height=args.height, seconds=args.seconds,
        weight_dtype=args.dtype, offload=args.offload, passes=args.passes, batched=not args.sequential,
        attention=args.attention, space_stride=args.space_stride, text_encoder_dtype=args.text_encoder_dtype,
    )  # fmt: skip
    print(f"{args.preset}: {est.describe()}")
    return 0
