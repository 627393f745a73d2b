"""Rotary position embeddings: Wan's 3-D video RoPE, Ovi's 1-D audio RoPE, and the time-aligned
positions of Harmony's RoPE-aligned frame-wise attention (paper §3.3.1).

Conventions (Wan2.2 / Ovi): a head of width K is read as K/2 complex pairs of *adjacent* real
dims. The first ``K - 4*(K//6)`` real dims carry time, the next ``2*(K//6)`` height and the last
``2*(K//6)`` width; each slice has its own frequency ladder ``theta**(-2i/d_slice)``. Audio tokens
rotate only the time slice (the rest pass through), exactly as Ovi's ``rope_apply_1d``.

Positions are floats, so a token can sit between two frames of the other modality: that is how
audio latent j is placed at ``j' = j * T_v / T_a`` on the video timeline (and vice versa).
Angles are computed in float32 (an fp32 island) whatever the model dtype.
"""

from __future__ import annotations

from fractions import Fraction

import torch

from ..config import TimelineConfig, TowerConfig

__all__ = [
    "rope_inv_freq",
    "rope_angles",
    "video_rope_angles",
    "audio_rope_angles",
    "time_rope_angles",
    "apply_rope",
    "video_index_at_time",
    "audio_index_at_time",
    "video_frame_centers",
    "audio_token_centers",
]


def rope_inv_freq(dims: int, theta: float = 10000.0, *, device: torch.device | None = None) -> torch.Tensor:
    """Inverse frequencies ``theta**(-arange(0, dims, 2)/dims)`` for one RoPE slice: ``[dims/2]``."""
    if dims % 2:
        raise ValueError(f"RoPE slice width {dims} must be even.")
    return 1.0 / torch.pow(theta, torch.arange(0, dims, 2, dtype=torch.float64, device=device) / dims)


def rope_angles(positions: list[torch.Tensor], slice_dims: list[int], head_dim: int, theta: float) -> torch.Tensor:
    """Rotation angles for tokens with one position per slice.

    Args:
        positions: one ``[L]`` float tensor per slice (time, then height, then width).
        slice_dims: real head dims of each slice, in the same order; the remaining
            ``head_dim - sum(slice_dims)`` dims pass through (angle 0).
        head_dim: K.
        theta: RoPE base.

    Returns:
        ``[L, K/2]`` float32 angles.
    """
    parts = []
    for pos, d in zip(positions, slice_dims):
        inv = rope_inv_freq(d, theta, device=pos.device)
        parts.append(pos.to(torch.float64)[:, None] * inv[None, :])
    length = positions[0].shape[0]
    rest = (head_dim - sum(slice_dims)) // 2
    if rest:
        parts.append(torch.zeros(length, rest, dtype=torch.float64, device=positions[0].device))
    return torch.cat(parts, dim=1).to(torch.float32)


def video_rope_angles(
    tower: TowerConfig, grid: tuple[int, int, int], *, device: torch.device | None = None, t_offset: float = 0.0
) -> torch.Tensor:
    """Wan 3-D RoPE angles for a ``(T_v, H', W')`` token grid (f-major order): ``[T_v*H'*W', K/2]``."""
    f, h, w = grid
    ff, hh, ww = torch.meshgrid(
        torch.arange(f, device=device, dtype=torch.float64) + t_offset,
        torch.arange(h, device=device, dtype=torch.float64),
        torch.arange(w, device=device, dtype=torch.float64),
        indexing="ij",
    )
    return rope_angles(
        [ff.reshape(-1) * tower.rope_time_scale, hh.reshape(-1), ww.reshape(-1)],
        [tower.rope_time_dims, tower.rope_space_dims, tower.rope_space_dims],
        tower.head_dim,
        tower.rope_theta,
    )


def audio_rope_angles(tower: TowerConfig, positions: torch.Tensor) -> torch.Tensor:
    """Ovi 1-D audio RoPE: time slice only, positions scaled by ``rope_time_scale``: ``[L, K/2]``."""
    return time_rope_angles(tower, positions * tower.rope_time_scale)


def time_rope_angles(tower: TowerConfig, positions: torch.Tensor) -> torch.Tensor:
    """Angles rotating only the time slice of the head at the given float ``[L]`` positions."""
    return rope_angles([positions], [tower.rope_time_dims], tower.head_dim, tower.rope_theta)


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs of ``x`` by ``angles``.

    Args:
        x: ``[B, L, N, K]`` queries or keys (any float dtype).
        angles: ``[L, K/2]`` float32 (shared over the batch) or ``[B, L, K/2]``.

    Returns:
        ``[B, L, N, K]`` in ``x.dtype``; the rotation itself runs in float32.
    """
    b, length, n, k = x.shape
    if angles.shape[-2:] != (length, k // 2):
        raise ValueError(
            f"RoPE angles {tuple(angles.shape)} do not fit x {tuple(x.shape)}: expected [..., {length}, {k // 2}]."
        )
    cos, sin = angles.cos(), angles.sin()
    if cos.dim() == 2:
        cos, sin = cos[None], sin[None]
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]  # [B|1, L, 1, K/2]
    xf = x.float().reshape(b, length, n, k // 2, 2)
    x0, x1 = xf[..., 0], xf[..., 1]
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    return out.reshape(b, length, n, k).to(x.dtype)


# ---------------------------------------------------------------------------------------------
# One timeline for both streams (RoPE alignment)
# ---------------------------------------------------------------------------------------------


def video_frame_centers(timeline: TimelineConfig, num_frames: int) -> list[Fraction]:
    """Centre of each video latent frame's span, in pixel frames (exact)."""
    out = []
    for i in range(num_frames):
        a, b = timeline.video_frame_span(i)
        out.append((a + b) / 2)
    return out


def audio_token_centers(timeline: TimelineConfig, num_tokens: int) -> list[float]:
    """Centre of each audio latent's span, in seconds."""
    r = timeline.audio_latent_rate
    return [(j + 0.5) / r for j in range(num_tokens)]


def video_index_at_time(timeline: TimelineConfig, seconds: torch.Tensor) -> torch.Tensor:
    """Fractional video latent index at a time: the inverse of the frame-centre map.

    Piecewise linear through the latent-frame centres, so a time at the centre of latent frame i
    maps to exactly i even with the causal first frame (which covers 1 pixel frame, not
    ``vae_time_stride``), and extrapolated linearly past either end.
    """
    s = timeline.vae_time_stride
    f = seconds.to(torch.float64) * timeline.fps  # pixel-frame units
    if not timeline.causal_first_frame:
        return (f - s / 2) / s
    c0 = 0.5  # centre of latent 0 (pixel frame 0)
    c1 = (s + 2) / 2  # centre of latent 1, whose span is [1, s+1)
    first = (f - c0) / (c1 - c0)
    rest = 1.0 + (f - c1) / s
    return torch.where(f < c1, first, rest)


def audio_index_at_time(timeline: TimelineConfig, seconds: torch.Tensor) -> torch.Tensor:
    """Fractional audio latent index at a time (token j's centre maps to exactly j)."""
    return seconds.to(torch.float64) * timeline.audio_latent_rate - 0.5
