"""Guidance maths against hand-computed numbers, the passes SyncCFG runs, and its anchors."""

from __future__ import annotations

import pytest
import torch

from harmony_core.model.conditions import HarmonyConditions
from harmony_core.sampling.anchors import VAEAnchors
from harmony_core.sampling.guidance import GuidanceConfig, GuidedDenoiser, cfg, combine, sync_cfg
from harmony_core.sampling.layout import AVLayout, mode_mask
from tests._helpers import make_conditions, make_latents, make_tiny_model

HOP = 4  # samples per audio latent of the stand-in audio VAE


def test_sync_cfg_and_cfg_match_hand_computed_numbers():
    joint, anchor = torch.tensor([2.0, -1.0]), torch.tensor([1.0, 1.0])
    assert torch.equal(sync_cfg(joint, anchor, 3.0), torch.tensor([4.0, -5.0]))  # 1 + 3*(2-1), 1 + 3*(-1-1)
    assert torch.equal(cfg(joint, anchor, 2.0), torch.tensor([3.0, -3.0]))
    neg = torch.tensor([0.0, 0.0])
    # joint + (3-1)(joint-anchor) + (1.5-1)(joint-neg) = [2+2+1, -1-4-0.5]
    assert torch.equal(
        combine(joint, anchor=anchor, sync_scale=3.0, negative=neg, text_scale=1.5), torch.tensor([5.0, -5.5])
    )
    assert combine(joint, anchor=anchor, sync_scale=1.0, negative=neg, text_scale=1.0) is joint


class Recorder:
    """A velocity model whose outputs are simple known functions of its inputs."""

    def __init__(self):
        self.calls = []

    def __call__(self, v_x, a_x, v_t, a_t, cond, *, options=None):
        self.calls.append((v_x.clone(), a_x.clone(), v_t.clone(), a_t.clone(), cond.v_context.clone()))
        v_vel = (
            v_x * 0.5 + a_x.mean(dim=(1, 2)).view(-1, 1, 1, 1, 1) + cond.v_context.mean(dim=(1, 2)).view(-1, 1, 1, 1, 1)
        )
        a_vel = a_x * 0.25 + v_x.mean(dim=(1, 2, 3, 4)).view(-1, 1, 1) + v_t.float().mean(dim=1).view(-1, 1, 1)
        return v_vel, a_vel


def _anchors():
    def enc_audio(w):  # silence -> a distinctly non-zero latent (like MMAudio's VAE)
        return (w.view(w.shape[0], 1, -1, HOP).mean(-1) + 0.7).expand(-1, 6, -1).contiguous()

    def enc_video(px):
        b, _, t, h, w = px.shape
        frames = 1 + (t - 1) // 4
        return px.mean(dim=1, keepdim=True)[:, :, ::4][:, :, :frames].expand(b, 4, frames, h, w) * 2 + 0.1

    def dec_video(z):
        return z.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1, -1)

    return VAEAnchors(
        encode_audio=enc_audio,
        audio_samples_for=lambda t: t * HOP,
        encode_video=enc_video,
        decode_video=dec_video,
        pixel_frames_for=lambda t: 1 + 4 * (t - 1),
    )


def _setup(mode, guidance, **kw):
    from harmony_core.config import get_preset

    cfg = get_preset("tiny")
    v, a = make_latents(cfg, frames=4, size=4)
    layout = AVLayout.of(v, a)
    mask = mode_mask(mode, layout)
    clean = layout.pack(v, a) if mode != "t2av" else None
    model = Recorder()
    den = GuidedDenoiser(
        model, layout, mask, make_conditions(cfg), guidance=guidance, anchors=_anchors(), clean=clean, **kw
    )
    return den, model, layout, v, a


def test_scale_one_reduces_exactly_to_the_joint_prediction():
    cfg_ = __import__("harmony_core.config", fromlist=["x"]).get_preset("tiny")
    model = make_tiny_model(cfg_)
    v, a = make_latents(cfg_, frames=4)
    layout = AVLayout.of(v, a)
    cond = make_conditions(cfg_)
    x = layout.pack(v, a)
    sigma = torch.tensor([0.6])
    den = GuidedDenoiser(model, layout, mode_mask("t2av", layout), cond, guidance=GuidanceConfig.none())
    out = den(x, sigma)
    with torch.no_grad():
        jv, ja = model(v, a, torch.full((1, 4), 0.6), torch.full((1, a.shape[2]), 0.6), cond)
    assert den.passes_run == [["joint"]]
    assert torch.equal(out, layout.pack(v - 0.6 * jv, a - 0.6 * ja))


def test_sync_cfg_video_guidance_uses_clean_silent_audio_at_zero():
    den, model, layout, v, a = _setup("t2av", GuidanceConfig.sync(video=3.0, audio=1.0, batch="never"))
    sigma = torch.tensor([0.5])
    out_v, out_a = layout.unpack(den(layout.pack(v, a), sigma))
    assert den.passes_run == [["joint", "anchor_v"]]
    (jv_x, ja_x, jv_t, ja_t, _), (av_x, aa_x, av_t, aa_t, _) = model.calls
    assert torch.equal(av_x, v) and torch.equal(av_t, jv_t)
    assert torch.all(aa_t == 0) and torch.allclose(aa_x, torch.full_like(a, 0.7))  # VAE(silence), not zeros
    # by hand: joint_v = 0.5 v + mean(a) + c, anchor_v = 0.5 v + 0.7 + c; guided = joint + 2 (joint - anchor)
    c = den.cond.v_context.mean()
    joint_v = 0.5 * v + a.mean() + c
    guided_v = joint_v + 2.0 * (a.mean() - 0.7)
    torch.testing.assert_close(out_v, v - 0.5 * guided_v, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_a, a - 0.5 * (0.25 * a + v.mean() + 0.5), rtol=1e-5, atol=1e-5)


def test_audio_guidance_waits_for_a_first_frame_then_uses_a_clean_static_video():
    den, model, layout, v, a = _setup("t2av", GuidanceConfig.sync(video=1.0, audio=2.0, batch="never"))
    x = layout.pack(v, a)
    den(x, torch.tensor([0.9]))
    den(x, torch.tensor([0.7]))
    assert den.passes_run == [["joint"], ["joint", "anchor_a"]]
    still_x, still_t = model.calls[-1][0], model.calls[-1][2]
    assert torch.all(still_t == 0)
    assert torch.allclose(still_x, still_x[:, :, :1].expand_as(still_x))  # every frame the same still


def test_a2v_guides_only_video_and_v2a_only_audio():
    den, _, layout, v, a = _setup("a2v", GuidanceConfig.sync())
    den(layout.pack(v, a), torch.tensor([0.5]))
    assert den.passes_run == [["joint", "anchor_v"]]
    den, _, layout, v, a = _setup("v2a", GuidanceConfig.sync())
    den(layout.pack(v, a), torch.tensor([0.5]))
    assert den.passes_run == [["joint", "anchor_a"]]  # the given video's first frame is the still


def test_guidance_interval_skips_the_extra_passes_outside_it():
    den, _, layout, v, a = _setup("a2v", GuidanceConfig.sync(interval=(0.0, 0.5)))
    x = layout.pack(v, a)
    den(x, torch.tensor([0.9]))
    den(x, torch.tensor([0.4]))
    assert den.passes_run == [["joint"], ["joint", "anchor_v"]]


def test_text_cfg_needs_and_uses_the_negative_prompt():
    from harmony_core.config import get_preset

    with pytest.raises(ValueError, match="negative conditioning"):
        _setup("t2av", GuidanceConfig.text_cfg())
    neg = make_conditions(get_preset("tiny"), seed=42)
    den, model, layout, v, a = _setup(
        "t2av", GuidanceConfig.text_cfg(video=4.0, audio=1.0, batch="never"), neg_cond=neg
    )
    den(layout.pack(v, a), torch.tensor([0.5]))
    assert den.passes_run == [["joint", "negative"]]
    assert torch.equal(model.calls[1][4], neg.v_context)


def test_batched_passes_equal_sequential_passes(tiny_config):
    model = make_tiny_model(tiny_config)
    v, a = make_latents(tiny_config, frames=4)
    layout = AVLayout.of(v, a)
    cond, neg = make_conditions(tiny_config), make_conditions(tiny_config, seed=9)
    outs = []
    for batch in ("always", "never"):
        g = GuidanceConfig(video_sync_scale=3, audio_sync_scale=2, video_text_scale=2, batch=batch)
        den = GuidedDenoiser(
            model, layout, mode_mask("t2av", layout), cond, guidance=g, anchors=_anchors(), neg_cond=neg
        )
        x = layout.pack(v, a)
        den(x, torch.tensor([0.8]))
        outs.append(den(x, torch.tensor([0.6])))
        assert den.passes_run[-1] == ["joint", "anchor_v", "anchor_a", "negative"]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)


def test_auto_batching_falls_back_to_sequential_over_the_memory_budget(tiny_config):
    model = Recorder()
    v, a = make_latents(tiny_config, frames=4)
    layout = AVLayout.of(v, a)
    den = GuidedDenoiser(
        model,
        layout,
        mode_mask("a2v", layout),
        make_conditions(tiny_config),
        guidance=GuidanceConfig.sync(memory_budget=1000),
        anchors=_anchors(),
        clean=layout.pack(v, a),
        memory_estimate=lambda batch: 600 * batch,
    )
    den(layout.pack(v, a), torch.tensor([0.5]))
    assert [c[0].shape[0] for c in model.calls] == [1, 1]  # two passes of batch 1, not one of batch 2


def test_silence_is_encoded_once_per_shape():
    anchors = _anchors()
    for _ in range(3):
        anchors.silent_audio((2, 6, 10), device=torch.device("cpu"), dtype=torch.float32)
    anchors.silent_audio((1, 6, 12), device=torch.device("cpu"), dtype=torch.float32)
    assert anchors.encode_calls == 2


def test_anchor_shape_mismatch_names_both_shapes():
    anchors = _anchors()
    with pytest.raises(ValueError, match="model and the audio VAE disagree"):
        anchors.silent_audio((1, 5, 10), device=torch.device("cpu"), dtype=torch.float32)


def test_conditions_cat_pads_contexts_and_marks_real_rows():
    a = HarmonyConditions(v_context=torch.ones(1, 2, 3), a_context=torch.ones(1, 1, 3))
    b = HarmonyConditions(v_context=torch.ones(1, 4, 3), a_context=torch.ones(1, 1, 3))
    c = HarmonyConditions.cat([a, b])
    assert c.v_context.shape == (2, 4, 3) and c.a_context_mask is None
    assert c.v_context_mask.tolist() == [[True, True, False, False], [True] * 4]
