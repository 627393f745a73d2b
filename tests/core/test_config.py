"""Configs: frozen, validated with helpful messages, JSON round trip, and the time geometry."""

from __future__ import annotations

import dataclasses

import pytest

from harmony_core.config import PRESETS, HarmonyConfig, TimelineConfig, TowerConfig, get_preset
from harmony_core.data.synthetic import num_frames_for_seconds


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_through_json(name):
    cfg = get_preset(name)
    assert HarmonyConfig.from_json(cfg.to_json()) == cfg


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_preset("tiny").speech_dim = 3


def test_bad_fields_name_the_field_and_the_fix():
    with pytest.raises(ValueError, match="TowerConfig.dim=50 is invalid: expected a multiple of num_heads=4"):
        TowerConfig(in_channels=4, patch_size=(1, 2, 2), dim=50, ffn_dim=8, num_heads=4, num_layers=1, text_dim=4)
    with pytest.raises(ValueError, match="blocks pair 1:1"):
        dataclasses.replace(get_preset("tiny"), audio=dataclasses.replace(get_preset("tiny").audio, num_layers=3))
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        get_preset("huge")


def test_a_stored_config_from_another_version_is_refused_clearly():
    d = get_preset("tiny").to_dict()
    d["video"]["mystery"] = 1
    with pytest.raises(ValueError, match="does not match this version"):
        HarmonyConfig.from_dict(d)


def test_causal_frame_geometry():
    tl = TimelineConfig()
    assert tl.video_latent_frames(121) == 31 and tl.video_pixel_frames(31) == 121  # Wan2.2 5 s
    assert tl.audio_latents_for_video(31) == 157  # 121 / 24 s * 31.25 = 157.55 -> whole latents: 157 (Ovi)
    with pytest.raises(ValueError, match="expected 1 \\+ k\\*4"):
        tl.video_latent_frames(120)
    for seconds in (1.0, 1.1, 2.0, 2.37, 4.0, 5.0):
        assert tl.pixel_frames_for_seconds(seconds) == num_frames_for_seconds(seconds, 24.0)
