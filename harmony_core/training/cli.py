"""``python -m harmony_core train``: build the latent cache, train a stage preset, write a bundle.

Usage::

    python -m harmony_core train --preset synthetic --out runs/tiny \\
        --video-vae vae/video.safetensors --audio-vae vae/audio.safetensors --clips 256 \\
        steps=2000 lr=3e-4 data.seconds=1.0,2.0 model.video.dim=64 model.audio.dim=64

    torchrun --nproc_per_node 2 -m harmony_core train --preset synthetic --out runs/tiny ...   # DDP
    python -m harmony_core train --preset synthetic --out runs/tiny --resume ...               # continue

Overrides are ``key=value`` (see ``overrides``): bare keys set ``TrainConfig`` fields, ``data.*`` the
:class:`~.stages.DataConfig`, ``model.*`` the ``HarmonyConfig`` (``model.video.dim``) and
``transcript.*`` the transcript encoder. Latent channels, caption width and the transcript width are
derived (from the VAEs, the caption encoder and ``model.speech_dim``) and cannot be overridden.

Clips come from the synthetic world (``--clips N``) or a folder of videos (``--data-dir``); they are
encoded once with the frozen VAEs and caption encoder (``--save-latents`` keeps the cache,
``--latents`` reuses one). At the end, rank 0 writes ``OUT/bundle.safetensors`` with the EMA
weights and both VAEs (when ``--video-vae`` and ``--audio-vae`` are given), and training info
(command line, steps, final losses) in ``bundle.info``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import PRESETS, get_preset
from .distributed import barrier, default_device, env_dist_info, init_distributed, shutdown_distributed
from .latents import LatentCache, build_latent_cache, check_cache_vaes, synthetic_timbre_partner
from .overrides import apply_overrides
from .stages import STAGES, DataConfig, apply_trainable, fit_model_config, get_stage

__all__ = ["build_parser", "main", "HELP"]

log = logging.getLogger(__name__)

HELP = "train a Harmony model (stage presets, latent cache, DDP/FSDP, resume, bundle)"
# Derived from the data and models; an override would only contradict them.
_DERIVED = ("model.video.in_channels", "model.audio.in_channels", "model.video.text_dim", "model.audio.text_dim",
            "transcript.dim")


def build_parser() -> argparse.ArgumentParser:
    """The ``train`` subcommand's argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m harmony_core train",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="stage presets:\n" + "\n".join(f"  {n:15s} {f().description}" for n, f in STAGES.items()),
    )
    p.add_argument("--preset", required=True, choices=sorted(STAGES), help="stage preset")
    p.add_argument("--out", required=True, type=Path, help="run directory (checkpoints, bundle)")
    p.add_argument("--resume", action="store_true", help="continue OUT/last.safetensors")
    p.add_argument("--video-vae", type=Path, help="trained video VAE (harmony_core.vae.save_vae file)")
    p.add_argument("--audio-vae", type=Path, help="trained audio VAE (harmony_core.vae.save_vae file)")
    p.add_argument("--clips", type=int, help="number of synthetic clips (sets data.clips)")
    p.add_argument("--data-dir", type=Path, help="folder of videos with captions (FolderAVDataset) instead")
    p.add_argument("--latents", type=Path, help="use this latent cache instead of encoding clips")
    p.add_argument("--save-latents", type=Path, help="write the latent cache built here to this file")
    p.add_argument("--model", choices=sorted(PRESETS), help="HarmonyConfig preset instead of the stage's (e.g. mid)")
    p.add_argument("--init", type=Path, help="start from these weights: a training checkpoint or a bundle")
    p.add_argument("--fsdp", action="store_true", help="shard with FSDP instead of DDP under torchrun")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda:LOCAL_RANK when available)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. lr=1e-4")
    return p


def _clips(data: DataConfig, data_dir: Path | None) -> Any:
    """The clip source: a folder, or the synthetic world with durations cycled over the clips."""
    if data_dir is not None:
        from ..data.datasets import FolderAVDataset

        folder = FolderAVDataset(data_dir, height=data.height, width=data.width, max_seconds=data.max_seconds)
        return (c for c in (_trim_to_bucket(clip, data.seconds) for clip in folder) if c is not None)
    from ..data.synthetic import WorldConfig, generate_clip

    world = WorldConfig(height=data.height, width=data.width, families=data.families)
    return (
        generate_clip(data.seed + i, seconds=data.seconds[i % len(data.seconds)], config=world)
        for i in range(data.clips)
    )


def _trim_to_bucket(clip: Any, seconds: tuple[float, ...]) -> Any:
    """Cut a real clip to the longest of ``seconds`` it covers, so folder clips fall into a few
    length buckets (batches never mix lengths); None (skipped, logged) when it is shorter than all."""
    from ..data.synthetic import num_frames_for_seconds, num_samples_for_frames

    fits = [num_frames_for_seconds(s, clip.fps) for s in seconds]
    fits = [t for t in fits if t <= clip.num_frames]
    if not fits:
        log.warning("skipping %s: %.2f s is shorter than every data.seconds=%s", clip.params.get("file", "clip"),
                    clip.seconds, seconds)
        return None
    frames = max(fits)
    samples = num_samples_for_frames(frames, clip.fps, clip.sample_rate)
    return dataclasses.replace(clip, frames=clip.frames[:frames], waveform=clip.waveform[:samples])


def _build_cache(args: argparse.Namespace, data: DataConfig, ref_mode: str) -> LatentCache:
    if args.video_vae is None or args.audio_vae is None:
        raise ValueError("building the latent cache needs --video-vae and --audio-vae (or pass --latents CACHE).")
    from ..data.synthetic import WorldConfig
    from ..text.caption import load_caption_encoder
    from ..vae.common import load_vae

    video_vae, audio_vae = load_vae(args.video_vae), load_vae(args.audio_vae)
    partner = None
    if (data.timbre_partners or ref_mode == "timbre") and args.data_dir is None:
        world = WorldConfig(height=data.height, width=data.width, families=data.families)
        partner = lambda clip: synthetic_timbre_partner(clip, config=world)  # noqa: E731
    elif ref_mode == "timbre":
        log.warning("ref_mode=timbre with --data-dir: folder clips have no timbre partners; references fall back "
                    "to segments of the clip itself")
    return build_latent_cache(_clips(data, args.data_dir), video_vae=video_vae, audio_vae=audio_vae,
                              caption_encoder=load_caption_encoder(), partner=partner)


def _load_init(model: torch.nn.Module, path: Path) -> None:
    """Copy weights from a training checkpoint (``model.*``) or a bundle (``dit.*``, ``transcript.*``)."""
    from ..io.bundle import BUNDLE_FORMAT
    from ..io.checkpoints import load_state_strict, load_tensors, read_metadata
    from .checkpoint import TRAIN_CHECKPOINT_FORMAT, first_difference

    meta = read_metadata(path)
    fmt = meta.get("format")
    if fmt == TRAIN_CHECKPOINT_FORMAT:
        stored, state = json.loads(meta["dit_config"]), load_tensors(path, prefix="model.")
    elif fmt == BUNDLE_FORMAT:
        stored = json.loads(meta["dit_config"])
        state = {k: v for k, v in load_tensors(path).items() if k.startswith(("dit.", "transcript."))}
    else:
        raise ValueError(f"--init {path}: format {fmt!r} is neither a training checkpoint nor a bundle.")
    diff = first_difference(stored, model.dit.config.to_dict(), "HarmonyConfig")
    if diff is not None:
        raise ValueError(f"--init {path}: {diff[0]} is {diff[1]!r} there but {diff[2]!r} in this run. "
                         f"Use the same model preset and overrides as the run that wrote it.")
    load_state_strict(model, state, source=f"--init {path}")
    log.info("initialised from %s", path)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the ``train`` subcommand; returns the training summary written into ``bundle.info``."""
    args = build_parser().parse_intermixed_args(list(sys.argv[1:] if argv is None else argv))
    preset = get_stage(args.preset)
    model_cfg = get_preset(args.model or preset.model)
    pairs = list(args.overrides) + ([f"data.clips={args.clips}"] if args.clips is not None else [])
    derived = [p.split("=", 1)[0] for p in pairs if p.split("=", 1)[0].strip() in _DERIVED]
    if derived:
        raise ValueError(f"{derived[0]} cannot be overridden: latent channels come from the VAEs, text_dim from the "
                         f"caption encoder and transcript.dim from model.speech_dim.")
    sections = apply_overrides(
        {"": preset.train, "data": preset.data, "model": model_cfg, "transcript": preset.transcript}, pairs
    )
    train_cfg, data, model_cfg, tcfg = sections[""], sections["data"], sections["model"], sections["transcript"]

    device = torch.device(args.device) if args.device else default_device(env_dist_info())
    info = init_distributed(device.type)
    args.out.mkdir(parents=True, exist_ok=True)

    if args.latents is not None:
        cache = LatentCache.load(args.latents)
        if args.video_vae is not None and args.audio_vae is not None:  # the bundle will ship these VAEs
            from ..vae.common import load_vae

            check_cache_vaes(cache, load_vae(args.video_vae), load_vae(args.audio_vae))
    elif info.distributed:  # rank 0 encodes once; the others read its file
        path = args.save_latents or args.out / "latents.safetensors"
        if info.is_main:
            _build_cache(args, data, train_cfg.ref_mode).save(path)
        barrier(info)
        cache = LatentCache.load(path)
    else:
        cache = _build_cache(args, data, train_cfg.ref_mode)
        if args.save_latents is not None:
            cache.save(args.save_latents)

    from .model import build_train_model
    from .trainer import train

    model_cfg = fit_model_config(model_cfg, video_channels=cache.video_channels,
                                 audio_channels=cache.audio_channels, text_dim=cache.text_dim)
    tcfg = dataclasses.replace(tcfg, dim=model_cfg.speech_dim) if model_cfg.speech_dim else None
    model = build_train_model(model_cfg, transcript=tcfg, options=preset.options, seed=train_cfg.seed)
    if args.init is not None and not args.resume:
        _load_init(model, args.init)
    apply_trainable(model, preset)
    result = train(train_cfg, model, cache, args.out, resume=args.resume, device=device,
                   parallel="fsdp" if args.fsdp else "ddp", stage=preset.name, progress=not args.no_progress)
    summary = {
        "command": "python -m harmony_core train " + " ".join(sys.argv[1:] if argv is None else argv),
        "stage": preset.name,
        "steps": result.step,
        "final_losses": result.metrics,
        "train_config": train_cfg.to_dict(),
        "data": cache.fingerprint(),
        "world_size": info.world_size,
    }
    if info.is_main:
        _write_bundle(args, summary)
    barrier(info)
    shutdown_distributed()
    return summary


def _write_bundle(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    if args.video_vae is None or args.audio_vae is None:
        log.warning("no --video-vae/--audio-vae given: %s holds the weights, but no bundle was written",
                    args.out / "last.safetensors")
        return
    from ..io.bundle import HarmonyBundle, save_bundle
    from ..vae.common import load_vae
    from .checkpoint import load_ema_model

    ema = load_ema_model(args.out / "last.safetensors")
    bundle = HarmonyBundle(dit=ema.dit, video_vae=load_vae(args.video_vae), audio_vae=load_vae(args.audio_vae),
                           transcript=ema.transcript, info=summary)
    path = args.out / "bundle.safetensors"
    save_bundle(path, bundle)
    log.info("wrote %s (EMA weights, step %d)", path, summary["steps"])
