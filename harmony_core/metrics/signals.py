"""Event signals for audio-visual synchronisation: visual change from frames, loudness change from audio.

SyncNet and Synchformer learn embeddings in which a mouth shape or an impact matches the sound it
makes. We have no such weights, so this module measures what those embeddings end up keying on:
*when something changes*, in each stream. Every function returns a 1-D non-negative signal and the
time in seconds of each sample; `sync.py` cross-correlates them over candidate offsets.

- `motion_energy` (first order): how much the picture changes, measured where it changes most.
  Matches articulation: a mouth opens and closes as the voice gets louder and softer.
- `motion_acceleration` (second order): how abruptly the motion or brightness changes. Matches
  impacts: a bouncing ball or a mallet reverses its velocity at the instant of the sound, a lamp
  switches on with its beep.
- `loudness_change` (audio): the absolute rate of change of the loudness envelope, the audio
  counterpart of both: it spikes at every onset and moves with every syllable.

Timing convention: pixel frame ``t`` shows the scene at time ``t / fps`` (as in the synthetic world).
A change that first shows in frame ``t`` happened somewhere in ``((t - 1) / fps, t / fps]``, so a
frame difference is stamped at the middle of that interval, ``(t - 0.5) / fps``; without this
half-frame correction every clip would look as if its audio led its video by half a frame.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

__all__ = [
    "MIN_FRAMES",
    "check_frames",
    "check_rate",
    "loudness_change",
    "motion_acceleration",
    "motion_energy",
    "prepare_frames",
    "to_mono",
]

log = logging.getLogger(__name__)

MIN_FRAMES = 8
"""Fewest pixel frames a sync measurement accepts (the correlation needs a few events)."""

# Tolerance on the 0..1 range: resampling and codecs overshoot slightly.
_RANGE_SLACK = 1e-3


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def check_rate(name: str, value: float, hint: str) -> float:
    """Return ``value`` as a float, or raise if it is not a finite positive number.

    Args:
        name: the argument name used in the error message (``"fps"``, ``"sample_rate"``).
        value: the rate to check.
        hint: the fix appended to the message.

    Returns:
        ``float(value)``.

    Raises:
        TypeError: if ``value`` is not a real number.
        ValueError: if ``value`` is not finite and > 0.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}={value!r} has type {type(value).__name__}: expected a number > 0. {hint}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} is invalid: expected a finite number > 0. {hint}")
    return float(value)


def check_frames(frames: torch.Tensor) -> torch.Tensor:
    """Validate pixel frames and return them as float32.

    Args:
        frames: ``[T, H, W, 3]`` floating point in 0..1 (ComfyUI IMAGE layout), ``T >= MIN_FRAMES``.

    Returns:
        ``[T, H, W, 3]`` float32 on the same device.

    Raises:
        TypeError: if ``frames`` is not a floating-point tensor.
        ValueError: on a wrong layout, too few frames, non-finite values or values outside 0..1.
    """
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"frames has type {type(frames).__name__}: expected a torch.Tensor [T, H, W, 3] in 0..1.")
    if not frames.is_floating_point():
        raise TypeError(
            f"frames has dtype {frames.dtype}: expected floating point in 0..1. "
            "For 8-bit frames pass frames.float() / 255."
        )
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"frames has shape {tuple(frames.shape)}: expected [T, H, W, 3] (ComfyUI IMAGE layout). "
            "Permute channels-first video with frames.permute(0, 2, 3, 1) and drop alpha with frames[..., :3]."
        )
    t, h, w, _ = frames.shape
    if t < MIN_FRAMES:
        raise ValueError(
            f"frames has {t} frames: expected at least {MIN_FRAMES} to measure synchronisation. Pass a longer clip."
        )
    if h < 1 or w < 1:
        raise ValueError(f"frames has shape {tuple(frames.shape)}: expected height and width >= 1.")
    frames = frames.float()
    if not torch.isfinite(frames).all():
        raise ValueError("frames contains NaN or inf: expected finite values in 0..1. Check the decoder output.")
    lo, hi = float(frames.min()), float(frames.max())
    if lo < -_RANGE_SLACK or hi > 1.0 + _RANGE_SLACK:
        fix = "Divide 8-bit frames by 255." if hi > 2.0 else "Map [-1, 1] frames with (frames + 1) / 2, or clamp."
        raise ValueError(f"frames span [{lo:.4g}, {hi:.4g}]: expected values in 0..1. {fix}")
    return frames


def to_mono(waveform: torch.Tensor) -> torch.Tensor:
    """Validate a waveform and downmix it to mono float32.

    Args:
        waveform: ``[S]`` mono or ``[C, S]`` multi-channel samples (any scale; finite).

    Returns:
        ``[S]`` float32, the mean over channels.

    Raises:
        TypeError: if ``waveform`` is not a tensor.
        ValueError: on a wrong rank, zero samples or non-finite values.
    """
    if not isinstance(waveform, torch.Tensor):
        raise TypeError(f"waveform has type {type(waveform).__name__}: expected a torch.Tensor [S] or [C, S].")
    if waveform.ndim not in (1, 2):
        raise ValueError(
            f"waveform has shape {tuple(waveform.shape)}: expected [S] or [C, S]. "
            "For a ComfyUI AUDIO dict pass audio['waveform'][0]."
        )
    if waveform.shape[-1] == 0 or waveform.numel() == 0:
        raise ValueError(
            f"waveform has shape {tuple(waveform.shape)} with no samples: expected a non-empty soundtrack."
        )
    waveform = waveform.float()
    if waveform.ndim == 2:
        waveform = waveform.mean(dim=0)
    if not torch.isfinite(waveform).all():
        raise ValueError("waveform contains NaN or inf: expected finite samples. Check the audio decoder output.")
    return waveform


# ----------------------------------------------------------------------------------------------
# Video
# ----------------------------------------------------------------------------------------------


def prepare_frames(frames: torch.Tensor, *, work_size: int = 64) -> torch.Tensor:
    """Validate frames and box-downsample them by an integer factor to the analysis resolution.

    Sync cues live in coarse structure (an object's position, a mouth's opening, a lamp's
    brightness); downsampling removes sensor noise and codec grain that would otherwise look like
    motion everywhere, and makes a 720p clip as cheap as a thumbnail. The factor is an integer so
    that every input pixel lands in exactly one output pixel: brightness mass is conserved as an
    object moves, which `motion_acceleration` relies on (a fractional resize would make a small
    moving object's total brightness flicker with its sub-pixel position).

    Args:
        frames: ``[T, H, W, 3]`` float in 0..1, ``T >= MIN_FRAMES``.
        work_size: the long side in pixels is reduced by ``ceil(max(H, W) / work_size)``; never upsampled.

    Returns:
        ``[T, 3, h, w]`` float32 on the CPU, ``h = H // f`` and ``w = W // f`` (remainder rows and
        columns dropped). Pooling runs on the input's device; the tiny result moves to the CPU.

    Raises:
        TypeError, ValueError: on invalid frames (see `check_frames`) or ``work_size < 1``.
    """
    if work_size < 1:
        raise ValueError(f"work_size={work_size} is invalid: expected >= 1 pixel. Use 64.")
    frames = check_frames(frames).detach()
    _, h, w, _ = frames.shape
    factor = min(math.ceil(max(h, w) / work_size), h, w)
    out = []
    # Chunk over time so a long high-resolution clip never needs a second full-size copy in memory.
    for chunk in frames.split(32, dim=0):
        x = chunk.permute(0, 3, 1, 2)
        out.append((F.avg_pool2d(x, factor) if factor > 1 else x).cpu().contiguous())
    return torch.cat(out, dim=0)


def _check_video(video: torch.Tensor) -> None:
    """Raise unless ``video`` looks like `prepare_frames` output ``[T, 3, h, w]`` with ``T >= 3``."""
    if not isinstance(video, torch.Tensor) or video.ndim != 4 or video.shape[1] != 3 or video.shape[0] < 3:
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"video has shape {shape}: expected [T, 3, h, w] with T >= 3. Pass prepare_frames(frames).")


def motion_energy(
    video: torch.Tensor, fps: float, *, grid: int = 8, top_k_fraction: float = 0.125
) -> tuple[torch.Tensor, torch.Tensor]:
    """First-order visual change: how much the picture changes between consecutive frames.

    The per-pixel mean over RGB of ``|frame_t - frame_{t-1}|`` is pooled on a ``grid x grid`` layout and
    the mean of the ``top_k_fraction`` most active cells is kept. A whole-frame mean would dilute a
    mouth covering 2 % of the picture fifty-fold; the top cells follow whatever moves, wherever it is.
    A global brightness change (a flash) raises every cell and is captured by the same number.

    Args:
        video: ``[T, 3, h, w]`` from `prepare_frames`.
        fps: frame rate (> 0).
        grid: pooling cells per side.
        top_k_fraction: fraction of cells averaged per transition, in (0, 1].

    Returns:
        ``(values [T - 1] float32 >= 0, times [T - 1] float64 seconds)``, ``times[i] = (i + 0.5) / fps``.

    Raises:
        ValueError: on a bad ``video``, ``fps``, ``grid`` or ``top_k_fraction``.
    """
    fps = check_rate("fps", fps, "Pass the clip's real frame rate.")
    _check_video(video)
    if grid < 1 or not 0.0 < top_k_fraction <= 1.0:
        raise ValueError(f"grid={grid}, top_k_fraction={top_k_fraction}: expected grid >= 1 and 0 < fraction <= 1.")
    diff = (video[1:] - video[:-1]).abs().mean(dim=1, keepdim=True)  # [T-1, 1, h, w]
    cells = F.adaptive_avg_pool2d(diff, (min(grid, diff.shape[-2]), min(grid, diff.shape[-1]))).flatten(1)
    k = max(1, round(cells.shape[1] * top_k_fraction))
    values = cells.topk(k, dim=1).values.mean(dim=1)  # [T-1]
    times = (torch.arange(values.shape[0], dtype=torch.float64) + 0.5) / fps
    return values, times


def _moment_basis(h: int, w: int, windows: int) -> torch.Tensor:
    """``[windows^2 * 3, h, w]``: per window ``g`` (uniform if ``windows == 1``, else Gaussian), the maps
    ``g``, ``g * dx`` and ``g * dy`` with coordinates in units of the window spacing."""
    ys = ((torch.arange(h) + 0.5) / h).view(h, 1)
    xs = ((torch.arange(w) + 0.5) / w).view(1, w)
    centres = (torch.arange(windows) + 0.5) / windows
    maps = []
    for cy in centres:
        for cx in centres:
            # Coordinates in units of the window width, so displacement and brightness terms are commensurate.
            dy, dx = (ys - cy) * windows, (xs - cx) * windows
            g = torch.exp(-0.5 * (dx**2 + dy**2)) if windows > 1 else torch.ones_like(dx * dy)
            maps += [g, g * dx, g * dy]
    return torch.stack(maps)


def motion_acceleration(video: torch.Tensor, fps: float, *, windows: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Second-order visual change: how abruptly motion or brightness changes (impacts, strikes, flashes).

    Pixel differences cannot tell a ball in free flight from a ball bouncing: both move by about the
    same amount per frame, and once an object moves further than its own size per frame the
    difference saturates. Image *moments* of the signed frame difference do not have this problem.
    For an object of contrast ``c`` and area ``A`` on a plain background, the zeroth moment of
    ``frame_t - frame_{t-1}`` is the net brightness change and the first moments are exactly
    ``c * A * displacement``, however large the displacement. Their change from one transition to
    the next is therefore proportional to acceleration: small in free flight (gravity), a spike when
    the velocity reverses (a bounce, a mallet hitting a drum), a spike when a lamp switches on.

    By default the moments are taken over the whole frame, where they are exactly linear in
    displacement; two objects would only cancel if they accelerated in opposite directions at the
    same instant. ``windows > 1`` takes them instead in ``windows x windows`` overlapping Gaussian
    windows (one spacing apart and as wide), summing the per-window norms, for scenes with many
    independent movers; on the synthetic world both settings score the same. The change is the
    Euclidean norm over the three moments and the three colours.

    Args:
        video: ``[T, 3, h, w]`` from `prepare_frames`.
        fps: frame rate (> 0).
        windows: windows per side; 1 (the default) is the whole frame, 2 four overlapping Gaussian
            quadrant windows.

    Returns:
        ``(values [T - 2] float32 >= 0, times [T - 2] float64 seconds)``, ``times[i] = (i + 1) / fps``
        (the frame shared by the two transitions being compared).

    Raises:
        ValueError: on a bad ``video``, ``fps`` or ``windows``.
    """
    fps = check_rate("fps", fps, "Pass the clip's real frame rate.")
    _check_video(video)
    if windows < 1:
        raise ValueError(f"windows={windows} is invalid: expected >= 1. Use 1 (the whole frame).")
    t, _, h, w = video.shape
    basis = _moment_basis(h, w, windows).to(video)  # [K*3, h, w]
    diff = video[1:] - video[:-1]  # [T-1, 3, h, w]
    moments = torch.einsum("tchw,bhw->tbc", diff, basis) / (h * w)  # [T-1, K*3, 3]
    moments = moments.reshape(t - 1, windows * windows, 9)  # [T-1, K, 3 moments x 3 colours]
    values = (moments[1:] - moments[:-1]).norm(dim=-1).sum(dim=1)  # [T-2]
    times = (torch.arange(values.shape[0], dtype=torch.float64) + 1.0) / fps
    return values, times


# ----------------------------------------------------------------------------------------------
# Audio
# ----------------------------------------------------------------------------------------------


def loudness_change(
    waveform: torch.Tensor, sample_rate: float, fps: float, *, hop_s: float = 0.005
) -> tuple[torch.Tensor, torch.Tensor]:
    """Absolute rate of change of the loudness envelope, the audio twin of the visual signals.

    The loudness envelope is the mean absolute amplitude under a Hann window one video frame long
    (``1 / fps``), every ``hop_s`` seconds, at the waveform's own sample rate (no resampling). One
    frame is the finest timing the picture can show, so a shorter window would only add detail the
    video cannot match. Lip aperture follows this envelope closely (the classic audio-visual speech
    correlation), and every impact, beep or hit is a jump in it, so its absolute derivative spikes at
    onsets and moves with every syllable. Two deliberate choices:

    - Mean ``|x|`` rather than RMS: a sound switching on makes the windowed mean of ``|x|`` rise like
      the window's own cumulative sum, whose derivative is the (symmetric) window centred on the
      onset, so the onset is located without bias. The square root in an RMS rises fastest at the
      start of the window and would place every onset about 6 ms early.
    - Linear, not logarithmic, amplitude: loud events are the salient ones, and a log scale would
      let the room tone's fluctuations count as events.

    Args:
        waveform: ``[S]`` or ``[C, S]`` samples, finite, non-empty (downmixed to mono).
        sample_rate: samples per second (> 0).
        fps: the video frame rate that sets the window length (> 0).
        hop_s: envelope step in seconds; 5 ms keeps the offset resolution far below one frame.

    Returns:
        ``(values [M] float32 >= 0, times [M] float64 seconds)`` on the CPU, each value stamped halfway
        between the two envelope samples it compares.

    Raises:
        TypeError, ValueError: on an invalid waveform or rate.
    """
    sample_rate = check_rate("sample_rate", sample_rate, "Pass the waveform's real sample rate in Hz.")
    fps = check_rate("fps", fps, "Pass the clip's real frame rate.")
    hop_s = check_rate("hop_s", hop_s, "Use 0.005.")
    wav = to_mono(waveform).detach().cpu().double()
    hop = max(1, round(hop_s * sample_rate))
    win = max(2, round(sample_rate / fps))
    kernel = torch.hann_window(win, periodic=False, dtype=torch.float64)
    kernel = kernel / kernel.sum()
    if wav.shape[0] <= win:
        raise ValueError(
            f"waveform has {wav.shape[0]} samples: expected more than one video frame ({win} samples at "
            f"{sample_rate:g} Hz and fps={fps:g}). Pass a longer soundtrack or check sample_rate."
        )
    # Centred window: envelope sample j describes the instant j * hop / sample_rate. Reflecting at the
    # edges (not zero-padding) keeps a clip that starts or ends loud from showing a fake onset there.
    padded = F.pad(wav[None, None], (win // 2, win - 1 - win // 2), mode="reflect")[0, 0]
    # Only every hop-th window is needed, so frame the signal instead of convolving at every sample.
    envelope = padded.abs().unfold(0, win, hop) @ kernel  # [M + 1]
    values = (envelope[1:] - envelope[:-1]).abs()
    times = (torch.arange(values.shape[0], dtype=torch.float64) + 0.5) * hop / sample_rate
    return values.float(), times
