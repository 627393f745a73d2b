"""AV LATENT dicts: ``{"samples": NestedTensor((video, audio)), "noise_mask"?: NestedTensor, "fps",
"sample_rate"}`` (the LTXV layout, so ComfyUI's nested-latent plumbing applies unchanged).

``noise_mask`` marks what sampling generates (1) and keeps (0). The generation-mode helpers always
*replace* it, so a mask left on a sampler's output (SamplerCustomAdvanced copies the input dict,
mask included) never leaks into the next mode: Harmony Audio To Video / Video To Audio write a
fresh one, Combine / Split drop it unless their inputs carry one.
"""

from __future__ import annotations

from typing import Any

import torch

from ...harmony_core.sampling.packed import stream_noise_masks
from .compat import nested_tensor

__all__ = ["make_av_latent", "split_av", "video_samples", "audio_samples", "latent_fps", "set_mode"]


def make_av_latent(v: torch.Tensor, a: torch.Tensor, *, fps: float | None, sample_rate: int | None,
                   v_mask: torch.Tensor | None = None, a_mask: torch.Tensor | None = None) -> dict[str, Any]:
    """An AV LATENT from a video ``[B, C_v, T_v, H, W]`` and an audio ``[B, C_a, T_a]`` latent."""
    nested = nested_tensor("Harmony")
    out: dict[str, Any] = {"samples": nested((v, a))}
    if fps is not None:
        out["fps"] = float(fps)
    if sample_rate is not None:
        out["sample_rate"] = int(sample_rate)
    if v_mask is not None or a_mask is not None:
        out["noise_mask"] = nested((torch.ones_like(v) if v_mask is None else v_mask,
                                          torch.ones_like(a) if a_mask is None else a_mask))
    return out


def _is_av(samples: Any) -> bool:
    return bool(getattr(samples, "is_nested", False)) and len(samples.unbind()) == 2


def split_av(latent: dict[str, Any], node: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None,
                                                          torch.Tensor | None]:
    """``(video, audio, video_mask, audio_mask)`` of an AV LATENT (masks None when absent).

    Raises:
        ValueError: when the LATENT is not an AV latent.
    """
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not _is_av(samples):
        shape = tuple(samples.shape) if hasattr(samples, "shape") else type(samples).__name__
        raise ValueError(f"{node}: expected an audio+video latent (from 'Harmony Empty AV Latent' or 'Harmony AV "
                         f"Latent Combine'); got a latent of shape {shape}.")
    v, a = samples.unbind()
    mask = latent.get("noise_mask")
    v_mask = a_mask = None
    if mask is not None:
        if getattr(mask, "is_nested", False):
            parts = mask.unbind()
            v_mask = parts[0]
            a_mask = parts[1] if len(parts) > 1 else None
        else:
            v_mask = mask
    return v, a, v_mask, a_mask


def video_samples(latent: dict[str, Any], node: str) -> torch.Tensor:
    """The video latent ``[B, C_v, T_v, H, W]`` of an AV or a video LATENT."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if _is_av(samples):
        return samples.unbind()[0]
    if isinstance(samples, torch.Tensor) and samples.dim() == 5:
        return samples
    shape = tuple(samples.shape) if hasattr(samples, "shape") else type(samples).__name__
    raise ValueError(f"{node}: expected a video latent [B, C, T, H, W] or an AV latent; got {shape}.")


def audio_samples(latent: dict[str, Any], node: str) -> torch.Tensor:
    """The audio latent ``[B, C_a, T_a]`` of an AV or an audio LATENT."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if _is_av(samples):
        return samples.unbind()[1]
    if isinstance(samples, torch.Tensor) and samples.dim() == 3:
        return samples
    shape = tuple(samples.shape) if hasattr(samples, "shape") else type(samples).__name__
    raise ValueError(f"{node}: expected an audio latent [B, C, T_a] or an AV latent; got {shape}.")


def latent_fps(latent: dict[str, Any], default: float | None) -> float | None:
    """The clip frame rate a LATENT carries (``default`` when it carries none)."""
    fps = latent.get("fps") if isinstance(latent, dict) else None
    return float(fps) if fps else default


def _fit_batch(clean: torch.Tensor, target: torch.Tensor, what: str, node: str, fix: str) -> torch.Tensor:
    if clean.shape[1:] != target.shape[1:] or clean.shape[0] not in (1, target.shape[0]):
        raise ValueError(f"{node}: the {what} latent has shape {tuple(clean.shape)} but the AV latent's {what} "
                         f"stream is {tuple(target.shape)}. {fix}")
    return clean.to(target.dtype).expand_as(target).contiguous()


def set_mode(latent: dict[str, Any], mode: str, node: str, *, v_clean: torch.Tensor | None = None,
             a_clean: torch.Tensor | None = None) -> dict[str, Any]:
    """The AV LATENT with a generation mode applied.

    ``"a2v"`` writes ``a_clean`` (or keeps the latent's own audio) into the audio stream and masks
    it 0 (kept) with video 1 (generated); ``"v2a"`` the reverse; ``"t2av"`` generates both. The
    noise mask is always replaced (a stale one from an earlier sampling never carries over).
    """
    v, a, _, _ = split_av(latent, node)
    if v_clean is not None:
        v = _fit_batch(v_clean, v, "video", node, "Connect the AV latent to 'Harmony VAE Encode Video' match_latent "
                       "input so the frames are fitted to the clip.")
    if a_clean is not None:
        a = _fit_batch(a_clean, a, "audio", node, "Connect the AV latent to 'Harmony VAE Encode Audio' match_latent "
                       "input so the audio is trimmed or padded to the clip.")
    v_mask, a_mask = stream_noise_masks(mode, tuple(v.shape), tuple(a.shape))
    out = {k: val for k, val in latent.items() if k not in ("samples", "noise_mask")}
    out.update(make_av_latent(v, a, fps=None, sample_rate=None))
    if mode != "t2av":
        out["noise_mask"] = nested_tensor(node)((v_mask, a_mask))
    return out
