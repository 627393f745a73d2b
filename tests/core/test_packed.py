"""Guidance on packed AV states (the pieces the ComfyUI guider uses), against hand-computed numbers."""

from __future__ import annotations

import pytest
import torch

from harmony_core.sampling.guidance import GuidanceConfig, combine
from harmony_core.sampling.layout import AVLayout
from harmony_core.sampling.packed import (
    PASS_CLEAN,
    combine_packed,
    frame_generation,
    keep_clean,
    plan_passes,
    static_frame,
    stream_noise_masks,
    stream_timesteps,
    substitute_streams,
)


def test_a_frame_is_generated_as_soon_as_any_of_its_elements_is():
    mask = torch.zeros(1, 2, 3, 2, 2)
    mask[0, 1, 1, 0, 1] = 0.5  # one element of frame 1
    assert frame_generation(mask, batch=2).tolist() == [[0.0, 0.5, 0.0]] * 2
    assert frame_generation(torch.ones(2, 6, 4), batch=2).tolist() == [[1.0] * 4] * 2
    with pytest.raises(ValueError, match="expected \\[B, C, T"):
        frame_generation(torch.ones(4), batch=1)


def test_stream_timesteps_put_kept_and_anchored_streams_at_sigma_zero():
    sigma = torch.tensor([0.5, 0.8])
    v_gen = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    v_t, a_t = stream_timesteps(sigma, v_gen, None, v_clean=torch.tensor([0.0, 1.0]), a_clean=torch.tensor([1.0, 0.0]))
    assert v_t.tolist() == [[0.5, 0.0, 0.5], [0.0, 0.0, 0.0]]
    assert a_t.tolist() == pytest.approx([0.0, 0.8])
    v_t, a_t = stream_timesteps(sigma)
    assert torch.equal(v_t, sigma) and torch.equal(a_t, sigma)


def test_substitution_replaces_only_the_flagged_samples():
    v, a = torch.zeros(2, 1, 1, 1, 2), torch.zeros(2, 1, 3)
    v_sub, a_sub = torch.ones_like(v), torch.full_like(a, 7.0)
    v2, a2 = substitute_streams(v, a, v_sub=v_sub, a_sub=a_sub, v_flag=torch.tensor([0.0, 0.0]),
                                a_flag=torch.tensor([1.0, 0.0]))
    assert v2 is v  # nothing flagged: untouched
    assert a2[0].eq(7).all() and not a2[1].any()


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        (dict(generates_video=True, generates_audio=True, static_frame_known=False), ["joint", "anchor_v"]),
        (dict(generates_video=True, generates_audio=True, static_frame_known=True), ["joint", "anchor_v", "anchor_a"]),
        (dict(generates_video=True, generates_audio=False, static_frame_known=True), ["joint", "anchor_v"]),  # A2V
        (dict(generates_video=False, generates_audio=True, static_frame_known=True), ["joint", "anchor_a"]),  # V2A
    ],
)
def test_the_pass_plan_follows_the_modes(kw, expected):
    assert plan_passes(GuidanceConfig.sync(), sigma=0.5, **kw) == expected


def test_the_pass_plan_adds_text_cfg_and_respects_the_interval():
    both = dict(generates_video=True, generates_audio=True, static_frame_known=True)
    assert plan_passes(GuidanceConfig.text_cfg(), sigma=0.5, **both) == ["joint", "negative"]
    narrow = GuidanceConfig.sync(interval=(0.2, 0.6))
    assert plan_passes(narrow, sigma=0.9, **both) == ["joint"]
    assert plan_passes(narrow, sigma=0.6, **both) == ["joint", "anchor_v", "anchor_a"]
    assert PASS_CLEAN["anchor_v"] == (0.0, 1.0) and PASS_CLEAN["anchor_a"] == (1.0, 0.0)


def test_packed_combination_guides_each_stream_against_its_own_anchor():
    layout = AVLayout((1, 1, 1, 1, 2), (1, 1, 2))  # video values 0..1, audio values 2..3
    joint = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    outs = {"joint": joint, "anchor_v": torch.tensor([[[0.0, 0.0, 9.0, 9.0]]]),
            "anchor_a": torch.tensor([[[9.0, 9.0, 1.0, 1.0]]])}
    # video: joint + 2 (joint - anchor_v); audio: joint + 1 (joint - anchor_a); other slices ignored
    assert combine_packed(outs, layout, GuidanceConfig.sync(3.0, 2.0)).tolist() == [[[3.0, 6.0, 5.0, 7.0]]]
    assert torch.equal(combine_packed(outs, layout, GuidanceConfig.none()), joint)


def test_combining_x0_predictions_equals_combining_velocities():
    """ComfyUI hands the guider x0 = x - sigma v; guidance is affine with weights summing to one,
    so guiding x0 is guiding v."""
    g = torch.Generator().manual_seed(0)
    layout = AVLayout((2, 3, 2, 2, 2), (2, 4, 5))
    n = layout.v_numel + layout.a_numel
    x, sigma = torch.randn(2, n, generator=g), 0.7
    vel = {k: torch.randn(2, n, generator=g) for k in ("joint", "anchor_v", "anchor_a", "negative")}
    cfg = GuidanceConfig.sync(3.0, 2.0, video_text_scale=1.5, audio_text_scale=2.5)
    via_x0 = combine_packed({k: x - sigma * v for k, v in vel.items()}, layout, cfg)
    via_v = x - sigma * combine_packed(vel, layout, cfg)
    assert torch.allclose(via_x0, via_v, atol=1e-5)
    jv, _ = layout.unpack(vel["joint"])
    ref_v = combine(jv, anchor=layout.unpack(vel["anchor_v"])[0], sync_scale=3.0,
                    negative=layout.unpack(vel["negative"])[0], text_scale=1.5)
    assert torch.allclose(layout.unpack(combine_packed(vel, layout, cfg))[0], ref_v)


def test_the_static_frame_comes_from_the_kept_video_or_the_last_estimate():
    v_x, last = torch.zeros(1, 2, 3, 2, 2), torch.ones(1, 2, 3, 2, 2)
    assert torch.equal(static_frame(v_x, torch.tensor([[0.0, 0.0, 0.0]]), last), v_x[:, :, :1])  # V2A
    assert torch.equal(static_frame(v_x, None, last), last[:, :, :1])  # T2AV, later steps
    assert static_frame(v_x, torch.ones(1, 3), None) is None  # T2AV, first step


def test_mode_masks_and_keeping_clean_latents():
    v_m, a_m = stream_noise_masks("a2v", (1, 2, 3, 2, 2), (1, 4, 5))
    assert v_m.eq(1).all() and a_m.eq(0).all() and a_m.shape == (1, 4, 5)
    v_m, a_m = stream_noise_masks("v2a", (1, 2, 3, 2, 2), (1, 4, 5))
    assert v_m.eq(0).all() and a_m.eq(1).all()
    with pytest.raises(ValueError, match="mode='x2y'"):
        stream_noise_masks("x2y", (1,), (1,))
    out, clean = torch.full((1, 1, 3), 2.0), torch.full((1, 1, 3), 10.0)
    assert keep_clean(out, clean, torch.tensor([[[0.0, 1.0, 0.25]]])).tolist() == [[[10.0, 2.0, 8.0]]]
