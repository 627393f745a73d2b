"""Architecture detection from key names and shapes (real Ovi / Wan2.2 key lists as fixtures)."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import pytest

from harmony_core.config import get_preset
from harmony_core.io.detect import detect_architecture, detect_layout, is_quant_key, wrapper_prefix
from harmony_core.model.dit import HarmonyDiT

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "ovi"


def _keys(name: str) -> dict[str, tuple[int, ...]]:
    with gzip.open(FIX / name) as f:
        return {k: tuple(s) for k, s in json.load(f)["keys"]}


def test_ovis_full_checkpoint_is_recognised_as_the_ovi_preset():
    found = detect_architecture(_keys("full_keys.json.gz"))
    assert (found.layout, found.preset, found.prefix) == ("ovi", "ovi", "")
    assert found.global_fusion and not found.local and not found.global_style and found.speech_dim == 0
    assert found.video.dim == 3072 and found.video.num_layers == 30 and found.video.in_channels == 48
    assert found.audio.in_channels == 20 and found.audio.conv_mlp_hidden == 8192 and found.audio.patch_kernel == 7
    assert found.to_config() == get_preset("ovi")


def test_a_stock_wan_file_under_comfyuis_prefix_is_a_video_tower_only():
    keys = {"model.diffusion_model." + k: s for k, s in _keys("wan22_ti2v_5b_keys.json.gz").items()}
    keys["model.diffusion_model.blocks.0.self_attn.q.scale_weight"] = (1,)  # a scaled-fp8 side key
    found = detect_architecture(keys)
    assert (found.layout, found.prefix, found.audio) == ("wan", "model.diffusion_model.", None)
    assert found.video.patch_size == (1, 2, 2) and found.video.ffn_dim == 14336 and found.video.text_dim == 4096
    assert found.to_config("harmony-full").video == get_preset("harmony-full").video


def test_a_merged_split_ovi_checkpoint_is_recognised():
    ovi = _keys("full_keys.json.gz")
    keys = {k[len("video_model.") :]: s for k, s in ovi.items() if k.startswith("video_model.")}
    keys.update({k: s for k, s in ovi.items() if k.startswith("audio_model.")})
    found = detect_architecture(keys)
    assert (found.layout, found.preset) == ("ovi-split", "ovi") and found.audio.num_layers == 30


def test_harmony_files_are_matched_to_their_preset_from_shapes_alone():
    for name in ("tiny", "harmony-full"):
        state = HarmonyDiT(get_preset(name), device="meta").state_dict()
        found = detect_architecture(state)
        assert found.layout == "harmony" and found.preset == name
        assert found.to_config() == get_preset(name)


def test_a_deeper_or_wider_model_is_described_but_matches_no_preset():
    cfg = get_preset("tiny")
    deeper = dataclasses.replace(
        cfg,
        video=dataclasses.replace(cfg.video, num_layers=3),
        audio=dataclasses.replace(cfg.audio, num_layers=3, in_channels=8),
    )
    found = detect_architecture(HarmonyDiT(deeper, device="meta").state_dict())
    assert found.preset is None and found.video.num_layers == 3 and found.audio.in_channels == 8
    assert found.to_config("tiny") == dataclasses.replace(deeper, name="detected-harmony")


def test_quantisation_side_keys_and_wrappers_are_recognised():
    assert is_quant_key("blocks.0.ffn.0.scale_weight") and is_quant_key("scaled_fp8")
    assert is_quant_key("x.weight_scale") and is_quant_key("x.comfy_quant") and not is_quant_key("x.weight")
    assert wrapper_prefix(["module.model.diffusion_model.a", "module.model.diffusion_model.b"]) == (
        "module.model.diffusion_model."
    )
    assert wrapper_prefix(["video_model.a", "audio_model.b"]) == ""


def test_unknown_layouts_fail_with_a_hint():
    with pytest.raises(ValueError, match="diffusers-format"):
        detect_layout(["condition_embedder.time_embedder.linear_1.weight", "blocks.0.attn1.to_q.weight"])
    with pytest.raises(ValueError, match="not a VAE"):
        detect_layout(["encoder.conv_in.weight"])
    with pytest.raises(ValueError, match="head count"):
        keys = _keys("full_keys.json.gz")
        small = {k: tuple(96 if d == 3072 else d for d in s) for k, s in keys.items()}
        detect_architecture(small).to_config()
