"""Tests for harmony_core.metrics.sync and .signals: the Sync-C / Sync-D / DeSync analogues.

Two kinds of test clips with known timing are used:

* small hand-built clips made here (a lamp flashing with beeps, a ball bouncing with clicks) at
  25 fps / 22.05 kHz and a non-square frame, so nothing depends on the synthetic world's geometry;
* the synthetic world's four families (`harmony_core.data.synthetic`) at 24 fps / 16 kHz.

"Within one frame" means an absolute error of at most ``1 / fps`` seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harmony_core.data.clip import Clip
from harmony_core.data.synthetic import generate_clip
from harmony_core.metrics.signals import loudness_change, motion_acceleration, motion_energy, prepare_frames
from harmony_core.metrics.sync import (
    SyncReport,
    aggregate,
    format_table,
    lagged_correlation,
    shift_audio,
    sync_report,
    sync_report_for_clip,
)

FPS, SR, H, W = 25.0, 22050, 36, 48
SHIFTS = (-0.5, -0.25, -0.1, 0.1, 0.25, 0.5)

# ----------------------------------------------------------------------------------------------
# Hand-built clips
# ----------------------------------------------------------------------------------------------


def _event_times(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """5-7 sorted event times at least 0.3 s apart, away from the clip edges."""
    while True:
        times = np.sort(rng.uniform(0.2, seconds - 0.3, int(rng.integers(5, 8))))
        if np.all(np.diff(times) > 0.3):
            return times


def _disc(cy: torch.Tensor, cx: torch.Tensor, r: float) -> torch.Tensor:
    """``[T, H, W]`` anti-aliased discs centred at per-frame ``cy``, ``cx`` ``[T]``."""
    ys = torch.arange(H, dtype=torch.float32).view(1, H, 1) + 0.5
    xs = torch.arange(W, dtype=torch.float32).view(1, 1, W) + 0.5
    d = torch.sqrt((ys - cy.view(-1, 1, 1)) ** 2 + (xs - cx.view(-1, 1, 1)) ** 2)
    return (r + 0.5 - d).clamp(0.0, 1.0)


def flash_clip(seed: int, seconds: float = 4.0) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """A lamp lighting up (then fading) at random times, each time with a decaying beep."""
    rng = np.random.default_rng(seed)
    events = _event_times(rng, seconds)
    t_v = np.arange(round(seconds * FPS)) / FPS
    since = t_v[:, None] - events[None, :]
    level = torch.from_numpy(np.where(since >= 0, np.exp(-since / 0.12), 0.0).sum(1).clip(0, 1)).float()
    lamp = _disc(torch.full((1,), 0.5 * H), torch.full((1,), rng.uniform(0.3, 0.7) * W), 6.0)
    frames = (0.15 + 0.8 * lamp[..., None] * level.view(-1, 1, 1, 1)).expand(-1, H, W, 3).clone()
    t_a = np.arange(round(seconds * SR)) / SR
    since = t_a[:, None] - events[None, :]
    env = np.where(since >= 0, np.exp(-since.clip(0) / 0.12), 0.0)
    wav = (env * np.sin(2 * np.pi * rng.uniform(400, 1200) * since)).sum(1) + 0.003 * rng.standard_normal(len(t_a))
    return frames.clamp(0, 1), torch.from_numpy(0.5 * wav / np.abs(wav).max()).float(), events


def ball_clip(seed: int, seconds: float = 4.0) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """A ball hopping along parabolas that touch the floor exactly at random times, clicking on contact."""
    rng = np.random.default_rng(seed)
    events = _event_times(rng, seconds)
    knots = np.concatenate([[events[0] - 0.5], events, [events[-1] + 0.5]])
    t_v = np.arange(round(seconds * FPS)) / FPS
    k = np.clip(np.searchsorted(knots, t_v) - 1, 0, len(knots) - 2)
    u = np.clip((t_v - knots[k]) / (knots[k + 1] - knots[k]), 0, 1)
    height = 0.6 * H * np.minimum(1.0, (knots[k + 1] - knots[k]) / 0.7) * 4 * u * (1 - u)
    cy = torch.from_numpy(H - 5.0 - height).float()
    cx = torch.from_numpy(0.5 * W + 0.3 * W * np.sin(t_v * rng.uniform(0.5, 1.5))).float()
    frames = (0.1 + 0.8 * _disc(cy, cx, 3.5)[..., None]).expand(-1, H, W, 3).clone()
    t_a = np.arange(round(seconds * SR)) / SR
    wav = 0.003 * rng.standard_normal(len(t_a))
    for e in events:
        m = (t_a >= e) & (t_a < e + 0.1)
        wav[m] += rng.standard_normal(int(m.sum())) * np.exp(-(t_a[m] - e) / 0.015)
    return frames.clamp(0, 1), torch.from_numpy(0.5 * wav / np.abs(wav).max()).float(), events


BUILDERS = {"flash": flash_clip, "ball": ball_clip}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Each report is a few milliseconds of small tensor ops; on a shared 2-core machine the default
    # thread pool makes them ~50x slower through contention. Restored afterwards for other modules.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _report(frames: torch.Tensor, wav: torch.Tensor, fps: float = FPS, sr: float = SR) -> SyncReport:
    return sync_report(frames, wav, fps=fps, sample_rate=sr)


# ----------------------------------------------------------------------------------------------
# Correlation maths
# ----------------------------------------------------------------------------------------------


def test_lagged_correlation_equals_numpy_pearson_on_each_overlap():
    g = torch.Generator().manual_seed(0)
    v, a = torch.randn(120, generator=g, dtype=torch.float64), torch.randn(120, generator=g, dtype=torch.float64)
    curve = lagged_correlation(v, a, 30)
    for i, k in enumerate(range(-30, 31)):
        lo, hi = max(0, -k), min(120, 120 - k)
        expected = np.corrcoef(v[lo:hi].numpy(), a[lo + k : hi + k].numpy())[0, 1]
        assert curve[i].item() == pytest.approx(expected, abs=1e-12)


def test_lagged_correlation_of_a_delayed_copy_is_one_at_the_delay():
    g = torch.Generator().manual_seed(1)
    v = torch.randn(200, generator=g, dtype=torch.float64)
    a = torch.zeros_like(v)
    a[7:] = 3.0 * v[:-7] + 1.0  # delayed by 7 samples, rescaled and offset: Pearson ignores both
    curve = lagged_correlation(v, a, 20)
    assert int(curve.argmax()) - 20 == 7
    assert curve.max().item() == pytest.approx(1.0, abs=1e-12)


def test_shift_audio_delays_and_advances_with_silence():
    wav = torch.arange(1.0, 11.0)  # ten samples at 10 Hz
    assert shift_audio(wav, 0.3, 10).tolist() == [0, 0, 0, 1, 2, 3, 4, 5, 6, 7]
    assert shift_audio(wav, -0.2, 10).tolist() == [3, 4, 5, 6, 7, 8, 9, 10, 0, 0]
    assert shift_audio(wav[None].repeat(2, 1), 5.0, 10).abs().sum() == 0  # shifted out entirely


def test_shifted_audio_is_reported_with_the_sign_of_the_shift():
    frames, wav, _ = flash_clip(0)
    assert _report(frames, shift_audio(wav, 0.3, SR)).offset_s > 0.25  # delayed audio lags the video
    assert _report(frames, shift_audio(wav, -0.3, SR)).offset_s < -0.25


def test_report_fields_follow_their_definitions():
    frames, wav, _ = ball_clip(3)
    r = _report(frames, wav)
    i = int(torch.argmin((r.offsets - r.offset_s).abs()))  # the sampled offset nearest the refined one
    assert r.peak_corr == pytest.approx(r.correlation[i].item(), abs=0.02)
    assert r.confidence == pytest.approx(r.peak_corr - r.correlation.median().item(), abs=1e-12)
    assert r.distance == pytest.approx(2.0 * (1.0 - r.peak_corr), abs=1e-12)
    assert r.desync_s == abs(r.offset_s)
    assert r.offsets[0].item() == pytest.approx(-1.0) and r.offsets[-1].item() == pytest.approx(1.0)


def test_distance_is_the_mean_squared_difference_of_z_normalised_signals():
    # For z-normalised x, y: mean (x - y)^2 = 2 - 2 * mean(x * y) = 2 * (1 - r).
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(500, generator=g, dtype=torch.float64), torch.randn(500, generator=g, dtype=torch.float64)
    y = y + x
    zx, zy = (x - x.mean()) / x.std(unbiased=False), (y - y.mean()) / y.std(unbiased=False)
    r = lagged_correlation(x, y, 0).item()
    assert (zx - zy).pow(2).mean().item() == pytest.approx(2.0 * (1.0 - r), abs=1e-12)


# ----------------------------------------------------------------------------------------------
# Signals
# ----------------------------------------------------------------------------------------------


def test_motion_acceleration_peaks_at_a_bounce_and_is_small_in_uniform_motion():
    t = torch.arange(40, dtype=torch.float32)
    # Moves 2 px per frame towards the floor, touches it at frame 20 and moves back up at 2 px per frame.
    cy = H - 5.0 - 2.0 * (t - 20).abs().clamp(max=13)
    frames = (0.1 + 0.8 * _disc(cy, torch.full_like(t, W / 2), 3.5)[..., None]).expand(-1, H, W, 3).contiguous()
    accel, times = motion_acceleration(prepare_frames(frames), FPS)
    assert times[int(accel.argmax())].item() == pytest.approx(20 / FPS)
    uniform = accel[(times > 9 / FPS) & (times < 18 / FPS)]
    assert uniform.max() < 0.05 * accel.max()  # first moments are linear in displacement: no false events
    energy, e_times = motion_energy(prepare_frames(frames), FPS)
    assert e_times[0].item() == pytest.approx(0.5 / FPS)  # a difference sits between its two frames
    assert energy.max() < 1.5 * energy.median()  # while the motion energy shows no event at the bounce


def test_loudness_change_peaks_at_a_tone_onset():
    onset = 0.737
    t = torch.arange(round(2.0 * SR), dtype=torch.float64) / SR
    wav = torch.where(t >= onset, torch.sin(2 * math.pi * 440 * t), torch.zeros_like(t))
    values, times = loudness_change(wav.float(), SR, FPS)
    # The mean |x| under a centred window rises like the window's cumulative sum: steepest at the
    # onset itself, so the peak is within half a 5 ms hop (plus half a 440 Hz cycle of ripple).
    assert abs(times[int(values.argmax())].item() - onset) <= 0.0025 + 0.5 / 440


# ----------------------------------------------------------------------------------------------
# Hand-built clips: ground truth, injected shifts, unrelated audio
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILDERS)
def test_hand_built_clips_in_sync_have_an_offset_within_one_frame(name):
    for seed in range(3):
        frames, wav, _ = BUILDERS[name](seed)
        assert abs(_report(frames, wav).offset_s) <= 1 / FPS, (name, seed)


@pytest.mark.parametrize("name", BUILDERS)
def test_hand_built_clips_recover_injected_shifts_within_one_frame(name):
    for seed in range(3):
        frames, wav, _ = BUILDERS[name](seed)
        for shift in SHIFTS:
            offset = _report(frames, shift_audio(wav, shift, SR)).offset_s
            assert abs(offset - shift) <= 1 / FPS, (name, seed, shift, offset)


@pytest.mark.parametrize("name", BUILDERS)
def test_hand_built_clips_are_more_confident_in_sync_than_with_another_clips_audio(name):
    clips = [BUILDERS[name](seed) for seed in range(4)]
    in_sync = [_report(f, w).confidence for f, w, _ in clips]
    unrelated = [_report(f, clips[(i + 1) % 4][1]).confidence for i, (f, _, _) in enumerate(clips)]
    assert np.mean(in_sync) > np.mean(unrelated) + 0.2, (in_sync, unrelated)
    assert np.mean([_report(f, w).distance for f, w, _ in clips]) < 1.0  # correlation above 0.5


# ----------------------------------------------------------------------------------------------
# Synthetic world
# ----------------------------------------------------------------------------------------------

FAMILIES = ("ball", "face", "flash", "drum")
@pytest.fixture(scope="module")
def world() -> dict[str, list[Clip]]:
    return {f: [generate_clip(seed, family=f, seconds=4.0) for seed in range(6)] for f in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_synthetic_clips_in_sync_have_an_offset_within_one_frame(world, family):
    for clip in world[family]:
        assert abs(sync_report_for_clip(clip).offset_s) <= 1 / clip.fps


@pytest.mark.parametrize("family", FAMILIES)
def test_synthetic_clips_recover_injected_shifts_within_one_frame(world, family):
    for seed, clip in enumerate(world[family]):
        for shift in SHIFTS:
            wav = shift_audio(clip.waveform, shift, clip.sample_rate)
            offset = sync_report(clip.frames, wav, fps=clip.fps, sample_rate=clip.sample_rate).offset_s
            assert abs(offset - shift) <= 1 / clip.fps, (seed, shift, offset)


@pytest.mark.parametrize("family", FAMILIES)
def test_synthetic_clips_are_more_confident_in_sync_than_with_another_clips_audio(world, family):
    clips = world[family]
    in_sync = [sync_report_for_clip(c).confidence for c in clips]
    unrelated = [
        sync_report(c.frames, clips[(i + 1) % len(clips)].waveform, fps=c.fps, sample_rate=c.sample_rate).confidence
        for i, c in enumerate(clips)
    ]
    assert np.mean(in_sync) > np.mean(unrelated) + 0.15, (in_sync, unrelated)


# ----------------------------------------------------------------------------------------------
# Degenerate inputs, validation, aggregation, tables
# ----------------------------------------------------------------------------------------------


def test_still_video_or_silent_audio_gives_an_invalid_report():
    frames, wav, _ = flash_clip(1)
    still = _report(frames[:1].expand(frames.shape[0], -1, -1, -1).contiguous(), wav)
    silent = _report(frames, torch.zeros_like(wav))
    for r in (still, silent):
        assert not r.valid and math.isnan(r.offset_s) and math.isnan(r.desync_s)
        assert r.confidence == 0.0 and r.distance == 2.0


def test_stereo_with_identical_channels_matches_mono():
    frames, wav, _ = ball_clip(2)
    mono, stereo = _report(frames, wav), _report(frames, torch.stack([wav, wav]))
    assert stereo.offset_s == pytest.approx(mono.offset_s, abs=1e-9)
    assert stereo.confidence == pytest.approx(mono.confidence, abs=1e-9)


@pytest.mark.parametrize(
    ("frames", "wav", "kwargs", "error", "match"),
    [
        (torch.rand(10, 8, 8), torch.rand(4000), {}, ValueError, r"\[T, H, W, 3\]"),
        (torch.rand(10, 8, 8, 3) * 255, torch.rand(4000), {}, ValueError, "255"),
        ((torch.rand(10, 8, 8, 3) * 255).to(torch.uint8), torch.rand(4000), {}, TypeError, "255"),
        (torch.rand(4, 8, 8, 3), torch.rand(4000), {}, ValueError, "at least 8"),
        (torch.rand(10, 8, 8, 3), torch.rand(4000), {"fps": 0.0}, ValueError, "fps=0.0"),
        (torch.rand(10, 8, 8, 3), torch.rand(4000), {"sample_rate": -1}, ValueError, "sample_rate=-1"),
        (torch.rand(10, 8, 8, 3), torch.zeros(0), {}, ValueError, "no samples"),
        (torch.rand(10, 8, 8, 3), torch.full((4000,), math.nan), {}, ValueError, "NaN"),
        (torch.rand(10, 8, 8, 3), torch.rand(1, 2, 4000), {}, ValueError, r"audio\['waveform'\]\[0\]"),
        (torch.rand(10, 8, 8, 3), torch.rand(100), {}, ValueError, "at least 8 frames"),
        (torch.rand(10, 8, 8, 3), torch.rand(4000), {"max_offset_s": 0}, ValueError, "max_offset_s=0"),
    ],
)
def test_bad_inputs_fail_up_front_with_a_message_naming_the_value(frames, wav, kwargs, error, match):
    args = {"fps": 10.0, "sample_rate": 1000, **kwargs}
    with pytest.raises(error, match=match):
        sync_report(frames, wav, **args)


def _fake_report(offset: float, confidence: float, distance: float, valid: bool = True) -> SyncReport:
    z = torch.zeros(3, dtype=torch.float64)
    return SyncReport(offset, abs(offset), confidence, distance, 1 - distance / 2, z, z, valid=valid)


def test_aggregate_averages_and_leaves_undefined_offsets_out_of_desync():
    reports = [_fake_report(0.1, 0.6, 0.4), _fake_report(-0.3, 0.4, 0.8), _fake_report(math.nan, 0.0, 2.0, False)]
    out = aggregate(reports)
    assert out["n"] == 3 and out["n_invalid"] == 1
    assert out["confidence"] == pytest.approx(1.0 / 3)
    assert out["distance"] == pytest.approx(3.2 / 3)
    assert out["desync_s"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="empty"):
        aggregate([])


def test_format_table_renders_markdown_with_dashes_for_missing_values():
    table = format_table([{"method": "a|b", "Sync-C": 5.6123, "DeSync": math.nan}, {"method": "c", "n": 3}])
    assert table == (
        "| method | Sync-C | DeSync | n |\n|---|---|---|---|\n| a\\|b | 5.612 | – | – |\n| c | – | – | 3 |"
    )
    with pytest.raises(ValueError, match="empty"):
        format_table([])
