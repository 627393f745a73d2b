"""Fitting user frames and sound to a clip (frame rate, size, length; sample rate, channels)."""

from __future__ import annotations

import math

import pytest
import torch

from harmony_core.io.fit import clip_samples, fit_frames, fit_waveform, valid_frame_count


def test_valid_frame_counts_and_clip_samples_follow_the_causal_vae_and_the_clock():
    assert [valid_frame_count(n, 4) for n in (1, 4, 5, 10, 13)] == [1, 1, 5, 9, 13]
    assert clip_samples(49, 24.0, 16000) == 32667  # 49 / 24 s * 16000, rounded
    with pytest.raises(ValueError, match="frames=0"):
        valid_frame_count(0, 4)


def test_fit_frames_resamples_time_by_nearest_frame_and_pads_with_the_last_frame():
    frames = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 8, 8, 3) / 10
    out = fit_frames(frames, 12.0, target_fps=24.0, height=8, width=8, num_frames=13)
    assert out[:, 0, 0, 0].tolist() == pytest.approx([0, 0, 0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5, 0.5])
    assert fit_frames(frames, 24.0, target_fps=24.0, height=8, width=8).shape == (5, 8, 8, 3)  # longest 1 + 4k


def test_fit_frames_covers_and_centre_crops_to_the_target_size():
    frames = torch.zeros(1, 10, 20, 3)
    frames[:, :, 5:15] = 1.0  # a bright centre band, 10 px wide
    out = fit_frames(frames, 24.0, target_fps=24.0, height=8, width=8)
    assert out.shape == (1, 8, 8, 3)  # 10x20 scaled to 8x16, centre 8 columns kept: the band
    assert float(out.min()) > 0.9
    with pytest.raises(ValueError, match="expected \\[T, H, W, 3\\]"):
        fit_frames(torch.zeros(3, 8, 8), 24.0, target_fps=24.0, height=8, width=8)


def test_fit_waveform_downmixes_resamples_and_pads_with_silence():
    t = torch.arange(44100) / 44100
    tone = torch.sin(2 * math.pi * 1000 * t)
    out = fit_waveform(torch.stack([tone, tone])[None], 44100, target_rate=16000, num_samples=20000)
    assert out.shape == (1, 1, 20000) and not out[0, 0, 16100:].any()  # 1 s of sound, then silence
    spectrum = torch.fft.rfft(out[0, 0, :16000]).abs()
    assert int(spectrum.argmax()) == 1000  # 1 kHz stays 1 kHz (1 Hz bins over one second)
    cancel = fit_waveform(torch.stack([tone, -tone]), 44100, target_rate=44100)
    assert cancel.shape == (1, 1, 44100) and float(cancel.abs().max()) < 1e-6
    loud = fit_waveform(torch.full((1, 100), 3.0), 100, target_rate=100)
    assert float(loud.max()) == 1.0
