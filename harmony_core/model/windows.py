"""Frame-wise local windows for Harmony's Global-Local Decoupled Interaction (paper §3.3.1).

Windows follow *real time spans*, not index ratios: video latent frame 0 of a Wan-style causal VAE
covers one pixel frame and every later latent frame covers ``vae_time_stride`` pixel frames, while
audio latent j covers ``[j, j+1) / audio_latent_rate`` seconds.

* A2V: video latent frame i attends to the audio tokens whose span overlaps frame i's span widened
  by ``a2v_window`` latent-frame durations on each side.
* V2A: audio token j attends to the video latent frames whose span overlaps token j's span widened
  by ``v2a_window`` latent-frame durations on each side.

Edges are masked, not padded by replication: a window near the clip's start or end simply has
fewer keys. A window that would be empty (the other stream is shorter) falls back to the single
key whose centre is nearest in time, so no query ever attends to nothing.

Everything here is small integer bookkeeping over frames (at most a few hundred by a few hundred),
computed once per (length, timeline, window) and cached.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction

import torch

from ..config import TimelineConfig
from .rope import audio_index_at_time, video_index_at_time

__all__ = ["LocalWindows", "local_windows", "frame_overlap_masks"]


@dataclass(frozen=True)
class LocalWindows:
    """Index tensors for batched (frames folded into the batch axis) local attention.

    A2V groups are video frames: group i's queries are frame i's tokens, its keys the audio tokens
    ``a2v_index[i]`` (``a2v_valid`` marks real ones). V2A groups are also video frames: group g's
    queries are the audio tokens ``v2a_tokens[g]`` whose centre lies in frame g, its keys the video
    frames ``v2a_frames[g]``; ``v2a_query_mask[g, q, f]`` says whether query q may see frame f
    (each audio token keeps its own exact window). ``v2a_slot[j]`` is where token j sits in the
    flattened ``[T_v * Q]`` group layout, for scattering results back.

    Attributes:
        a2v_mask: ``[T_v, T_a]`` bool, frame-level A2V window (for reference implementations).
        v2a_mask: ``[T_a, T_v]`` bool, frame-level V2A window.
        a2v_index, a2v_valid: ``[T_v, W_a]``.
        v2a_frames, v2a_frames_valid: ``[T_v, F_w]``.
        v2a_tokens, v2a_tokens_valid: ``[T_v, Q]``.
        v2a_query_mask: ``[T_v, Q, F_w]`` bool.
        v2a_slot: ``[T_a]`` long.
        a2v_q_pos: ``[T_v]`` video-frame positions of the A2V queries (video timeline).
        a2v_k_pos: ``[T_a]`` audio-token positions on the video timeline (or raw indices).
        v2a_q_pos: ``[T_a]`` audio-token positions of the V2A queries (audio timeline).
        v2a_k_pos: ``[T_v]`` video-frame positions on the audio timeline (or raw indices).
    """

    a2v_mask: torch.Tensor
    v2a_mask: torch.Tensor
    a2v_index: torch.Tensor
    a2v_valid: torch.Tensor
    v2a_frames: torch.Tensor
    v2a_frames_valid: torch.Tensor
    v2a_tokens: torch.Tensor
    v2a_tokens_valid: torch.Tensor
    v2a_query_mask: torch.Tensor
    v2a_slot: torch.Tensor
    a2v_q_pos: torch.Tensor
    a2v_k_pos: torch.Tensor
    v2a_q_pos: torch.Tensor
    v2a_k_pos: torch.Tensor

    def to(self, device: torch.device) -> LocalWindows:
        return LocalWindows(**{k: v.to(device) for k, v in self.__dict__.items()})


def _spans(timeline: TimelineConfig, num_video: int, num_audio: int):
    fps = Fraction(timeline.fps)
    rate = Fraction(timeline.audio_latent_rate)
    v = [(a / fps, b / fps) for a, b in (timeline.video_frame_span(i) for i in range(num_video))]
    a = [(Fraction(j) / rate, Fraction(j + 1) / rate) for j in range(num_audio)]
    return v, a, Fraction(timeline.vae_time_stride) / fps


def _overlap_rows(queries, keys, margin: Fraction) -> list[list[int]]:
    rows = []
    for qa, qb in queries:
        lo, hi = qa - margin, qb + margin
        row = [k for k, (ka, kb) in enumerate(keys) if ka < hi and kb > lo]
        if not row:  # the other stream is shorter: fall back to the nearest key centre
            qc = (qa + qb) / 2
            row = [min(range(len(keys)), key=lambda k: abs((keys[k][0] + keys[k][1]) / 2 - qc))]
        rows.append(row)
    return rows


def frame_overlap_masks(
    timeline: TimelineConfig, num_video: int, num_audio: int, a2v_window: int, v2a_window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame-level window masks ``([T_v, T_a], [T_a, T_v])`` (True = may attend)."""
    v, a, dur = _spans(timeline, num_video, num_audio)
    a2v = torch.zeros(num_video, num_audio, dtype=torch.bool)
    for i, row in enumerate(_overlap_rows(v, a, dur * a2v_window)):
        a2v[i, row] = True
    v2a = torch.zeros(num_audio, num_video, dtype=torch.bool)
    for j, row in enumerate(_overlap_rows(a, v, dur * v2a_window)):
        v2a[j, row] = True
    return a2v, v2a


def _pad_rows(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max((len(r) for r in rows), default=1))
    index = torch.zeros(len(rows), width, dtype=torch.long)
    valid = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        index[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        valid[i, : len(r)] = True
    return index, valid


@functools.lru_cache(maxsize=64)
def _local_windows_cpu(
    timeline: TimelineConfig, num_video: int, num_audio: int, a2v_window: int, v2a_window: int, rope_align: bool
) -> LocalWindows:
    if num_video < 1 or num_audio < 1:
        raise ValueError(f"local windows need both streams: got {num_video} video frames and {num_audio} audio tokens.")
    a2v_mask, v2a_mask = frame_overlap_masks(timeline, num_video, num_audio, a2v_window, v2a_window)
    a2v_index, a2v_valid = _pad_rows([torch.nonzero(r).flatten().tolist() for r in a2v_mask])

    # V2A groups: audio token j belongs to the video frame whose span holds its centre.
    v_spans, a_spans, _ = _spans(timeline, num_video, num_audio)
    owner = []
    for qa, qb in a_spans:
        c = (qa + qb) / 2
        g = next((i for i, (va, vb) in enumerate(v_spans) if va <= c < vb), num_video - 1)
        owner.append(g)
    tokens = [[j for j in range(num_audio) if owner[j] == g] for g in range(num_video)]
    frames = [sorted({f for j in toks for f in torch.nonzero(v2a_mask[j]).flatten().tolist()}) for toks in tokens]
    v2a_tokens, v2a_tokens_valid = _pad_rows(tokens)
    v2a_frames, v2a_frames_valid = _pad_rows(frames)
    q_width, f_width = v2a_tokens.shape[1], v2a_frames.shape[1]
    query_mask = torch.zeros(num_video, q_width, f_width, dtype=torch.bool)
    slot = torch.zeros(num_audio, dtype=torch.long)
    for g, toks in enumerate(tokens):
        for q, j in enumerate(toks):
            slot[j] = g * q_width + q
            for fi, f in enumerate(frames[g]):
                query_mask[g, q, fi] = bool(v2a_mask[j, f])

    # Positions for the time-slice RoPE of the cross-modal attention, on the query's timeline.
    v_idx = torch.arange(num_video, dtype=torch.float64)
    a_idx = torch.arange(num_audio, dtype=torch.float64)
    if rope_align:
        a_centres = (a_idx + 0.5) / timeline.audio_latent_rate
        v_centres = torch.tensor([float((s + e) / 2) for s, e in v_spans], dtype=torch.float64)
        a2v_k = video_index_at_time(timeline, a_centres)
        v2a_k = audio_index_at_time(timeline, v_centres)
    else:  # ablation: each stream keeps its own raw index (misaligned timelines)
        a2v_k, v2a_k = a_idx, v_idx
    return LocalWindows(
        a2v_mask=a2v_mask,
        v2a_mask=v2a_mask,
        a2v_index=a2v_index,
        a2v_valid=a2v_valid,
        v2a_frames=v2a_frames,
        v2a_frames_valid=v2a_frames_valid,
        v2a_tokens=v2a_tokens,
        v2a_tokens_valid=v2a_tokens_valid,
        v2a_query_mask=query_mask,
        v2a_slot=slot,
        a2v_q_pos=v_idx.float(),
        a2v_k_pos=a2v_k.float(),
        v2a_q_pos=a_idx.float(),
        v2a_k_pos=v2a_k.float(),
    )


_DEVICE_CACHE: dict[tuple, LocalWindows] = {}


def local_windows(
    timeline: TimelineConfig,
    num_video: int,
    num_audio: int,
    *,
    a2v_window: int,
    v2a_window: int,
    rope_align: bool,
    device: torch.device | str = "cpu",
) -> LocalWindows:
    """Windows and aligned positions for a clip of ``num_video`` latent frames and ``num_audio``
    audio latents, cached per shape and device."""
    key = (timeline, num_video, num_audio, a2v_window, v2a_window, rope_align, str(device))
    hit = _DEVICE_CACHE.get(key)
    if hit is None:
        hit = _local_windows_cpu(timeline, num_video, num_audio, a2v_window, v2a_window, rope_align).to(device)
        if len(_DEVICE_CACHE) > 128:
            _DEVICE_CACHE.clear()
        _DEVICE_CACHE[key] = hit
    return hit
