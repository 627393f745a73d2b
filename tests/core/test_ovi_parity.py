"""Reference parity: HarmonyDiT loaded from an Ovi checkpoint reproduces Ovi's own forward pass.

``tests/fixtures/ovi/small_fusion.safetensors`` was produced by running character-ai/Ovi's
``FusionModel`` (patched only to run in float32 on CPU: bf16 casts -> float, flash-attention ->
SDPA with the same key-length masking) at a reduced size with every parameter randomised (the
zero-initialised heads too, so every path matters), on fixed inputs. It holds the Ovi state dict
(``ovi.*``), the inputs (``in.*``, Ovi layouts) and the outputs (``out.<case>.*``); the metadata
holds Ovi's reduced configs and the cases (timestep, first_frame_is_clean, slg_layer).

The timesteps are dyadic (750, 437.5) so that our sigma = t / 1000 and the model's sigma * 1000
reproduce Ovi's t exactly in float32.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from harmony_core.config import HarmonyConfig, InteractionConfig, TowerConfig
from harmony_core.io.convert import load_ovi_checkpoint
from harmony_core.model.conditions import ForwardOptions, HarmonyConditions

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ovi" / "small_fusion.safetensors"
TOL = 1e-5  # max |ours - ovi| / max |ovi|


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    with safe_open(str(FIXTURE), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    ckpt = tmp_path_factory.mktemp("ovi") / "ovi_small.safetensors"
    save_file({k[len("ovi.") :]: v for k, v in tensors.items() if k.startswith("ovi.")}, str(ckpt))
    return {"t": tensors, "meta": meta, "ckpt": ckpt}


def ovi_config(meta: dict[str, str]) -> HarmonyConfig:
    """Our config equal to the fixture's reduced Ovi configs (global fusion only, as Ovi)."""
    vc, ac = json.loads(meta["video_config"]), json.loads(meta["audio_config"])
    common = {
        k: vc[k] for k in ("dim", "ffn_dim", "num_heads", "num_layers", "text_dim", "text_len", "freq_dim", "eps")
    }
    assert all(ac[k] == v for k, v in common.items())
    video = TowerConfig(in_channels=vc["in_dim"], patch_size=tuple(vc["patch_size"]), **common)
    audio = TowerConfig(
        in_channels=ac["in_dim"],
        patch_size=tuple(ac["patch_size"]),
        rope_time_scale=ac["temporal_rope_scaling_factor"],
        **common,
    )
    inter = InteractionConfig(local=False, global_style=False, global_fusion=True)
    return HarmonyConfig(video=video, audio=audio, interaction=inter, speech_dim=0, name="ovi-small")


def run_case(model, t: dict[str, torch.Tensor], case: dict, *, clean_first_frame: bool | None = None):
    """Our forward on the fixture inputs, converted from Ovi's layouts; returns Ovi-layout outputs."""
    vid = t["in.vid"][None]  # Ovi [C, F, H, W] -> ours [B, C, T_v, H, W]
    aud = t["in.audio"].T[None]  # Ovi [L, C] -> ours [B, C, T_a]
    cond = HarmonyConditions(v_context=t["in.vid_context"][None], a_context=t["in.audio_context"][None])
    sigma = case["t"] / 1000.0  # Ovi feeds t in [0, 1000]; ours takes sigma and multiplies by 1000
    clean = case["first_frame_is_clean"] if clean_first_frame is None else clean_first_frame
    v_t = torch.full((1, vid.shape[2]), sigma)
    if clean:
        v_t[:, 0] = 0.0  # Ovi's first_frame_is_clean: the first latent frame's tokens at t = 0
    opts = ForwardOptions(skip_blocks=(case["slg_layer"],) if case["slg_layer"] else ())
    with torch.no_grad():
        v, a = model(vid, aud, v_t, torch.tensor([sigma]), cond, options=opts)
    return v[0], a[0].T


def rel_err(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours.double() - theirs.double()).abs().max() / theirs.double().abs().max())


CASES = ["t750", "t437_5_clean", "t750_slg1"]


@pytest.mark.parametrize("name", CASES)
def test_harmony_loaded_from_ovi_reproduces_ovis_fusion_outputs(ref, name):
    model, report = load_ovi_checkpoint(ref["ckpt"], preset=ovi_config(ref["meta"]), dtype=torch.float32)
    assert report.layout == "ovi" and not report.initialised
    case = json.loads(ref["meta"]["cases"])[name]
    v, a = run_case(model, ref["t"], case)
    assert rel_err(v, ref["t"][f"out.{name}.vid"]) <= TOL
    assert rel_err(a, ref["t"][f"out.{name}.audio"]) <= TOL


def test_loading_ovi_into_a_gldi_model_leaves_every_output_unchanged(ref):
    """Harmony-only modules start at Harmony's initialisation; their zero output projections make
    the model compute exactly what Ovi computes (the local windows do run)."""
    base = ovi_config(ref["meta"])
    cfg = dataclasses.replace(
        base, interaction=InteractionConfig(local=True, global_style=True, global_fusion=True), speech_dim=8
    )
    ovi_model, _ = load_ovi_checkpoint(ref["ckpt"], preset=base, dtype=torch.float32)
    model, report = load_ovi_checkpoint(ref["ckpt"], preset=cfg, dtype=torch.float32, seed=3)
    fresh = set(report.initialised)
    assert fresh and all(any(m in k for m in (".a2v.", ".v2a.", ".style.", "speech_embedding.")) for k in fresh)
    blk_v, blk_a = model.video_model.blocks[1], model.audio_model.blocks[1]
    for m in (blk_v.a2v, blk_a.v2a, blk_a.style):
        assert not m.o.weight.any() and not m.o.bias.any()  # zero-init output projection
        assert m.q.weight.abs().max() > 0  # the rest is initialised, not zero and not meta
        assert torch.equal(m.norm_x.weight, torch.ones_like(m.norm_x.weight))
    for name, case in json.loads(ref["meta"]["cases"]).items():
        v, a = run_case(model, ref["t"], case)
        v0, a0 = run_case(ovi_model, ref["t"], case)
        torch.testing.assert_close(v, v0, rtol=0, atol=0)
        torch.testing.assert_close(a, a0, rtol=0, atol=0)
        assert rel_err(v, ref["t"][f"out.{name}.vid"]) <= TOL


def test_the_reference_detects_a_wrong_audio_rope_scale(ref):
    """Negative control: the fixture is sensitive to Ovi's 0.19676 audio RoPE scale."""
    base = ovi_config(ref["meta"])
    wrong = dataclasses.replace(base, audio=dataclasses.replace(base.audio, rope_time_scale=1.0))
    model, _ = load_ovi_checkpoint(ref["ckpt"], preset=wrong, dtype=torch.float32)
    case = json.loads(ref["meta"]["cases"])["t750"]
    v, a = run_case(model, ref["t"], case)
    assert rel_err(a, ref["t"]["out.t750.audio"]) > 100 * TOL
    assert rel_err(v, ref["t"]["out.t750.vid"]) > 100 * TOL  # video reads audio through the fusion


def test_the_reference_detects_a_noisy_first_frame_in_the_image_to_video_case(ref):
    model, _ = load_ovi_checkpoint(ref["ckpt"], preset=ovi_config(ref["meta"]), dtype=torch.float32)
    case = json.loads(ref["meta"]["cases"])["t437_5_clean"]
    v, _ = run_case(model, ref["t"], case, clean_first_frame=False)
    assert rel_err(v, ref["t"]["out.t437_5_clean.vid"]) > 100 * TOL
