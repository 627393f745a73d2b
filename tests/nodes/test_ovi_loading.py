"""Harmony Model Loader on full-size formats, on small files written by the tests: Ovi's fused and
split layouts and a Harmony DiT, through ``harmony_core.io.convert`` into the native MODEL.

The small Ovi model has the real channel counts (48 video / 20 audio latent channels) and Wan's
head width (128, so the head count is read from the width as for the real file), two blocks per
tower. Its Ovi-layout file is the Harmony model's own state dict under Ovi's names, so loading it
must give back exactly the model that wrote it (the conversion is a rename).
"""

from __future__ import annotations

import dataclasses
import importlib
import re

import pytest
import torch
from safetensors.torch import save_file

from harmony_core.config import get_preset
from harmony_core.io.checkpoints import save_dit
from harmony_core.io.convert import harmony_to_ovi_state, harmony_to_wan_state
from harmony_core.model.conditions import HarmonyConditions
from tests._helpers import make_latents, make_tiny_model

NODE = "Harmony Model Loader"


def _free(n):
    """A stand-in for ``comfy.model_management.get_free_memory`` reporting ``n`` free bytes."""
    return lambda dev=None, torch_free_too=False: (int(n), int(n)) if torch_free_too else int(n)


def _small_ovi_config():
    base = get_preset("ovi")
    kw = dict(dim=128, ffn_dim=256, num_heads=1, num_layers=2, text_dim=32)
    return dataclasses.replace(base, video=dataclasses.replace(base.video, **kw),
                               audio=dataclasses.replace(base.audio, **kw), name="small-ovi")


@pytest.fixture(scope="module")
def original():
    """The model the Ovi-layout files are written from (fp32, every output path perturbed)."""
    return make_tiny_model(_small_ovi_config(), seed=3)


@pytest.fixture(scope="module")
def ovi_files(original, model_dir):
    """``{name: file}`` in the test model folder: fused fp32 / bf16, unscaled fp8, scaled fp8,
    the two halves of a split checkpoint, and a save_dit Harmony file of the harmony-full kind."""
    sd = {k: v.detach().contiguous() for k, v in harmony_to_ovi_state(original.state_dict()).items()}
    names = {}

    def write(name, tensors, metadata=None):
        save_file(tensors, str(model_dir / name), metadata=metadata)
        names[name] = model_dir / name

    write("ovi-small-fp32.safetensors", sd)
    write("ovi-small-bf16.safetensors", {k: v.to(torch.bfloat16) for k, v in sd.items()})
    fp8 = {k: v.to(torch.float8_e4m3fn) if k.endswith(".weight") and v.dim() >= 2 else v for k, v in sd.items()}
    write("ovi-small-fp8.safetensors", fp8)
    scaled = {}
    for k, v in sd.items():
        if k.endswith(".weight") and v.dim() >= 2:
            scale = v.abs().max() / 448.0
            scaled[k] = (v / scale).to(torch.float8_e4m3fn)
            scaled[k[: -len(".weight")] + ".scale_weight"] = scale.reshape(1)
        else:
            scaled[k] = v
    write("ovi-small-fp8-scaled.safetensors", scaled)
    # ComfyUI-WanVideoWrapper's split form: the video tower under Wan's names (fusion layers included),
    # the audio tower under Ovi's
    own = original.state_dict()
    write("ovi-split-video.safetensors", {k[len("video_model."):]: v.detach().contiguous() for k, v in own.items()
                                          if k.startswith("video_model.")})
    write("ovi-split-audio.safetensors", {k: v for k, v in sd.items() if k.startswith("audio_model.")})
    write("wan-video-only.safetensors", harmony_to_wan_state(original.state_dict(), drop_extra=True))
    return names


def _load(nodes, name, weight_dtype="fp32", **kw):
    with torch.inference_mode():  # ComfyUI runs nodes in inference mode
        out = nodes.HarmonyModelLoader.execute(name, weight_dtype, **kw)
    return out.args[0], out.ui["text"][0]


def _velocities(dit_forward, config, seed=5):
    """Both streams' velocities of a forward at mixed noise levels (per-stream sigmas)."""
    v_x, a_x = make_latents(config, frames=3, size=4, seed=seed)
    g = torch.Generator().manual_seed(seed)
    cond = HarmonyConditions(v_context=torch.randn(1, 6, config.video.text_dim, generator=g),
                             a_context=torch.randn(1, 5, config.audio.text_dim, generator=g))
    with torch.no_grad():
        return dit_forward(v_x, a_x, torch.tensor([0.7]), torch.tensor([0.4]), cond)


def _node_forward(patcher):
    dm = patcher.model.diffusion_model
    return lambda v, a, vt, at, cond: dm([v, a], (vt, at), harmony_text=cond)


def test_an_ovi_file_loads_as_a_native_model_that_computes_what_wrote_it(nodes, original, ovi_files):
    model, report = _load(nodes, "ovi-small-fp32.safetensors")
    assert type(model.model).__name__ == "HarmonyAVModel"
    dit = model.model.diffusion_model.dit
    cfg = dit.config
    assert (cfg.video.in_channels, cfg.audio.in_channels, cfg.video.num_layers, cfg.video.dim) == (48, 20, 2, 128)
    assert cfg.interaction.global_fusion and not cfg.interaction.local and cfg.speech_dim == 0
    assert not any(p.is_meta for p in model.model.parameters())
    got = _velocities(_node_forward(model), cfg)
    want = _velocities(original, original.config)
    for g, w in zip(got, want):
        assert g.shape == w.shape and torch.allclose(g.float(), w, rtol=1e-4, atol=1e-5)
    assert float(want[0].abs().mean()) > 1e-3  # a real output, not zeros
    assert "ovi layout (architecture read from its keys)" in report and "runs exactly as Ovi" in report


def test_harmony_architecture_adds_zero_initialised_modules_that_change_nothing_and_says_so(nodes, ovi_files):
    plain, _ = _load(nodes, "ovi-small-fp32.safetensors")
    model, report = _load(nodes, "ovi-small-fp32.safetensors", architecture="harmony")
    cfg = model.model.diffusion_model.dit.config
    assert cfg.interaction.local and cfg.interaction.global_style and cfg.interaction.global_fusion
    names = {n for n, _ in model.model.diffusion_model.dit.named_parameters()}
    assert any(".a2v." in n for n in names) and any(".v2a." in n for n in names)
    for blk in model.model.diffusion_model.dit.video_model.blocks:  # the paper's zero-initialised outputs
        assert not blk.a2v.o.weight.any()
    got = _velocities(_node_forward(model), cfg)
    want = _velocities(_node_forward(plain), plain.model.diffusion_model.dit.config)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, rtol=1e-5, atol=1e-6)
    m = re.search(r"Harmony-only modules: (\d+) tensors \(([^)]*)\)", report)
    assert m and int(m.group(1)) > 0 and "a2v" in m.group(2) and "v2a" in m.group(2)


@pytest.mark.parametrize("weight_dtype, stored", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_float_weight_dtypes_store_every_tensor_in_that_dtype(nodes, original, ovi_files, weight_dtype, stored):
    model, report = _load(nodes, "ovi-small-bf16.safetensors", weight_dtype)
    dit = model.model.diffusion_model.dit
    assert {p.dtype for p in dit.parameters()} == {stored}
    assert dit.compute_dtype == torch.float32  # a CPU computes narrow weights in float32
    q = dit.video_model.blocks[1].self_attn.q.weight
    ref = original.video_model.blocks[1].self_attn.q.weight.detach()
    assert torch.equal(q.float(), ref.to(torch.bfloat16).to(stored).float())  # the file's bf16 values
    assert f"stored as {weight_dtype}, computed in fp32" in report


def test_fp8_keeps_unscaled_matrices_bit_exact_and_the_rest_in_bf16(nodes, original, ovi_files):
    model, report = _load(nodes, "ovi-small-fp8.safetensors", "fp8_e4m3fn")
    dit = model.model.diffusion_model.dit
    q = dit.audio_model.blocks[0].cross_attn.k_fusion.weight
    ref = original.audio_model.blocks[0].cross_attn.k_fusion.weight.detach()
    assert q.dtype == torch.float8_e4m3fn and torch.equal(q.view(torch.uint8), ref.to(torch.float8_e4m3fn).view(
        torch.uint8))
    assert dit.video_model.blocks[0].norm3.weight.dtype == torch.bfloat16
    assert dit.video_model.blocks[0].modulation.dtype == torch.bfloat16  # a raw AdaLN table, not a matrix
    assert "bf16 + float8_e4m3fn" in report
    got = _velocities(_node_forward(model), dit.config)
    want = _velocities(original, original.config)
    corr = torch.corrcoef(torch.stack([got[0].flatten().float(), want[0].flatten()]))[0, 1]
    assert corr > 0.9  # the same model with 3-bit-mantissa weights


def test_scaled_fp8_weights_are_dequantised_with_their_scales(nodes, original, ovi_files):
    model, report = _load(nodes, "ovi-small-fp8-scaled.safetensors", "fp8_e4m3fn")
    dit = model.model.diffusion_model.dit
    w = dit.video_model.blocks[1].ffn[0].weight.detach()
    ref = original.video_model.blocks[1].ffn[0].weight.detach()
    scale = ref.abs().max() / 448.0
    expected = ((ref / scale).to(torch.float8_e4m3fn).float() * scale).to(torch.bfloat16)
    assert w.dtype == torch.bfloat16 and torch.equal(w, expected)
    assert re.search(r"[1-9]\d* scaled fp8 weights dequantised", report)
    assert float((w.float() - ref).abs().max()) < 0.07 * float(ref.abs().max())  # fp8's 3-bit mantissa


def test_a_split_ovi_checkpoint_loads_from_its_two_files_like_the_fused_one(nodes, ovi_files):
    fused, _ = _load(nodes, "ovi-small-fp32.safetensors")
    split, report = _load(nodes, "ovi-split-video.safetensors", extra_file="ovi-split-audio.safetensors")
    a, b = fused.model.diffusion_model.dit.state_dict(), split.model.diffusion_model.dit.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "ovi-split layout" in report and "ovi-split-video.safetensors + ovi-split-audio.safetensors" in report


def test_each_half_of_a_split_checkpoint_alone_says_which_file_to_add(nodes, ovi_files):
    with pytest.raises(ValueError, match=rf"^{NODE}: 'ovi-split-video.safetensors' is the video half of a split "
                                         r"Ovi checkpoint.*extra_file"):
        _load(nodes, "ovi-split-video.safetensors")
    with pytest.raises(ValueError, match=rf"^{NODE}: 'ovi-split-audio.safetensors' holds only an audio tower.*"
                                         "Select the video file as model_name and this one as extra_file"):
        _load(nodes, "ovi-split-audio.safetensors")
    with pytest.raises(ValueError, match=rf"^{NODE}: extra_file='ovi-small-fp32.safetensors' is the model file"):
        _load(nodes, "ovi-small-fp32.safetensors", extra_file="ovi-small-fp32.safetensors")


def test_a_stock_wan_video_dit_is_refused_because_it_cannot_make_sound(nodes, ovi_files):
    with pytest.raises(ValueError, match=rf"^{NODE}: 'wan-video-only.safetensors' is a stock Wan2.2 video DiT.*"
                                         "no audio tower"):
        _load(nodes, "wan-video-only.safetensors")


def test_a_damaged_file_lists_every_bad_key_and_names_the_fix(nodes, ovi_files, model_dir):
    from safetensors.torch import load_file

    sd = load_file(str(ovi_files["ovi-small-fp32.safetensors"]))
    sd["video_model.blocks.1.ffn.0.weight"] = torch.zeros(300, 128)  # wrong width in the second block
    del sd["audio_model.blocks.1.norm3.bias"]
    sd["video_model.blocks.1.extra.weight"] = torch.zeros(2)
    save_file(sd, str(model_dir / "ovi-damaged.safetensors"))
    with pytest.raises(ValueError) as e:
        _load(nodes, "ovi-damaged.safetensors")
    msg = str(e.value)
    assert msg.startswith(f"{NODE}: 'ovi-damaged.safetensors' (ovi layout) does not fit the architecture read "
                          "from its keys")
    assert "audio_model.blocks.1.norm3.bias" in msg and "video_model.blocks.1.extra.weight" in msg
    assert "video_model.blocks.1.ffn.0.weight: model (256, 128) vs file (300, 128)" in msg
    assert "download it again" in msg


def test_a_harmony_dit_file_loads_strictly_through_the_same_path(nodes, model_dir):
    cfg = dataclasses.replace(_small_ovi_config(), interaction=get_preset("harmony-full").interaction, speech_dim=16,
                              name="small-harmony")
    model = make_tiny_model(cfg, seed=4)
    save_dit(model_dir / "harmony-dit-small.safetensors", model)
    loaded, report = _load(nodes, "harmony-dit-small.safetensors")
    assert loaded.model.diffusion_model.dit.config.to_dict() == cfg.to_dict()  # (the pack imports its own copy)
    assert "harmony layout (architecture read from its metadata) -> small-harmony" in report
    got = _velocities(_node_forward(loaded), cfg)
    want = _velocities(model, cfg)
    assert all(torch.allclose(g, w, rtol=1e-4, atol=1e-5) for g, w in zip(got, want))


def test_weights_that_cannot_fit_the_free_memory_are_refused_before_reading(nodes, original, ovi_files,
                                                                           monkeypatch):
    import comfy.model_management as mm

    monkeypatch.setattr(mm, "get_free_memory", _free(3_100_000), raising=False)
    need = sum(p.numel() for p in original.parameters()) * 4  # every tensor in float32
    with pytest.raises(MemoryError, match=rf"^{NODE}: the weights need {need / 1e6:.1f} MB at weight_dtype='fp32' "
                                          r"\(fp32\) but only 3\.1 MB is free .* Choose weight_dtype='fp8_e4m3fn'"):
        _load(nodes, "ovi-small-fp32.safetensors")


def test_the_model_folders_are_both_listed_and_the_rebuild_hook_reloads_the_same_file(nodes, ovi_files, tmp_path):
    import folder_paths

    loader = importlib.import_module(nodes.__name__ + "._comfy.loader")
    (tmp_path / "ovi-in-diffusion-models.safetensors").write_bytes(ovi_files["ovi-small-bf16.safetensors"]
                                                                  .read_bytes())
    paths, exts = folder_paths.folder_names_and_paths["diffusion_models"]
    folder_paths.folder_names_and_paths["diffusion_models"] = ([*paths, str(tmp_path)], exts)
    try:
        names = loader.list_models()
        assert "ovi-small-bf16.safetensors" in names and "ovi-in-diffusion-models.safetensors" in names
        model, _ = _load(nodes, "ovi-in-diffusion-models.safetensors", "bf16")
    finally:
        folder_paths.folder_names_and_paths["diffusion_models"] = (paths, exts)
    fn, args = model.cached_patcher_init
    again = fn(*args, disable_dynamic=True)
    a, b = model.model.diffusion_model.state_dict(), again.model.diffusion_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_attention_override_in_transformer_options_reaches_every_attention_call(nodes, loaded):
    """Attention-patch nodes (e.g. a SageAttention switch) install ``optimized_attention_override``;
    ComfyUI hands it to the model in ``transformer_options``."""
    dm = loaded[0].model.diffusion_model
    cfg = dm.dit.config
    v_x, a_x = make_latents(cfg, frames=3, size=4, seed=2)
    cond = HarmonyConditions(v_context=torch.randn(1, 6, cfg.video.text_dim),
                             a_context=torch.randn(1, 5, cfg.audio.text_dim))
    calls = []

    def override(func, *args, **kwargs):
        calls.append(args[0].shape)
        return func(*args, **kwargs)

    t = (torch.tensor([0.7]), torch.tensor([0.4]))
    with torch.no_grad():
        plain = dm([v_x, a_x], t, harmony_text=cond)
        patched = dm([v_x, a_x], t, harmony_text=cond, transformer_options={"optimized_attention_override": override})
        again = dm([v_x, a_x], t, harmony_text=cond, transformer_options={})
    assert len(calls) >= 4 * cfg.video.num_layers  # self + text attention in both towers, GLDI too
    n = len(calls)
    with torch.no_grad():
        dm([v_x, a_x], t, harmony_text=cond)  # the override was for that run only
    assert len(calls) == n and dm.dit.attention.__name__ == "_comfy_attention"
    for other in (patched, again):  # same numbers with and without the pass-through override
        assert all(torch.equal(p, q) for p, q in zip(plain, other))
