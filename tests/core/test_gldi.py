"""Global-Local Decoupled Interaction: batched windows equal masked full attention; new modules
start at zero so pretrained towers are untouched."""

from __future__ import annotations

import dataclasses

import torch

from harmony_core.config import InteractionConfig, get_preset
from harmony_core.model.conditions import ForwardOptions
from harmony_core.model.dit import HarmonyDiT
from harmony_core.model.layers import additive_mask, sdpa_attention
from harmony_core.model.rope import apply_rope, time_rope_angles
from harmony_core.model.windows import local_windows
from tests._helpers import make_conditions, make_latents, make_tiny_model


def _setup(frames=5, size=4, seed=0):
    cfg = get_preset("tiny")
    model = make_tiny_model(cfg, seed=seed)
    g = torch.Generator().manual_seed(seed + 10)
    p = (size // 2) ** 2
    t_a = cfg.timeline.audio_latents_for_video(frames)
    v_x = torch.randn(2, frames * p, cfg.video.dim, generator=g)
    a_x = torch.randn(2, t_a, cfg.audio.dim, generator=g)
    win = local_windows(cfg.timeline, frames, t_a, a2v_window=1, v2a_window=1, rope_align=True)
    return cfg, model, v_x, a_x, win, p


def _masked_full(mod, x, ctx, allowed, q_angles, k_angles):
    """Reference: every query attends to the whole other stream under a token-level mask."""
    q, k, v = mod._qkv(x, ctx)
    b, lq, n, kd = q.shape
    q = apply_rope(q, q_angles).reshape(b, lq, n * kd)
    k = apply_rope(k, k_angles).reshape(b, -1, n * kd)
    return mod.o(sdpa_attention(q, k, v, n, additive_mask(allowed, q.dtype)[None]))


def test_batched_a2v_equals_masked_full_attention():
    cfg, model, v_x, a_x, win, p = _setup()
    mod = model.video_model.blocks[0].a2v
    q_ang = time_rope_angles(cfg.video, win.a2v_q_pos.repeat_interleave(p))
    k_ang = time_rope_angles(cfg.video, win.a2v_k_pos)
    fast = mod.local_a2v(v_x, a_x, win, q_ang, k_ang, 5, sdpa_attention)
    allowed = win.a2v_mask.repeat_interleave(p, dim=0)  # [T_v*P, T_a]
    ref = _masked_full(mod, v_x, a_x, allowed, q_ang, k_ang)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)


def test_batched_v2a_equals_masked_full_attention():
    cfg, model, v_x, a_x, win, p = _setup(frames=6)
    mod = model.audio_model.blocks[1].v2a
    q_ang = time_rope_angles(cfg.audio, win.v2a_q_pos)
    k_ang = time_rope_angles(cfg.audio, win.v2a_k_pos.repeat_interleave(p))
    fast = mod.local_v2a(a_x, v_x, win, q_ang, k_ang, 6, sdpa_attention)
    allowed = win.v2a_mask.repeat_interleave(p, dim=1)  # [T_a, T_v*P]
    ref = _masked_full(mod, a_x, v_x, allowed, q_ang, k_ang)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)


def test_video_frames_see_only_audio_inside_their_window():
    cfg, model, v_x, a_x, win, p = _setup()
    mod = model.video_model.blocks[0].a2v
    q_ang = time_rope_angles(cfg.video, win.a2v_q_pos.repeat_interleave(p))
    k_ang = time_rope_angles(cfg.video, win.a2v_k_pos)
    base = mod.local_a2v(v_x, a_x, win, q_ang, k_ang, 5, sdpa_attention)
    j = int(win.a2v_mask[4].nonzero().max())  # an audio token the last frame sees
    a2 = a_x.clone()
    a2[:, j] += torch.randn(a_x.shape[-1], generator=torch.Generator().manual_seed(3))  # not a constant: LayerNorm
    moved = mod.local_a2v(v_x, a2, win, q_ang, k_ang, 5, sdpa_attention)
    changed = (moved - base).abs().amax(dim=(0, 2)).view(5, p).amax(dim=1) > 1e-6
    assert torch.equal(changed, win.a2v_mask[:, j])


def _pair(interaction: InteractionConfig, base: InteractionConfig, seed=0):
    cfg = get_preset("tiny")
    full = HarmonyDiT(dataclasses.replace(cfg, interaction=interaction), generator=torch.Generator().manual_seed(seed))
    plain = HarmonyDiT(dataclasses.replace(cfg, interaction=base), generator=torch.Generator().manual_seed(seed + 1))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # a "pretrained" pair of towers: random everything, heads included
        for prm in plain.parameters():
            prm.add_(torch.randn(prm.shape, generator=g) * 0.05)
    missing, unexpected = full.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.split(".")[3] in ("a2v", "v2a", "style") for k in missing)
    return cfg, full.eval(), plain.eval()


def test_new_interaction_modules_leave_pretrained_towers_unchanged_at_step_zero():
    cfg, full, plain = _pair(InteractionConfig(), InteractionConfig(local=False, global_style=False))
    v, a = make_latents(cfg, batch=2, frames=5)
    cond = make_conditions(cfg, batch=2, ref=4)
    t = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        out_full = full(v, a, t, t, cond)
        out_plain = plain(v, a, t, t, cond)
    assert torch.equal(out_full[0], out_plain[0]) and torch.equal(out_full[1], out_plain[1])


def test_gldi_added_to_ovi_fusion_keeps_the_ovi_model_exact():
    ovi_like = InteractionConfig(local=False, global_style=False, global_fusion=True)
    cfg, full, plain = _pair(InteractionConfig(global_fusion=True), ovi_like)
    v, a = make_latents(cfg, frames=4)
    cond = make_conditions(cfg, ref=3)
    with torch.no_grad():
        assert torch.equal(
            full(v, a, torch.tensor([0.5]), torch.tensor([0.5]), cond)[1],
            plain(v, a, torch.tensor([0.5]), torch.tensor([0.5]), cond)[1],
        )


def test_switching_off_a2v_cuts_the_only_path_from_audio_to_video():
    cfg = get_preset("tiny")  # no global fusion: local A2V is the only audio->video path
    model = make_tiny_model(cfg)
    v, a = make_latents(cfg, frames=4)
    cond = make_conditions(cfg)
    t = torch.tensor([0.5])
    with torch.no_grad():
        off = ForwardOptions(a2v=False)
        v1, _ = model(v, a, t, t, cond, options=off)
        a_other = torch.randn(a.shape, generator=torch.Generator().manual_seed(9))
        v2, _ = model(v, a_other, t, t, cond, options=off)
        v3, _ = model(v, a_other, t, t, cond)
    assert torch.equal(v1, v2)
    assert not torch.allclose(v1, v3)


def test_rope_alignment_switch_changes_the_interaction():
    cfg = get_preset("tiny")
    model = make_tiny_model(cfg)
    unaligned = HarmonyDiT(dataclasses.replace(cfg, interaction=InteractionConfig(rope_align=False)))
    unaligned.load_state_dict(model.state_dict())
    v, a = make_latents(cfg, frames=5)
    cond = make_conditions(cfg)
    t = torch.tensor([0.5])
    with torch.no_grad():
        assert not torch.allclose(model(v, a, t, t, cond)[0], unaligned.eval()(v, a, t, t, cond)[0])


def test_time_scales_set_the_unit_of_each_directions_shared_timeline(monkeypatch):
    import harmony_core.model.dit as dit_module

    cfg = get_preset("tiny")
    cfg = dataclasses.replace(cfg, interaction=InteractionConfig(a2v_time_scale=5.25, v2a_time_scale=0.5))
    model = make_tiny_model(cfg)
    seen = []
    real = dit_module.time_rope_angles
    monkeypatch.setattr(dit_module, "time_rope_angles", lambda tower, pos: seen.append(pos) or real(tower, pos))
    v, a = make_latents(cfg, frames=4)
    with torch.no_grad():
        model(v, a, torch.tensor([0.5]), torch.tensor([0.5]), make_conditions(cfg))
    win = local_windows(cfg.timeline, 4, a.shape[-1], a2v_window=1, v2a_window=1, rope_align=True)
    p = v.shape[-1] * v.shape[-2] // 4  # tokens per latent frame (2x2 patches)
    a2v_q, a2v_k, v2a_q, v2a_k = seen
    torch.testing.assert_close(a2v_q, win.a2v_q_pos.repeat_interleave(p) * 5.25)
    torch.testing.assert_close(a2v_k, win.a2v_k_pos * 5.25)
    torch.testing.assert_close(v2a_q, win.v2a_q_pos * 0.5)
    torch.testing.assert_close(v2a_k, win.v2a_k_pos.repeat_interleave(p) * 0.5)


def test_a_bad_time_scale_is_named():
    import pytest

    for bad in (0.0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="a2v_time_scale"):
            InteractionConfig(a2v_time_scale=bad)
    with pytest.raises(ValueError, match="v2a_time_scale.*Use 1.0"):
        InteractionConfig(v2a_time_scale=float("inf"))
