"""Audio-visual synchronisation metrics: Sync-C, Sync-D and DeSync analogues without learned weights.

The Harmony paper (arXiv 2511.21579, Tab. 2-5) scores sync with SyncNet confidence (Sync-C) and
distance (Sync-D) and with Synchformer's predicted offset (DeSync). Those networks are not available
here, so this module builds signal-processing analogues that work on any clip, generated or real:

1. Event signals (`signals`): visual `motion_energy` (how much the picture changes) and
   `motion_acceleration` (how abruptly motion or brightness changes), and audio `loudness_change`.
2. All three are linearly resampled onto a common clock of ``max(100 Hz, 4 x fps)``, so the offset
   resolution is a small fraction of a video frame, and z-normalised.
3. Two pairings are cross-correlated over candidate offsets: energy with loudness change
   ("articulation": a mouth moves as the voice gets louder or softer) and acceleration with loudness
   change ("impact": a bounce, a strike or a flash happens at the sound's onset). At each offset
   ``k`` the Pearson correlation is computed on the overlapping parts, and the curve keeps the
   better pairing: ``r(k) = max(r_energy(k), r_accel(k))``. A clip is in sync if either kind of
   event lines up; taking the maximum lets a bouncing ball be judged by its bounces and a talking
   face by its mouth without knowing which is which.
4. Offsets are searched in ``[-max_offset_s, +max_offset_s]``, clamped so that at least half of the
   clip overlaps. The offset is chosen by ``r(k) * sqrt(overlap(k) / N)``: a correlation measured on
   half the clip is worth less evidence than one on all of it (its noise grows as
   ``1 / sqrt(overlap)``), which stops a few coincidences near the search edge from winning on short
   clips. The chosen lag is refined below the clock step by parabolic interpolation.

Sign convention: a **positive offset means the audio lags the video** (a sound is heard ``offset_s``
seconds after the event is seen). `shift_audio` with ``seconds > 0`` delays the audio, so
``sync_report(frames, shift_audio(wav, 0.2, sr), ...)`` reports an offset of about +0.2 s.

Metric definitions (per clip; ``k*`` is the chosen offset):

- **confidence** (Sync-C analogue, higher is better): ``r(k*) - median_k r(k)``, the peak of the
  correlation curve above its median, as SyncNet's confidence is the median distance minus the
  minimum distance over offsets. On the synthetic world it averages 0.58-0.78 per family for
  in-sync clips and 0.22-0.38 when the audio comes from another clip of the same family.
- **distance** (Sync-D analogue, lower is better): the mean squared difference between the
  z-normalised overlapping visual and audio signals at ``k*`` for the better pairing. For
  z-normalised signals this is exactly ``2 * (1 - r(k*))``: 0 for identical event patterns, 2 for
  unrelated ones, 4 at most.
- **desync_s** (DeSync analogue, lower is better): ``|offset_s|`` in seconds.

The absolute values are not comparable with the paper's SyncNet numbers; compare methods with each
other on the same clips.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data.clip import Clip
from .signals import (
    MIN_FRAMES,
    check_rate,
    loudness_change,
    motion_acceleration,
    motion_energy,
    prepare_frames,
    to_mono,
)

__all__ = [
    "SyncReport",
    "aggregate",
    "format_table",
    "lagged_correlation",
    "shift_audio",
    "sync_report",
    "sync_report_for_clip",
]

log = logging.getLogger(__name__)

MIN_ANALYSIS_RATE = 100.0
"""Lowest common clock in Hz; the clock is ``max(MIN_ANALYSIS_RATE, 4 * fps)``."""

# Below this standard deviation a signal carries no events (silence, a still image).
_FLAT_STD = 1e-8


@dataclass(frozen=True, eq=False)
class SyncReport:
    """Synchronisation of one clip; see the module docstring for the exact definitions.

    Attributes:
        offset_s: signed offset in seconds, positive when the audio lags the video; ``nan`` when
            ``valid`` is False.
        desync_s: ``|offset_s|`` (DeSync analogue, lower is better); ``nan`` when not valid.
        confidence: ``peak_corr`` minus the median of ``correlation`` (Sync-C analogue, higher is better).
        distance: mean squared difference of the z-normalised signals at the chosen offset,
            ``2 * (1 - peak_corr)`` (Sync-D analogue, lower is better, range 0..4).
        peak_corr: the Pearson correlation at the chosen offset, in -1..1.
        offsets: ``[L]`` float64 candidate offsets in seconds, ascending, symmetric around 0.
        correlation: ``[L]`` float64 correlation curve ``r(k)`` (better pairing at each offset).
        valid: False when the audio or the video has no events (silence, a still image): the offset
            is undefined, confidence is 0 and distance is 2.
    """

    offset_s: float
    desync_s: float
    confidence: float
    distance: float
    peak_corr: float
    offsets: torch.Tensor
    correlation: torch.Tensor
    valid: bool = True

    def as_row(self) -> dict[str, float]:
        """The paper-style metrics as a `format_table` row: ``Sync-C``, ``Sync-D``, ``DeSync``, ``offset``."""
        return {"Sync-C": self.confidence, "Sync-D": self.distance, "DeSync": self.desync_s, "offset": self.offset_s}


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _interp(values: torch.Tensor, times: torch.Tensor, clock: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of ``values`` sampled at ascending ``times`` onto ``clock`` (ends held)."""
    values = values.double()
    idx = torch.searchsorted(times, clock).clamp(1, times.shape[0] - 1)
    t0, t1 = times[idx - 1], times[idx]
    w = ((clock - t0) / (t1 - t0)).clamp(0.0, 1.0)
    return values[idx - 1] * (1 - w) + values[idx] * w


def _zscore(x: torch.Tensor) -> torch.Tensor:
    """Zero-mean, unit-variance copy of ``[N]``; zeros if it is flat."""
    x = x - x.mean()
    std = x.std(unbiased=False)
    return x / std if std > _FLAT_STD else torch.zeros_like(x)


def _parabolic_peak(curve: torch.Tensor, i: int) -> float:
    """Sub-sample position of the maximum at index ``i`` from the parabola through its neighbours."""
    if i == 0 or i == curve.shape[0] - 1:
        return float(i)
    left, mid, right = float(curve[i - 1]), float(curve[i]), float(curve[i + 1])
    den = left - 2.0 * mid + right
    if den >= 0.0:  # flat top: keep the sample
        return float(i)
    return i + max(-0.5, min(0.5, 0.5 * (left - right) / den))


def lagged_correlation(v_signal: torch.Tensor, a_signal: torch.Tensor, max_lag: int) -> torch.Tensor:
    """Pearson correlation of two signals at every integer lag in ``[-max_lag, max_lag]``.

    At lag ``k`` the pairs are ``(v_signal[n], a_signal[n + k])`` over the indices where both exist,
    so a positive lag means ``a_signal`` is a delayed copy of ``v_signal``. Each lag is normalised by
    the means and standard deviations of its own overlap; an overlap in which either part is
    constant scores 0.

    Args:
        v_signal: ``[N]`` visual signal on the common clock.
        a_signal: ``[N]`` audio signal on the same clock.
        max_lag: largest lag in samples, ``0 <= max_lag < N``.

    Returns:
        ``[2 * max_lag + 1]`` float64 correlations; index ``i`` holds lag ``i - max_lag``.

    Raises:
        ValueError: if the signals are not 1-D of equal length or ``max_lag`` is out of range.
    """
    n = v_signal.shape[-1]
    if v_signal.shape != (n,) or a_signal.shape != (n,):
        raise ValueError(f"{v_signal.shape=} and {a_signal.shape=}: expected two 1-D signals of equal length.")
    if not 0 <= max_lag < n:
        raise ValueError(f"max_lag={max_lag} is out of range: expected 0 <= max_lag < {n} (the signal length).")
    v, a = v_signal.double(), a_signal.double()
    lags = torch.arange(-max_lag, max_lag + 1)
    lo, hi = (-lags).clamp_min(0), (n - lags).clamp_max(n)  # overlap of v is v[lo:hi], of a is a[lo+k:hi+k]
    count = (hi - lo).double()

    def window_sums(x: torch.Tensor, start: torch.Tensor, stop: torch.Tensor) -> torch.Tensor:
        c = torch.cat([x.new_zeros(1), x.cumsum(0)])
        return c[stop] - c[start]

    s_v, s_vv = window_sums(v, lo, hi), window_sums(v * v, lo, hi)
    s_a, s_aa = window_sums(a, lo + lags, hi + lags), window_sums(a * a, lo + lags, hi + lags)
    # sum_n v[n] a[n + k] for every k at once; the zero padding confines each sum to the overlap.
    s_va = F.conv1d(F.pad(a, (max_lag, max_lag))[None, None], v[None, None])[0, 0]
    cov = s_va - s_v * s_a / count
    var = (s_vv - s_v * s_v / count).clamp_min(0.0) * (s_aa - s_a * s_a / count).clamp_min(0.0)
    den = var.sqrt()
    out = torch.where(den > _FLAT_STD * count, cov / den.clamp_min(1e-300), torch.zeros_like(cov))
    return out.clamp(-1.0, 1.0)


def _event_signals(
    video: torch.Tensor, wav: torch.Tensor, fps: float, sample_rate: float, clock: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Visual ``[2, N]`` (energy, acceleration) of ``video`` ``[T, 3, h, w]`` and audio ``[N]`` of ``wav``
    ``[S]``, resampled onto ``clock`` ``[N]`` and z-normalised."""
    v_signals = torch.stack(
        [_zscore(_interp(*motion_energy(video, fps), clock)), _zscore(_interp(*motion_acceleration(video, fps), clock))]
    )
    a_signal = _zscore(_interp(*loudness_change(wav, sample_rate, fps), clock))
    return v_signals, a_signal


def _evidence_weight(lost: torch.Tensor) -> torch.Tensor:
    """Weight of a correlation whose overlap misses the fraction ``lost`` of the clip: ``sqrt(1 - lost)``."""
    return (1.0 - lost).sqrt()


def _analyse(v_signals: torch.Tensor, a_signal: torch.Tensor, rate: float, max_lag: int) -> SyncReport:
    """Correlate ``[P, N]`` visual signals with an ``[N]`` audio signal and summarise (module docstring)."""
    n = a_signal.shape[0]
    offsets = torch.arange(-max_lag, max_lag + 1, dtype=torch.float64) / rate
    if not a_signal.any() or not v_signals.any():
        which = "video is static" if not v_signals.any() else "audio has no loudness changes"
        log.warning("sync_report: the %s, so no offset can be measured; reporting confidence 0.", which)
        return SyncReport(math.nan, math.nan, 0.0, 2.0, 0.0, offsets, torch.zeros_like(offsets), valid=False)
    curve = torch.stack([lagged_correlation(v, a_signal, max_lag) for v in v_signals]).amax(dim=0)
    score = curve * _evidence_weight(offsets.abs() * rate / n)
    i = int(torch.argmax(score))
    peak = float(curve[i])
    offset_s = (_parabolic_peak(score, i) - max_lag) / rate
    return SyncReport(
        offset_s=offset_s,
        desync_s=abs(offset_s),
        confidence=peak - float(curve.median()),
        distance=2.0 * (1.0 - peak),
        peak_corr=peak,
        offsets=offsets,
        correlation=curve,
    )


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def sync_report(
    frames: torch.Tensor,
    waveform: torch.Tensor,
    *,
    fps: float,
    sample_rate: float,
    max_offset_s: float = 1.0,
) -> SyncReport:
    """Estimate the audio-visual offset of a clip and score its synchronisation.

    Args:
        frames: ``[T, H, W, 3]`` float in 0..1 (ComfyUI IMAGE layout), ``T >= 8``; any resolution.
        waveform: ``[S]`` or ``[C, S]`` samples at ``sample_rate`` (downmixed to mono); any scale.
        fps: video frame rate (> 0).
        sample_rate: audio sample rate in Hz (> 0); any rate, no resampling needed.
        max_offset_s: largest offset searched in each direction, in seconds (> 0); clamped so that at
            least half of the clip overlaps at every offset.

    Returns:
        A `SyncReport`; a positive ``offset_s`` means the audio lags the video.

    Raises:
        TypeError, ValueError: on invalid frames, waveform, rates or ``max_offset_s``, or when the
            soundtrack is shorter than ``MIN_FRAMES`` video frames.
    """
    fps = check_rate("fps", fps, "Pass the clip's real frame rate.")
    sample_rate = check_rate("sample_rate", sample_rate, "Pass the waveform's real sample rate in Hz.")
    max_offset_s = check_rate("max_offset_s", max_offset_s, "Pass the largest offset to search, e.g. 1.0 seconds.")
    video = prepare_frames(frames)
    wav = to_mono(waveform)
    v_seconds, a_seconds = video.shape[0] / fps, wav.shape[0] / sample_rate
    if a_seconds < MIN_FRAMES / fps:
        raise ValueError(
            f"waveform lasts {a_seconds:.3f} s ({wav.shape[0]} samples at {sample_rate:g} Hz): expected at least "
            f"{MIN_FRAMES} frames' worth ({MIN_FRAMES / fps:.3f} s). Check sample_rate or pass the whole soundtrack."
        )
    if abs(v_seconds - a_seconds) > 0.1 * max(v_seconds, a_seconds):
        log.warning(
            "sync_report: video lasts %.2f s but audio %.2f s; comparing the first %.2f s only.",
            v_seconds,
            a_seconds,
            min(v_seconds, a_seconds),
        )
    rate = max(MIN_ANALYSIS_RATE, 4.0 * fps)
    clock = torch.arange(int(math.floor(min(v_seconds, a_seconds) * rate)), dtype=torch.float64) / rate
    v_signals, a_signal = _event_signals(video, wav, fps, sample_rate, clock)
    max_lag = min(round(max_offset_s * rate), clock.shape[0] // 2)
    return _analyse(v_signals, a_signal, rate, max_lag)


def sync_report_for_clip(clip: Clip, *, max_offset_s: float = 1.0) -> SyncReport:
    """`sync_report` on a `Clip` (its frames, waveform, fps and sample rate).

    Args:
        clip: the clip; ``clip.frames`` ``[T, H, W, 3]``, ``clip.waveform`` ``[S]``.
        max_offset_s: largest offset searched in each direction, in seconds.

    Returns:
        The clip's `SyncReport`.
    """
    return sync_report(
        clip.frames, clip.waveform, fps=clip.fps, sample_rate=clip.sample_rate, max_offset_s=max_offset_s
    )


def shift_audio(waveform: torch.Tensor, seconds: float, sample_rate: float) -> torch.Tensor:
    """Delay (``seconds > 0``) or advance (``seconds < 0``) a waveform, keeping its length.

    The shift is rounded to whole samples; vacated samples are zero (silence).

    Args:
        waveform: ``[S]`` or ``[C, S]`` samples; the last axis is time.
        seconds: shift in seconds; positive makes the audio lag the video.
        sample_rate: samples per second (> 0).

    Returns:
        A new tensor with the shape and dtype of ``waveform``.

    Raises:
        TypeError, ValueError: on a non-tensor waveform, a wrong rank, or a bad ``seconds``/``sample_rate``.
    """
    sample_rate = check_rate("sample_rate", sample_rate, "Pass the waveform's real sample rate in Hz.")
    if not isinstance(waveform, torch.Tensor):
        raise TypeError(f"waveform has type {type(waveform).__name__}: expected a torch.Tensor [S] or [C, S].")
    if waveform.ndim not in (1, 2):
        raise ValueError(f"waveform has shape {tuple(waveform.shape)}: expected [S] or [C, S].")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        raise ValueError(f"seconds={seconds!r} is invalid: expected a finite number (positive delays the audio).")
    shift = round(seconds * sample_rate)
    out = torch.zeros_like(waveform)
    s = waveform.shape[-1]
    if abs(shift) >= s:
        return out
    if shift >= 0:
        out[..., shift:] = waveform[..., : s - shift]
    else:
        out[..., : s + shift] = waveform[..., -shift:]
    return out


def aggregate(reports: Sequence[SyncReport]) -> dict[str, float]:
    """Mean metrics over clips, for a results table.

    Confidence and distance average over every report (a clip without events counts as confidence 0,
    distance 2). DeSync averages over the valid reports only, since an undefined offset has no size;
    ``n_invalid`` says how many were left out.

    Args:
        reports: one `SyncReport` per clip, at least one.

    Returns:
        ``{"n", "n_invalid", "confidence", "distance", "desync_s"}``; ``desync_s`` is ``nan`` if no
        report is valid.

    Raises:
        ValueError: if ``reports`` is empty.
    """
    if len(reports) == 0:
        raise ValueError("reports is empty: expected at least one SyncReport. Run sync_report on some clips first.")
    valid = [r for r in reports if r.valid]
    n = len(reports)
    return {
        "n": n,
        "n_invalid": n - len(valid),
        "confidence": sum(r.confidence for r in reports) / n,
        "distance": sum(r.distance for r in reports) / n,
        "desync_s": sum(r.desync_s for r in valid) / len(valid) if valid else math.nan,
    }


def format_table(rows: list[dict], *, digits: int = 3) -> str:
    """Render metric rows as a GitHub-flavoured markdown table.

    Columns are the union of the rows' keys in first-seen order. Floats (and one-element tensors)
    are printed with ``digits`` decimals, ``nan``, ``None`` and missing cells as ``–`` (as in the
    paper's tables), anything else with ``str``; ``|`` inside text is escaped.

    Args:
        rows: one dict per table row, e.g. ``{"method": "ours", "Sync-C": 5.6}``.
        digits: decimals for floats.

    Returns:
        The table: header, separator and one line per row, without a trailing newline.

    Raises:
        ValueError: if ``rows`` is empty.
        TypeError: if a row is not a dict.
    """
    if len(rows) == 0:
        raise ValueError("rows is empty: expected at least one dict. Pass the metric rows to render.")
    columns: dict[str, None] = {}
    cleaned = []
    for row in rows:
        if not isinstance(row, dict):
            raise TypeError(f"row {row!r} has type {type(row).__name__}: expected a dict of column -> value.")
        cleaned.append({str(k): v for k, v in row.items()})
        columns.update(dict.fromkeys(cleaned[-1]))

    def cell(value: object) -> str:
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in cleaned]
    return "\n".join(lines)
