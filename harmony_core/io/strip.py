"""Frame strips: a still picture of a clip in which audio-visual sync can be seen.

A strip is a row of frames taken every ``every`` frames, and under it the audio's loudness
envelope drawn on the same time axis (one column of the envelope per pixel column of the frame
row), with a tick under each sampled frame. An impact, a flash or an opening mouth should sit
above a rise of the envelope. Several clips stack into one image (e.g. text CFG above SyncCFG).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

__all__ = ["frame_strip", "stack_strips", "save_image"]


def _envelope(waveform: torch.Tensor, columns: int) -> torch.Tensor:
    """Peak |amplitude| of ``waveform`` ``[S]`` in ``columns`` equal time bins, scaled to 0..1."""
    s = waveform.shape[0]
    edges = torch.linspace(0, s, columns + 1).round().long()
    peaks = torch.stack([waveform[a:max(b, a + 1)].abs().max() if a < s else waveform.new_zeros(()) for a, b in
                         zip(edges[:-1].tolist(), edges[1:].tolist())])
    return peaks / peaks.max().clamp_min(1e-8)


def frame_strip(
    frames: torch.Tensor,
    *,
    fps: float,
    waveform: torch.Tensor | None = None,
    sample_rate: int | None = None,
    every: int = 3,
    max_frames: int = 16,
    scale: int = 2,
    envelope_height: int = 24,
) -> torch.Tensor:
    """One clip as a strip image.

    Args:
        frames: ``[T, H, W, 3]`` float in 0..1 (ComfyUI IMAGE layout).
        fps: frame rate of ``frames`` (> 0).
        waveform: ``[S]`` or ``[C, S]`` audio of the same clip (optional); drawn as an envelope.
        sample_rate: rate of ``waveform`` in Hz (needed with ``waveform``).
        every: take every ``every``-th frame (>= 1).
        max_frames: at most this many frames in the row (>= 1).
        scale: nearest-neighbour upscaling of the frames (>= 1).
        envelope_height: pixel height of the envelope band (0 = none).

    Returns:
        ``[H', W', 3]`` uint8 image.

    Raises:
        ValueError: on a bad layout, rate or option, naming the value and the fix.
    """
    if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"frames={shape}: expected [T, H, W, 3] in 0..1 with T >= 1 (ComfyUI IMAGE layout).")
    for name, v in (("every", every), ("max_frames", max_frames), ("scale", scale)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}={v!r} is invalid: expected an int >= 1.")
    if not fps > 0:
        raise ValueError(f"fps={fps!r} is invalid: expected > 0. Pass the clip's frame rate.")
    if waveform is not None and not (sample_rate and sample_rate > 0):
        raise ValueError(f"sample_rate={sample_rate!r} is invalid: expected the waveform's rate in Hz (> 0).")
    idx = list(range(0, frames.shape[0], every))[:max_frames]
    row = torch.cat([frames[i] for i in idx], dim=1).float().clamp(0, 1)  # [H, n*W, 3]
    if scale > 1:
        row = F.interpolate(row.permute(2, 0, 1)[None], scale_factor=scale, mode="nearest")[0].permute(1, 2, 0)
    img = (row * 255).round().to(torch.uint8)
    if waveform is None or envelope_height == 0:
        return img
    wav = waveform.float()
    wav = wav.mean(0) if wav.dim() == 2 else wav
    if wav.dim() != 1:
        raise ValueError(f"waveform has shape {tuple(waveform.shape)}: expected [S] or [C, S].")
    width, tile = img.shape[1], img.shape[1] // len(idx)
    # The row shows frames idx[0] .. idx[-1] + every (each tile stands for `every` frames of time).
    t_end = (idx[-1] + every) / fps
    wav = wav[: int(round(t_end * sample_rate))]
    wav = F.pad(wav, (0, max(0, int(round(t_end * sample_rate)) - wav.shape[0])))
    env = _envelope(wav, width)  # [W']
    band = torch.full((envelope_height, width, 3), 24, dtype=torch.uint8)
    heights = (env * (envelope_height - 2)).round().long()
    rows = torch.arange(envelope_height)[:, None]
    filled = rows >= (envelope_height - 1 - heights)[None, :]
    band[filled] = torch.tensor([120, 220, 140], dtype=torch.uint8)
    band[:3, ::tile] = 255  # a tick at the start of every sampled frame
    return torch.cat([img, band], dim=0)


def stack_strips(strips: list[torch.Tensor], gap: int = 4) -> torch.Tensor:
    """Stack ``[H_i, W_i, 3]`` uint8 strips vertically (padded to the widest) with ``gap`` pixel rows."""
    if not strips:
        raise ValueError("stack_strips got no strips: pass at least one [H, W, 3] uint8 image.")
    width = max(s.shape[1] for s in strips)
    out = []
    for i, s in enumerate(strips):
        out.append(F.pad(s, (0, 0, 0, width - s.shape[1]), value=255))
        if gap and i < len(strips) - 1:
            out.append(torch.full((gap, width, 3), 255, dtype=torch.uint8))
    return torch.cat(out, dim=0)


def save_image(path: str | os.PathLike[str], image: torch.Tensor, *, quality: int = 90) -> None:
    """Write an ``[H, W, 3]`` uint8 image as PNG or JPEG (by extension) through Pillow."""
    from PIL import Image

    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[-1] != 3:
        raise ValueError(f"image is {image.dtype} {tuple(image.shape)}: expected [H, W, 3] uint8.")
    Image.fromarray(image.cpu().numpy()).save(os.fspath(path), quality=quality)
