"""Fitting user media to a clip's geometry: frame rate, size and length of frames; rate, channels
and length of a waveform. Used by the ComfyUI encode nodes (any VAE) and equal in behaviour to
``HarmonyEngine.fit_frames`` / the engine's audio handling, without needing an engine.

Layouts are ComfyUI's: frames ``[T, H, W, 3]`` float in 0..1, waveforms ``[B, C, S]`` (``[C, S]``
and ``[S]`` accepted) float in -1..1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..engine import resample_audio, to_mono

__all__ = ["fit_frames", "fit_waveform", "clip_samples", "valid_frame_count"]


def valid_frame_count(frames: int, time_stride: int) -> int:
    """The longest ``1 + time_stride * k`` (k >= 0) not exceeding ``frames`` (at least 1)."""
    if frames < 1:
        raise ValueError(f"frames={frames} is invalid: expected at least one frame.")
    return 1 + time_stride * ((frames - 1) // time_stride)


def clip_samples(pixel_frames: int, fps: float, sample_rate: int) -> int:
    """Audio samples spanning ``pixel_frames`` frames at ``fps``: ``round(T / fps * sample_rate)``."""
    if not fps > 0 or sample_rate <= 0:
        raise ValueError(f"fps={fps} and sample_rate={sample_rate} must both be > 0.")
    return round(pixel_frames / fps * sample_rate)


def fit_frames(
    frames: torch.Tensor,
    fps: float,
    *,
    target_fps: float,
    height: int,
    width: int,
    time_stride: int = 4,
    num_frames: int | None = None,
) -> torch.Tensor:
    """Resample frames in time (nearest frame), resize and centre-crop, and trim or pad the length.

    Args:
        frames: ``[T, H, W, 3]`` in 0..1.
        fps: the frames' rate; target_fps: the clip's rate.
        height, width: output size in pixels (scaled to cover, then centre-cropped).
        time_stride: the causal VAE's frames per latent frame (lengths are ``1 + stride * k``).
        num_frames: exact output length (padded by repeating the last frame, or trimmed); None =
            the longest valid length of the resampled clip.

    Returns:
        ``[T', height, width, 3]`` float32 in 0..1.
    """
    if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[-1] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"frames have shape {shape}: expected [T, H, W, 3] (a ComfyUI IMAGE batch of frames).")
    if not (fps > 0 and target_fps > 0):
        raise ValueError(f"fps={fps} and target_fps={target_fps} must both be > 0. Pass the video's real frame rate.")
    if height < 1 or width < 1:
        raise ValueError(f"height={height} and width={width} must be positive.")
    t_in = frames.shape[0]
    t_out = max(1, math.floor(t_in / fps * target_fps + 1e-6))
    idx = torch.clamp((torch.arange(t_out) * fps / target_fps + 1e-6).floor().long(), max=t_in - 1)
    x = frames[idx].permute(0, 3, 1, 2).float()  # [T, 3, H, W]
    scale = max(height / x.shape[2], width / x.shape[3])
    size = (max(height, round(x.shape[2] * scale)), max(width, round(x.shape[3] * scale)))
    if size != tuple(x.shape[2:]):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    x = x[:, :, top:top + height, left:left + width].permute(0, 2, 3, 1)
    target = num_frames or valid_frame_count(x.shape[0], time_stride)
    if x.shape[0] < target:
        x = torch.cat([x, x[-1:].expand(target - x.shape[0], -1, -1, -1)])
    return x[:target].clamp(0, 1).contiguous()


def fit_waveform(
    waveform: torch.Tensor, sample_rate: int, *, target_rate: int, num_samples: int | None = None
) -> torch.Tensor:
    """Downmix to mono, resample, and trim or pad with silence.

    Args:
        waveform: ``[B, C, S]``, ``[C, S]`` or ``[S]`` at ``sample_rate``.
        sample_rate: its rate in Hz; target_rate: the rate wanted.
        num_samples: exact output length at ``target_rate`` (None keeps the resampled length).

    Returns:
        ``[B, 1, S']`` float32, finite, within [-1, 1].
    """
    if not isinstance(waveform, torch.Tensor):
        raise TypeError(f"waveform has type {type(waveform).__name__}: expected a torch.Tensor [B, C, S].")
    wav = resample_audio(to_mono(waveform), int(sample_rate), int(target_rate))  # [B, S]
    if num_samples is not None:
        if num_samples < 1:
            raise ValueError(f"num_samples={num_samples} is invalid: expected >= 1.")
        wav = F.pad(wav, (0, max(0, num_samples - wav.shape[-1])))[:, :num_samples]
    return wav.float().nan_to_num(0.0).clamp(-1.0, 1.0)[:, None].contiguous()
