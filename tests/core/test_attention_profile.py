"""The A2V attention profile: 1.0 at every offset for a frame that averages its window, above 1
near its own time for one that listens locally."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from harmony_core.config import InteractionConfig, get_preset
from harmony_core.metrics.attention import a2v_attention_profile, format_a2v_profile
from tests._helpers import make_conditions, make_latents, make_tiny_model


def _run(model, cfg):
    v, a = make_latents(cfg, batch=2, frames=6)
    return a2v_attention_profile(model, v, a, torch.tensor([0.6, 0.6]), torch.zeros(2), make_conditions(cfg, batch=2))


def _time_only_queries(model, cfg, gain):
    """A2V queries and keys that carry only the first RoPE time pair: scores = gain * cos(angle difference)."""
    with torch.no_grad():
        for block in model.video_model.blocks:
            for lin in (block.a2v.q, block.a2v.k):
                lin.weight.zero_()
                lin.bias.zero_()
                for h in range(cfg.video.num_heads):
                    lin.bias[h * cfg.video.head_dim] = 1.0
            for norm in (block.a2v.norm_q, block.a2v.norm_k):
                norm.weight.fill_(gain)


def test_a_frame_with_content_free_attention_averages_its_window_exactly():
    cfg = get_preset("tiny")
    model = make_tiny_model(cfg)
    with torch.no_grad():
        for block in model.video_model.blocks:
            block.a2v.q.weight.zero_()
            block.a2v.q.bias.zero_()
    for p in _run(model, cfg):
        assert p.by_offset and all(v == pytest.approx(1.0, abs=1e-5) for v in p.by_offset.values())


def test_attention_that_follows_time_peaks_at_the_frames_own_sounds():
    cfg = dataclasses.replace(get_preset("tiny"), interaction=InteractionConfig(a2v_time_scale=1.0))
    model = make_tiny_model(cfg)
    _time_only_queries(model, cfg, gain=3.0)
    profiles = _run(model, cfg)
    for p in profiles:
        assert p.mean_over(0, 1) > 1.3 * p.mean_over(6, 99)
    assert "near / far" in format_a2v_profile(profiles)


def test_a_model_without_local_attention_is_refused():
    cfg = dataclasses.replace(get_preset("tiny"), interaction=InteractionConfig(local=False, global_style=False))
    with pytest.raises(ValueError, match="no local A2V attention"):
        _run(make_tiny_model(cfg), cfg)
