"""Ovi / Wan2.2 -> HarmonyDiT conversion: key tables against the real checkpoint key lists, and
loading (dtypes, scaled fp8, torch files, wrapper prefixes, fresh modules, readable errors).

``tests/fixtures/ovi/full_keys.json.gz`` lists every key and shape of Ovi's full-size checkpoint,
generated from Ovi's own ``FusionModel`` on the meta device; ``wan22_ti2v_5b_keys.json.gz`` does the
same for Wan2.2's own ``WanModel`` with the TI2V-5B config.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from harmony_core.config import InteractionConfig, get_preset
from harmony_core.io.convert import (
    harmony_key_to_ovi,
    harmony_to_ovi_state,
    harmony_to_wan_state,
    is_fusion_key,
    is_harmony_only_key,
    load_ovi_checkpoint,
    ovi_key_to_harmony,
    ovi_to_harmony_state,
    wan_to_harmony_state,
)
from harmony_core.model.dit import HarmonyDiT
from tests._helpers import make_conditions, make_latents

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "ovi"


def _keys(name: str) -> dict[str, tuple[int, ...]]:
    with gzip.open(FIX / name) as f:
        return {k: tuple(s) for k, s in json.load(f)["keys"]}


@pytest.fixture(scope="module")
def ovi_keys():
    return _keys("full_keys.json.gz")


@pytest.fixture(scope="module")
def wan_keys():
    return _keys("wan22_ti2v_5b_keys.json.gz")


def _meta_shapes(preset: str) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in HarmonyDiT(get_preset(preset), device="meta").state_dict().items()}


@pytest.fixture(scope="module")
def ovi_shapes():
    return _meta_shapes("ovi")


# --- key tables against the real key lists ----------------------------------------------------


def test_every_ovi_checkpoint_key_maps_onto_the_ovi_preset_with_its_shape(ovi_keys, ovi_shapes):
    assert len(ovi_keys) == 2073
    assert ovi_to_harmony_state(ovi_keys) == ovi_shapes


def test_the_only_ovi_rename_is_the_wrapped_block_modulation(ovi_keys):
    renamed = {k for k in ovi_keys if ovi_key_to_harmony(k) != k}
    assert len(renamed) == 2 * 30
    assert all(k.endswith(".modulation.modulation") and ".blocks." in k for k in renamed)
    assert ovi_key_to_harmony("video_model.head.modulation") == "video_model.head.modulation"


def test_converting_back_to_ovi_names_restores_the_checkpoint_exactly(ovi_keys, ovi_shapes):
    assert harmony_to_ovi_state(ovi_shapes) == ovi_keys
    assert all(harmony_key_to_ovi(ovi_key_to_harmony(k)) == k for k in ovi_keys)


def test_harmony_full_needs_the_ovi_keys_plus_only_its_own_modules(ovi_keys):
    full = _meta_shapes("harmony-full")
    converted = ovi_to_harmony_state(ovi_keys)
    assert all(full[k] == s for k, s in converted.items())
    extra = set(full) - set(converted)
    assert extra and all(is_harmony_only_key(k) for k in extra)
    assert {k.split(".")[3] for k in extra if ".blocks." in k} == {"a2v", "v2a", "style"}
    assert any(k.startswith("audio_model.speech_embedding.") for k in extra)
    with pytest.raises(ValueError, match="drop_extra"):
        harmony_to_ovi_state(full)
    assert harmony_to_ovi_state(full, drop_extra=True) == ovi_keys


def test_stock_wan22_ti2v_keys_are_the_ovi_video_tower_without_fusion(wan_keys, ovi_shapes):
    video = {k: s for k, s in ovi_shapes.items() if k.startswith("video_model.") and not is_fusion_key(k)}
    assert wan_to_harmony_state(wan_keys) == video
    fusion = [k for k in ovi_shapes if k.startswith("video_model.") and is_fusion_key(k)]
    assert len(fusion) == 30 * 7  # k/v_fusion weight+bias, pre-norm weight+bias, norm_k_fusion weight
    assert harmony_to_wan_state(video) == wan_keys
    with pytest.raises(ValueError, match="drop_extra"):
        harmony_to_wan_state(ovi_shapes)


# --- loading ----------------------------------------------------------------------------------


def small_ovi_config():
    """The tiny preset with Ovi's interaction (global fusion only, no transcript path)."""
    tiny = get_preset("tiny")
    inter = InteractionConfig(local=False, global_style=False, global_fusion=True)
    return dataclasses.replace(tiny, interaction=inter, speech_dim=0, name="tiny-ovi")


@pytest.fixture(scope="module")
def small():
    """A randomised tiny Ovi-shaped model and its state under Ovi's key names."""
    g = torch.Generator().manual_seed(7)
    model = HarmonyDiT(small_ovi_config(), generator=g)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval(), harmony_to_ovi_state(model.state_dict())


def _same_state(a, b) -> bool:
    ref = b.state_dict()
    return all(torch.equal(v, ref[k]) for k, v in a.state_dict().items())


def _forward(model, config):
    v, a = make_latents(config, frames=3)
    with torch.no_grad():
        return model(v, a, torch.tensor([0.5]), torch.tensor([0.5]), make_conditions(config))


def test_an_fp32_ovi_file_loads_bit_exactly_and_computes_the_same(small, tmp_path):
    model, state = small
    save_file(state, str(tmp_path / "m.safetensors"))
    loaded, report = load_ovi_checkpoint(tmp_path / "m.safetensors", preset=small_ovi_config())
    assert report.layout == "ovi" and report.loaded == len(state) and not report.initialised
    assert len(report.renamed) == 2 * 2 and not loaded.training
    got = loaded.state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(got[k], v), k
    # weights are bit-equal; tensors read from a file sit at unaligned addresses, where CPU kernels
    # may take a different SIMD path, hence the last-bit tolerance on the outputs
    for ours, ref in zip(_forward(loaded, model.config), _forward(model, model.config)):
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_files_load_into_the_requested_dtype(small, tmp_path, dtype):
    model, state = small
    save_file({k: v.to(dtype) for k, v in state.items()}, str(tmp_path / "h.safetensors"))
    loaded, _ = load_ovi_checkpoint(tmp_path / "h.safetensors", preset=small_ovi_config(), dtype=torch.float32)
    ref = model.state_dict()
    for k, v in loaded.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, ref[k].to(dtype).float()), k
    half, _ = load_ovi_checkpoint(tmp_path / "h.safetensors", preset=small_ovi_config(), dtype=dtype)
    assert {p.dtype for p in half.parameters()} == {dtype}
    v, a = _forward(half, model.config)
    assert v.isfinite().all() and a.isfinite().all()


def test_unscaled_fp8_weights_are_kept_bit_exact_as_fp8_or_upcast(small, tmp_path):
    _, state = small
    f8 = {k: (v.to(torch.float8_e4m3fn) if k.endswith(".weight") and v.dim() >= 2 else v) for k, v in state.items()}
    save_file(f8, str(tmp_path / "f8.safetensors"))
    kept, report = load_ovi_checkpoint(
        tmp_path / "f8.safetensors", preset=small_ovi_config(), dtype=torch.float8_e4m3fn
    )
    up, _ = load_ovi_checkpoint(tmp_path / "f8.safetensors", preset=small_ovi_config(), dtype=torch.bfloat16)
    assert not report.dequantised
    kept_sd, up_sd = kept.state_dict(), up.state_dict()
    for k, v in f8.items():
        name = ovi_key_to_harmony(k)
        p, q = kept_sd[name], up_sd[name]
        if v.dtype == torch.float8_e4m3fn:
            assert p.dtype == torch.float8_e4m3fn and torch.equal(p.view(torch.uint8), v.view(torch.uint8)), k
        else:
            assert p.dtype == torch.bfloat16, k  # biases, norms, AdaLN tables: compute dtype
        assert q.dtype == torch.bfloat16 and torch.equal(q, v.to(torch.bfloat16)), k


@pytest.mark.parametrize("style", ["comfy_scale_weight", "per_channel_weight_scale"])
def test_scaled_fp8_weights_are_dequantised_with_their_scales(small, tmp_path, style):
    model, state = small
    file, expect = {}, {}
    for k, v in state.items():
        if k.endswith(".weight") and v.dim() >= 2:
            if style == "comfy_scale_weight":  # ComfyUI legacy: per-tensor '.scale_weight' + 'scaled_fp8' marker
                s = v.abs().max().float() / 448.0
                q = (v / s).to(torch.float8_e4m3fn)
                file[k[: -len("weight")] + "scale_weight"] = s.reshape(1)
                expect[k] = q.float() * s
            else:  # '.weight_scale' per output channel
                s = v.flatten(1).abs().amax(1).float() / 448.0
                q = (v / s.view(-1, *([1] * (v.dim() - 1)))).to(torch.float8_e4m3fn)
                file[k[: -len("weight")] + "weight_scale"] = s
                expect[k] = q.float() * s.view(-1, *([1] * (v.dim() - 1)))
            file[k] = q
        else:
            file[k] = v
    if style == "comfy_scale_weight":
        file["scaled_fp8"] = torch.zeros(2, dtype=torch.float8_e4m3fn)
    save_file(file, str(tmp_path / "s.safetensors"))
    loaded, report = load_ovi_checkpoint(tmp_path / "s.safetensors", preset=small_ovi_config(), dtype=torch.float32)
    assert len(report.dequantised) == len(expect)
    assert len(report.ignored) == len(expect) + (style == "comfy_scale_weight")
    ref, got = model.state_dict(), loaded.state_dict()
    for k, w in expect.items():
        p = got[ovi_key_to_harmony(k)]
        torch.testing.assert_close(p, w, rtol=0, atol=0)
        # and the dequantised weight is the original up to fp8's 3 mantissa bits
        assert (p - ref[ovi_key_to_harmony(k)]).abs().max() <= ref[ovi_key_to_harmony(k)].abs().max() / 16
    f8, _ = load_ovi_checkpoint(tmp_path / "s.safetensors", preset=small_ovi_config(), dtype=torch.float8_e4m3fn)
    f8_sd = f8.state_dict()
    assert all(f8_sd[ovi_key_to_harmony(k)].dtype == torch.bfloat16 for k in expect)  # documented choice


def test_torch_files_load_with_weights_only_including_wrapped_state_dicts(small, tmp_path):
    model, state = small
    torch.save(state, tmp_path / "m.pt")
    torch.save({"module": state}, tmp_path / "wrapped.pth")
    for name in ("m.pt", "wrapped.pth"):
        loaded, report = load_ovi_checkpoint(tmp_path / name, preset=small_ovi_config())
        assert report.layout == "ovi"
        assert _same_state(loaded, model)


def test_a_comfyui_wrapper_prefix_is_stripped_and_reported(small, tmp_path):
    model, state = small
    save_file({"model.diffusion_model." + k: v for k, v in state.items()}, str(tmp_path / "p.safetensors"))
    loaded, report = load_ovi_checkpoint(tmp_path / "p.safetensors", preset=small_ovi_config())
    assert len(report.renamed) == len(state)
    assert _same_state(loaded, model)


def test_a_stock_wan_file_needs_consent_to_start_the_audio_tower_fresh(small, tmp_path):
    model, _ = small
    save_file(harmony_to_wan_state(model.state_dict(), drop_extra=True), str(tmp_path / "wan.safetensors"))
    with pytest.raises(ValueError, match="init_missing_audio=True"):
        load_ovi_checkpoint(tmp_path / "wan.safetensors", preset=small_ovi_config())
    loaded, report = load_ovi_checkpoint(
        tmp_path / "wan.safetensors", preset=small_ovi_config(), init_missing_audio=True
    )
    assert report.layout == "wan"
    fresh = set(report.initialised)
    assert all(k.startswith("audio_model.") or is_fusion_key(k) for k in fresh)
    assert any(k.startswith("video_model.") for k in fresh)  # the video tower's fusion layers
    ref = model.state_dict()
    for k, v in loaded.state_dict().items():
        assert not v.is_meta
        if k not in fresh:
            assert torch.equal(v, ref[k]), k
    kf = loaded.video_model.blocks[0].cross_attn.k_fusion.weight
    bound = (6 / (kf.shape[0] + kf.shape[1])) ** 0.5  # Xavier-uniform bound, then Ovi's / 10
    assert 0 < kf.abs().max() <= bound / 10
    assert not loaded.audio_model.head.head.weight.any()  # Wan's zero-init head


def test_a_split_ovi_checkpoint_loads_from_its_video_and_audio_files(small, tmp_path):
    """ComfyUI-WanVideoWrapper's split: video tower under Wan names (with fusion), audio under audio_model."""
    model, state = small
    video = {k[len("video_model.") :]: v for k, v in model.state_dict().items() if k.startswith("video_model.")}
    audio = {k: v for k, v in state.items() if k.startswith("audio_model.")}  # Ovi's wrapped AdaLN names
    save_file({**video, "scaled_fp8": torch.zeros(2)}, str(tmp_path / "video.safetensors"))
    save_file({**audio, "scaled_fp8": torch.zeros(2)}, str(tmp_path / "audio.safetensors"))
    with pytest.raises(ValueError, match="video half of a split Ovi checkpoint"):
        load_ovi_checkpoint(tmp_path / "video.safetensors", preset=small_ovi_config())
    files = [tmp_path / "video.safetensors", tmp_path / "audio.safetensors"]
    loaded, report = load_ovi_checkpoint(files, preset=small_ovi_config())
    assert report.layout == "ovi-split" and not report.initialised and _same_state(loaded, model)
    with pytest.raises(ValueError, match="is in both"):
        load_ovi_checkpoint([files[0], files[0]], preset=small_ovi_config())


def test_fresh_modules_depend_only_on_the_seed(small, tmp_path):
    _, state = small
    save_file(state, str(tmp_path / "m.safetensors"))
    cfg = dataclasses.replace(get_preset("tiny"), interaction=InteractionConfig(global_fusion=True))
    a, rep = load_ovi_checkpoint(tmp_path / "m.safetensors", preset=cfg, seed=1)
    b, _ = load_ovi_checkpoint(tmp_path / "m.safetensors", preset=cfg, seed=1)
    c, _ = load_ovi_checkpoint(tmp_path / "m.safetensors", preset=cfg, seed=2)
    key = "video_model.blocks.0.a2v.q.weight"
    assert key in rep.initialised and "audio_model.speech_embedding.0.weight" in rep.initialised
    assert torch.equal(a.state_dict()[key], b.state_dict()[key])
    assert not torch.equal(a.state_dict()[key], c.state_dict()[key])
    # fp8 storage: initialised in the compute dtype (bf16), then stored like loaded weights
    bf, _ = load_ovi_checkpoint(tmp_path / "m.safetensors", preset=cfg, seed=1, dtype=torch.bfloat16)
    f8, _ = load_ovi_checkpoint(tmp_path / "m.safetensors", preset=cfg, seed=1, dtype=torch.float8_e4m3fn)
    a2v = f8.video_model.blocks[0].a2v
    assert a2v.q.weight.dtype == torch.float8_e4m3fn and a2v.norm_x.weight.dtype == torch.bfloat16
    assert torch.equal(a2v.q.weight.float(), bf.state_dict()[key].to(torch.float8_e4m3fn).float())
    assert not a2v.o.weight.float().any()


def test_bad_files_fail_with_every_problem_listed(small, tmp_path):
    _, state = small
    bad = dict(state)
    bad.pop("audio_model.blocks.1.cross_attn.k_fusion.weight")
    bad["video_model.blocks.0.extra.weight"] = torch.zeros(3)
    bad["video_model.head.head.weight"] = torch.zeros(7, 48)
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError) as e:
        load_ovi_checkpoint(tmp_path / "bad.safetensors", preset=small_ovi_config())
    msg = str(e.value)
    for part in ("missing", "k_fusion", "unexpected", "extra.weight", "mis-shaped", "head.head.weight"):
        assert part in msg
    save_file(state, str(tmp_path / "ok.safetensors"))
    with pytest.raises(ValueError, match="mis-shaped"):
        load_ovi_checkpoint(tmp_path / "ok.safetensors", preset="ovi", dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="dtype"):
        load_ovi_checkpoint(tmp_path / "ok.safetensors", preset=small_ovi_config(), dtype=torch.int8)
    save_file({"encoder.conv.weight": torch.zeros(2, 2)}, str(tmp_path / "vae.safetensors"))
    with pytest.raises(ValueError, match="unrecognised"):
        load_ovi_checkpoint(tmp_path / "vae.safetensors")
    with pytest.raises(FileNotFoundError):
        load_ovi_checkpoint(tmp_path / "nope.safetensors")


def test_auto_preset_rebuilds_a_harmony_file_from_its_shapes(tmp_path):
    g = torch.Generator().manual_seed(3)
    model = HarmonyDiT(get_preset("tiny"), generator=g)
    save_file(model.state_dict(), str(tmp_path / "t.safetensors"))
    loaded, report = load_ovi_checkpoint(tmp_path / "t.safetensors", preset="auto")
    assert report.layout == "harmony" and loaded.config == get_preset("tiny")
    assert _same_state(loaded, model)
