"""harmony_core.memory: weights by dtype, activations checked against a live-tensor measurement,
batching decisions and the out-of-memory message."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from harmony_core.config import InteractionConfig, get_preset
from harmony_core.memory import (
    InsufficientMemoryError,
    LivePeak,
    activation_bytes,
    check_fits,
    choose_batching,
    estimate_memory,
    forward_memory_fn,
    weight_bytes,
)
from harmony_core.memory.cli import main as cli_main
from harmony_core.memory.components import MMAUDIO_16K_SPEC, UMT5_XXL, WAN22_VAE_SPEC
from harmony_core.model.conditions import HarmonyConditions
from harmony_core.model.dit import HarmonyDiT

GIB = 1024**3
OVI_704 = dict(width=704, height=704, seconds=5.0)  # what Ovi runs for its 720x720 setting


def _small(preset: str, **interaction) -> object:
    """A preset's architecture at CPU size (same interaction modules, narrow and shallow)."""
    cfg = get_preset(preset)
    kw = dict(num_layers=2, dim=192, ffn_dim=896, num_heads=3, text_dim=32, text_len=0)
    cfg = dataclasses.replace(
        cfg,
        video=dataclasses.replace(cfg.video, **kw),
        audio=dataclasses.replace(cfg.audio, **kw, patch_hidden=128),
        speech_dim=min(cfg.speech_dim, 16),
    )
    if interaction:
        cfg = dataclasses.replace(cfg, interaction=dataclasses.replace(cfg.interaction, **interaction))
    return cfg


def _two_layers(preset: str) -> object:
    cfg = get_preset(preset)
    return dataclasses.replace(
        cfg, video=dataclasses.replace(cfg.video, num_layers=2), audio=dataclasses.replace(cfg.audio, num_layers=2)
    )


def _math_attention(q, k, v, heads, mask=None):
    """Unfused attention: materialises the [B, N, L_q, L_k] scores and their softmax."""
    b, lq, d = q.shape
    q, k, v = (t.view(b, -1, heads, d // heads).transpose(1, 2) for t in (q, k, v))
    s = q @ k.transpose(-1, -2) * (d // heads) ** -0.5
    if mask is not None:
        s = s + (mask[:, None] if mask.dim() == 3 else mask)
    return (s.softmax(-1) @ v).transpose(1, 2).reshape(b, lq, d)


def _measure(cfg, frames: int, size: int, *, dtype, batch: int, n_ref: int = 0, attention: str = "flash") -> int:
    """Live-tensor peak of one forward, as the sampler calls it (per-frame sigmas)."""
    g = torch.Generator().manual_seed(0)
    model = HarmonyDiT(cfg, init_weights=False, dtype=dtype, attention=_math_attention if attention == "math" else None)
    t_a = cfg.timeline.audio_latents_for_video(frames)

    def rnd(*shape):
        return torch.randn(*shape, generator=g).to(dtype)

    cond = HarmonyConditions(
        v_context=rnd(batch, 16, cfg.video.text_dim),
        a_context=rnd(batch, 16, cfg.audio.text_dim),
        speech=rnd(batch, 16, cfg.speech_dim) if cfg.speech_dim else None,
        a_ref=rnd(batch, cfg.audio.in_channels, n_ref) if n_ref else None,
    )
    v_x, a_x = rnd(batch, cfg.video.in_channels, frames, size, size), rnd(batch, cfg.audio.in_channels, t_a)
    with torch.no_grad(), LivePeak() as meter:
        model(v_x, a_x, torch.full((batch, frames), 0.5), torch.full((batch, t_a), 0.5), cond)
    return meter.peak


# --- weights ------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["synthetic", "ovi", "harmony-full"])
def test_weight_estimate_equals_the_bytes_of_the_built_parameters(preset):
    cfg = get_preset(preset)
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        model = HarmonyDiT(cfg, device="meta", dtype=dtype, init_weights=False)
        exact = sum(p.numel() * p.element_size() for p in model.parameters())
        assert weight_bytes(cfg, name, name) == exact
    # fp8: every Linear weight stored as float8_e4m3fn with one float32 scale; the rest in bf16
    model = HarmonyDiT(cfg, device="meta", dtype=torch.bfloat16, init_weights=False)
    scales = 0
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.weight = nn.Parameter(m.weight.to(torch.float8_e4m3fn), requires_grad=False)
            scales += 4
    exact = sum(p.numel() * p.element_size() for p in model.parameters()) + scales
    assert weight_bytes(cfg, "fp8", "bf16") == exact


def test_ovi_preset_has_the_parameter_count_of_ovis_fusion_model():
    # Ovi's reference FusionModel (video.json + audio.json) built on the meta device has
    # 11,660,753,108 parameters; 2 bytes each in bf16.
    assert weight_bytes(get_preset("ovi"), "bf16", "bf16") == 2 * 11_660_753_108


def test_fp8_weights_are_smaller_than_bf16_which_are_half_of_fp32():
    cfg = get_preset("ovi")
    fp32, bf16, fp8 = (weight_bytes(cfg, d, "bf16") for d in ("fp32", "bf16", "fp8"))
    assert bf16 * 2 == fp32
    # Linear weights are 95% of Ovi's parameters; the audio patch-embedding convs stay in bf16
    assert 0.5 * bf16 < fp8 < 0.55 * bf16


def test_block_streaming_keeps_only_the_weights_outside_the_blocks_and_two_blocks():
    cfg = get_preset("ovi")
    full, streamed = weight_bytes(cfg, "bf16", "bf16"), weight_bytes(cfg, "bf16", "bf16", blocks_resident=2)
    model = HarmonyDiT(cfg, device="meta", init_weights=False)
    block = sum(
        p.numel() for p in [*model.video_model.blocks[0].parameters(), *model.audio_model.blocks[0].parameters()]
    )
    assert full - streamed == 2 * block * (cfg.video.num_layers - 2)


def test_component_sizes_match_the_published_checkpoint_files():
    # models_t5_umt5-xxl-enc-bf16.pth is 11.36 GB; Wan2.2_VAE.pth (float32) is 2.82 GB
    assert 11.3e9 < UMT5_XXL.params * 2 < 11.4e9
    assert 2.80e9 < WAN22_VAE_SPEC.params * 4 < 2.83e9
    # MMAudio v1-16.pth + best_netG.pt: 0.17 B + 0.11 B float32 parameters
    assert 1.1e9 < MMAUDIO_16K_SPEC.params * 4 < 1.2e9


# --- activations against measurement --------------------------------------------------------------

CASES = [
    ("synthetic", None, 9, 16, torch.float32, 1, 0, "flash"),
    ("synthetic", None, 9, 16, torch.bfloat16, 2, 0, "flash"),
    ("ovi", "small", 7, 16, torch.bfloat16, 3, 0, "flash"),
    ("harmony-full", "small", 7, 16, torch.bfloat16, 1, 12, "flash"),
    ("synthetic", None, 7, 16, torch.float32, 1, 0, "math"),
]


@pytest.mark.parametrize("preset,shape,frames,size,dtype,batch,n_ref,attention", CASES)
def test_activation_estimate_is_within_15_percent_of_the_measured_peak(
    preset, shape, frames, size, dtype, batch, n_ref, attention
):
    cfg = _small(preset) if shape == "small" else _two_layers(preset)
    measured = _measure(cfg, frames, size, dtype=dtype, batch=batch, n_ref=n_ref, attention=attention)
    est = activation_bytes(
        cfg,
        latent_frames=frames,
        latent_h=size,
        latent_w=size,
        audio_latents=cfg.timeline.audio_latents_for_video(frames),
        batch=batch,
        compute_dtype="fp32" if dtype == torch.float32 else "bf16",
        attention=attention,
        ref_latents=n_ref,
        text_tokens=16,
        speech_tokens=16 if cfg.speech_dim else 0,
    )
    assert 0.85 * measured <= est <= 1.15 * measured, (est, measured)


def test_unfused_attention_costs_the_quadratic_score_matrix():
    cfg = dataclasses.replace(get_preset("synthetic"), interaction=InteractionConfig(local=False, global_style=False))
    kw = dict(
        latent_frames=13, latent_h=32, latent_w=32, audio_latents=63, batch=1, compute_dtype="fp32", text_tokens=16
    )
    flash, math_ = activation_bytes(cfg, attention="flash", **kw), activation_bytes(cfg, attention="math", **kw)
    l_v = 13 * 16 * 16
    assert math_ - flash >= 2 * cfg.video.num_heads * l_v * l_v * 4 * 0.9  # two [N, L, L] float32 copies


def test_batched_passes_need_about_passes_times_one_pass():
    cfg = get_preset("harmony-full")
    kw = dict(latent_frames=31, latent_h=44, latent_w=44, audio_latents=157, speech_tokens=512)
    one, three = activation_bytes(cfg, batch=1, **kw), activation_bytes(cfg, batch=3, **kw)
    assert 2.8 * one < three <= 3 * one  # RoPE tables are shared by the batch
    b, s = (estimate_memory(cfg, **OVI_704, batched=x, offload="model") for x in (True, False))
    assert b.activations == three and s.activations == one
    assert forward_memory_fn(cfg, v_shape=(1, 48, 31, 44, 44), a_shape=(1, 20, 157))(3) == three


# --- estimates of whole runs ------------------------------------------------------------------------


def test_offloading_and_fp8_lower_the_peak_in_that_order():
    cfg = get_preset("ovi")
    peaks = {
        (d, o): estimate_memory(cfg, **OVI_704, weight_dtype=d, offload=o).peak
        for d in ("bf16", "fp8")
        for o in ("none", "model", "blocks")
    }
    for d in ("bf16", "fp8"):
        assert peaks[d, "none"] > peaks[d, "model"] > peaks[d, "blocks"]
    for o in ("none", "model", "blocks"):
        assert peaks["fp8", o] < peaks["bf16", o]


def test_at_ovis_own_settings_we_need_less_than_ovis_published_figures():
    # Ovi README (720x720, 5 s, text CFG: 2 sequential passes): ~80 GB, ~32 GB with CPU offload,
    # ~24 GB with fp8 + offload. Ovi runs 720x720 as 704x704.
    cfg = get_preset("ovi")

    def peak(**kw):
        return estimate_memory(cfg, **OVI_704, passes=2, batched=False, **kw).peak

    assert peak(offload="none") < 80e9
    assert peak(offload="model") < 32e9
    assert peak(offload="model", weight_dtype="fp8") < 24e9


def test_the_text_encoder_dominates_when_the_dit_is_streamed():
    est = estimate_memory(get_preset("ovi"), **OVI_704, offload="blocks")
    phases = dict(est.phases)
    assert phases["text encoding"] == est.peak > phases["sampling"]


def test_720_pixels_are_rounded_up_to_whole_patches_and_noted():
    est = estimate_memory(get_preset("ovi"), width=720, height=720, seconds=5.0)
    assert est.frame == (736, 736, 121) and est.latent_shape == (31, 46, 46, 157)
    assert est.tokens == (31 * 23 * 23, 157)
    assert any("736x736" in n for n in est.notes)


def test_chunked_decode_grows_with_frames_only_through_the_decoded_output():
    vae = WAN22_VAE_SPEC
    short, long = vae.decode_elements(31, 44, 44), vae.decode_elements(61, 44, 44)
    out_per_frame = 3 * 704 * 704
    assert long - short == pytest.approx(30 * 4 * out_per_frame, rel=0.01)


def test_torch_dtypes_are_accepted_like_their_names_and_unknown_parts_are_noted():
    cfg = get_preset("ovi")
    by_name = estimate_memory(cfg, **OVI_704, weight_dtype="fp8", compute_dtype="bf16")
    by_dtype = estimate_memory(cfg, **OVI_704, weight_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
    assert by_dtype == by_name
    small = estimate_memory(get_preset("synthetic"), width=64, height=64, seconds=1.0, space_stride=8)
    assert small.text_encoder == small.vaes == 0
    assert any("text encoder unknown" in n for n in small.notes)


def test_bad_requests_fail_up_front_with_the_fix():
    cfg = get_preset("ovi")
    with pytest.raises(ValueError, match="exactly one of seconds"):
        estimate_memory(cfg, width=704, height=704)
    with pytest.raises(ValueError, match=r"1 \+ k\*4"):
        estimate_memory(cfg, width=704, height=704, num_frames=120)
    with pytest.raises(ValueError, match="offload='cpu' is invalid"):
        estimate_memory(cfg, **OVI_704, offload="cpu")
    with pytest.raises(ValueError, match="weight_dtype='int4' is invalid"):
        estimate_memory(cfg, **OVI_704, weight_dtype="int4")


# --- decisions ----------------------------------------------------------------------------------------


def test_sequential_passes_are_chosen_when_the_batched_ones_do_not_fit():
    cfg = get_preset("harmony-full")
    kw = dict(**OVI_704, offload="model", weight_dtype="fp8")
    batched = estimate_memory(cfg, batched=True, **kw)
    sequential = estimate_memory(cfg, batched=False, **kw)
    assert sequential.peak < batched.peak
    between = int((sequential.peak + batched.peak) / 2 / 0.9)
    assert choose_batching(cfg, free_bytes=between, **kw) == (False, sequential)
    assert choose_batching(cfg, free_bytes=2 * batched.peak, **kw) == (True, batched)
    # with the models already loaded only what sampling adds must fit
    ok, _ = choose_batching(cfg, free_bytes=int(1.2 * batched.sampling_extra / 0.9), weights_loaded=True, **kw)
    assert ok


def test_check_fits_names_the_need_the_free_memory_and_fixes_that_fit():
    est = estimate_memory(get_preset("ovi"), **OVI_704, offload="none")
    check_fits(est, 2 * est.peak, what="sampling")  # fits: no error
    with pytest.raises(InsufficientMemoryError) as info:
        check_fits(est, 24 * GIB, what="HarmonySampler (5 s at 704x704)")
    err = info.value
    assert isinstance(err, MemoryError) and err.need == est.peak and err.free == 24 * GIB
    msg = str(err)
    assert "HarmonySampler (5 s at 704x704) needs about" in msg and "21.6 GiB is usable" in msg
    for fix in ("one at a time", "offload='model'", "fp8", "offload='blocks'", "half the length", "smaller frame"):
        assert fix in msg
    assert "  * " in msg  # at least one fix is estimated to fit


def test_cli_prints_the_breakdown_and_the_table(capsys):
    assert cli_main(["--preset", "ovi", "--width", "704", "--height", "704", "--seconds", "5", "--dtype", "fp8"]) == 0
    out = capsys.readouterr().out
    assert "PEAK" in out and "weights fp8" in out and "15004 video + 157 audio tokens" in out
    assert cli_main(["--preset", "tiny", "--width", "64", "--height", "64", "--seconds", "1", "--table"]) == 0
    assert "blocks" in capsys.readouterr().out


# --- the meter itself ---------------------------------------------------------------------------------


def test_live_peak_counts_new_storages_once_and_ignores_older_tensors():
    base = torch.ones(1000)  # exists before: not counted
    with LivePeak() as meter:
        a = base * 2  # 4000 B
        b = a + 1  # 8000 B alive
        del a
        c = b * 3  # 8000 B alive
        c.view(10, 100).add_(1)  # a view and an in-place op: nothing new
        d = torch.cat([b, c])  # 16000 B alive
    assert meter.peak == 16000 and meter.current == 16000
    del b, c, d
