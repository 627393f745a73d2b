"""``python -m harmony_core build-default``: reproduce the shipped model from scratch, in one command.

It trains, on the synthetic world and with this package's code only: the audio VAE, the video VAE,
then the ``synthetic`` DiT stage (Cross-Task Synergy, EMA), and writes the bundle. The defaults are
exactly the settings of the shipped ``harmony_core/assets/harmony-tiny.safetensors``::

    python -m harmony_core build-default --out harmony_core/assets/harmony-tiny.safetensors

Work files (VAEs, latent cache, checkpoints, logs) go to ``--work`` (default ``runs/default``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

__all__ = ["build_parser", "main", "train_vaes", "RECIPE"]

# The directory holding the harmony_core package, so ``python -m harmony_core.vae.train`` resolves.
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]

# DiT stages in order; each later stage starts from the previous stage's weights (--init).
DIT_STAGES = ("dit", "dit_refine")

# The shipped model's recipe (also recorded in its bundle info).
RECIPE = {
    "audio_vae": ["--steps", "3000", "--clips", "512"],
    "video_vae": ["--steps", "5000", "--batch-size", "16", "--frames", "13", "--crop", "32", "--clips", "512",
                  "--motion-weight", "4"],
    "dit": ["--preset", "synthetic", "--clips", "1024", "data.seconds=1.5,2.0,2.5"],
    # More audio-to-video and video-to-audio tasks at a lower LR: the video stream of the first stage
    # ignored the audio (cross-modal reliance 0 %), and SyncCFG can only amplify what the model uses.
    "dit_refine": ["--preset", "synthetic", "--clips", "1024", "data.seconds=1.5,2.0,2.5", "steps=3000", "lr=1e-4",
                   "warmup=50", "probs=0.4,0.35,0.25", "weights=1.0,0.5,0.3"],
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harmony_core build-default", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="where to write the bundle")
    p.add_argument("--work", type=Path, default=Path("runs/default"), help="work directory")
    p.add_argument("--resume", action="store_true", help="reuse finished VAEs and resume the DiT run in --work")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="extra DiT training overrides (e.g. steps=500)")
    return p


def train_vaes(work: Path, modalities: list[str]) -> int:
    """Train the VAEs of ``modalities`` side by side, one process each, sharing the CPU cores.

    Two single-purpose processes on two cores finish sooner than the same runs one after the other
    with two threads each (the small convolutions scale poorly across threads). Each process logs
    to ``work/<modality>_vae.log``.

    Returns:
        Wall time in seconds.

    Raises:
        RuntimeError: a VAE run failed (its log is named).
    """
    t = time.perf_counter()
    threads = str(max(1, (os.cpu_count() or 2) // len(modalities)))
    procs = []
    for modality in modalities:
        log_path = work / f"{modality}_vae.log"
        argv = [sys.executable, "-m", "harmony_core.vae.train", modality, "--out",
                os.fspath(work / f"{modality}_vae.safetensors"), *RECIPE[f"{modality}_vae"]]
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        with open(log_path, "w") as log_file:
            procs.append((modality, log_path, subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT,
                                                               env=env, cwd=_PACKAGE_ROOT)))
        print(f"training the {modality} VAE ({threads} thread(s)); log: {log_path}")
    failed = [(m, p) for m, p, proc in procs if proc.wait() != 0]
    if failed:
        raise RuntimeError("VAE training failed: " + ", ".join(f"{m} (see {p})" for m, p in failed))
    return round(time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..training import cli as train_cli

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timings = {}
    todo = [m for m in ("audio", "video") if not (args.resume and (work / f"{m}_vae.safetensors").is_file())]
    if todo:
        timings["vaes_s"] = train_vaes(work, todo)
    vaes = ["--video-vae", os.fspath(work / "video_vae.safetensors"),
            "--audio-vae", os.fspath(work / "audio_vae.safetensors")]
    run, init = None, None
    for stage in DIT_STAGES:
        if stage not in RECIPE:
            continue
        t = time.perf_counter()
        run = work / stage
        train_argv = [*RECIPE[stage], "--out", os.fspath(run), *vaes, *args.overrides]
        if args.resume and (run / "last.safetensors").is_file():
            train_argv.append("--resume")
        elif init is not None:
            train_argv += ["--init", os.fspath(init)]
        train_cli.main(train_argv)  # raises on failure; returns the run's summary (also stored in the bundle)
        timings[f"{stage}_s"] = round(time.perf_counter() - t)
        init = run / "last.safetensors"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from ..io.bundle import recast_bundle

    recast_bundle(run / "bundle.safetensors", args.out, torch.float16)  # the shipped file is fp16 (half the size)
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f} s: {json.dumps(timings)}")
    return 0
