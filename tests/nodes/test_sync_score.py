"""Harmony Sync Score on clips with a known offset, from any source and sample rate."""

from __future__ import annotations

import pytest
import torch

from harmony_core.data.synthetic import generate_clip
from harmony_core.engine import resample_audio
from harmony_core.metrics.sync import shift_audio


def _audio(clip, delay: float, rate: int, channels: int) -> dict:
    wave = resample_audio(shift_audio(clip.waveform, delay, clip.sample_rate)[None], clip.sample_rate, rate)
    return {"waveform": wave.expand(channels, -1)[None].contiguous(), "sample_rate": rate}


def test_sync_score_finds_a_known_audio_delay_at_any_sample_rate(nodes):
    clip = generate_clip(5, family="flash", seconds=3.0)
    offset, confidence, report = nodes.HarmonySyncScore.execute(clip.frames, _audio(clip, 0.25, 44100, 2),
                                                                24.0, 1.0).args
    assert abs(offset - 0.25) < 1.0 / 24  # within one frame
    assert confidence > 0.1 and "sound lags picture" in report
    in_sync = nodes.HarmonySyncScore.execute(clip.frames, _audio(clip, 0.0, 16000, 1), 24.0, 1.0)
    assert abs(in_sync.args[0]) < 1.0 / 24 and in_sync.ui.as_dict()["text"][0] == in_sync.args[2]


def test_sync_score_reports_no_events_instead_of_a_fake_offset(nodes):
    clip = generate_clip(5, family="flash", seconds=1.0)
    silent = {"waveform": torch.zeros(1, 1, 16000), "sample_rate": 16000}
    offset, confidence, report = nodes.HarmonySyncScore.execute(clip.frames, silent, 24.0, 1.0).args
    assert (offset, confidence) == (0.0, 0.0) and "no measurable events" in report


def test_sync_score_names_itself_when_the_clip_is_too_short(nodes):
    with pytest.raises(ValueError, match="^Harmony Sync Score: "):
        nodes.HarmonySyncScore.execute(torch.rand(4, 16, 16, 3), {"waveform": torch.zeros(1, 1, 800),
                                                                   "sample_rate": 16000}, 24.0, 1.0)
