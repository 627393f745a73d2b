"""HarmonyDiT: shapes, per-stream timesteps, batching, reference tokens, sizes and input errors."""

from __future__ import annotations

import os

import pytest
import torch

from harmony_core.config import get_preset
from harmony_core.model.conditions import HarmonyConditions
from harmony_core.model.dit import HarmonyDiT, count_parameters
from tests._helpers import make_conditions, make_latents


def test_outputs_have_the_input_shapes_and_reference_tokens_are_stripped(tiny_model, tiny_config):
    v, a = make_latents(tiny_config, batch=2, frames=5)
    with torch.no_grad():
        pv, pa = tiny_model(v, a, torch.rand(2), torch.rand(2), make_conditions(tiny_config, batch=2, ref=6))
    assert pv.shape == v.shape and pa.shape == a.shape


def test_a_batch_of_two_equals_two_single_passes(tiny_model, tiny_config):
    v, a = make_latents(tiny_config, batch=2, frames=4)
    cond = make_conditions(tiny_config, batch=2, ref=3)
    t_v, t_a = torch.tensor([0.2, 0.9]), torch.tensor([0.7, 0.0])
    with torch.no_grad():
        pv, pa = tiny_model(v, a, t_v, t_a, cond)
        for i in range(2):
            ci = HarmonyConditions(**{k: (None if x is None else x[i : i + 1]) for k, x in cond.__dict__.items()})
            qv, qa = tiny_model(v[i : i + 1], a[i : i + 1], t_v[i : i + 1], t_a[i : i + 1], ci)
            torch.testing.assert_close(pv[i : i + 1], qv, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(pa[i : i + 1], qa, rtol=1e-5, atol=1e-5)


def test_per_frame_timesteps_that_are_all_equal_match_a_per_sample_timestep(tiny_model, tiny_config):
    v, a = make_latents(tiny_config, frames=4)
    cond = make_conditions(tiny_config)
    with torch.no_grad():
        ref = tiny_model(v, a, torch.tensor([0.6]), torch.tensor([0.6]), cond)
        per = tiny_model(v, a, torch.full((1, 4), 0.6), torch.full((1, a.shape[2]), 0.6), cond)
    torch.testing.assert_close(ref[0], per[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ref[1], per[1], rtol=1e-5, atol=1e-5)


def test_each_stream_has_its_own_timestep(tiny_model, tiny_config):
    v, a = make_latents(tiny_config, frames=4)
    cond = make_conditions(tiny_config)
    with torch.no_grad():
        base = tiny_model(v, a, torch.tensor([0.5]), torch.tensor([0.5]), cond)
        clean_audio = tiny_model(v, a, torch.tensor([0.5]), torch.tensor([0.0]), cond)
        first_clean = tiny_model(v, a, torch.tensor([[0.0, 0.5, 0.5, 0.5]]), torch.tensor([0.5]), cond)
    assert not torch.allclose(base[1], clean_audio[1])  # audio AdaLN sees a_t
    assert not torch.allclose(base[0], first_clean[0])  # a clean first frame changes the video


def test_a_longer_context_padded_with_a_mask_equals_the_short_context(tiny_model, tiny_config):
    v, a = make_latents(tiny_config, frames=3)
    cond = make_conditions(tiny_config)
    padded = HarmonyConditions(
        v_context=torch.cat([cond.v_context, torch.randn(1, 4, tiny_config.video.text_dim)], 1),
        v_context_mask=torch.tensor([[True] * 3 + [False] * 4]),
        a_context=cond.a_context,
        speech=cond.speech,
    )
    with torch.no_grad():
        torch.testing.assert_close(
            tiny_model(v, a, torch.tensor([0.4]), torch.tensor([0.4]), cond)[0],
            tiny_model(v, a, torch.tensor([0.4]), torch.tensor([0.4]), padded)[0],
            rtol=1e-5,
            atol=1e-5,
        )


def test_batched_conditions_with_different_lengths_equal_separate_passes(tiny_model, tiny_config):
    v, a = make_latents(tiny_config, frames=3)
    c1, c2 = make_conditions(tiny_config, seed=3), make_conditions(tiny_config, seed=4)
    c2.a_context = c2.a_context[:, :2]
    both = HarmonyConditions.cat([c1, c2])
    t = torch.tensor([0.3, 0.3])
    with torch.no_grad():
        pv, pa = tiny_model(v.repeat(2, 1, 1, 1, 1), a.repeat(2, 1, 1), t, t, both)
        qv, qa = tiny_model(v, a, t[:1], t[:1], c2)
    torch.testing.assert_close(pa[1:], qa, rtol=1e-5, atol=1e-5)


def _rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _expected_full_parameters(cfg) -> int:
    """Independent count from the Wan/Ovi layer shapes (not from the module tree)."""
    d, f, n_layers = cfg.video.dim, cfg.video.ffn_dim, cfg.video.num_layers
    lin = lambda i, o: i * o + o  # noqa: E731
    attn = 4 * lin(d, d) + 2 * d  # q k v o + RMS norm_q, norm_k
    block = attn + 2 * d + attn + lin(d, f) + lin(f, d) + 6 * d  # self, norm3, cross, ffn, modulation
    fusion = 2 * lin(d, d) + 2 * d + d
    cross_modal = 4 * lin(d, d) + 2 * d + 4 * d  # q k v o, RMS q/k, LayerNorm x and ctx
    inter = cfg.interaction
    per_pair = 2 * block + (2 * fusion if inter.global_fusion else 0)
    per_pair += (2 * cross_modal if inter.local else 0) + (cross_modal if inter.global_style else 0)
    common = lin(cfg.video.text_dim, d) + lin(d, d) + lin(cfg.video.freq_dim, d) + lin(d, d) + lin(d, 6 * d) + 2 * d
    v_embed = cfg.video.in_channels * 4 * d + d
    v_head = lin(d, cfg.video.out_features)
    h = cfg.audio.conv_mlp_hidden
    a_embed = cfg.audio.in_channels * d * 7 + d + 3 * d * h * 7
    a_head = lin(d, cfg.audio.out_features)
    speech = lin(cfg.speech_dim, d) + lin(d, d) if cfg.speech_dim else 0
    return n_layers * per_pair + 2 * common + v_embed + v_head + a_embed + a_head + speech


@pytest.mark.parametrize("preset", ["ovi", "harmony-full"])
def test_full_size_presets_build_on_meta_without_memory_and_count_parameters(preset):
    cfg = get_preset(preset)
    assert (cfg.video.dim, cfg.video.num_layers, cfg.video.num_heads, cfg.video.ffn_dim) == (3072, 30, 24, 14336)
    assert cfg.video.in_channels == 48 and cfg.video.patch_size == (1, 2, 2) and cfg.audio.in_channels == 20
    before = _rss_bytes()
    model = HarmonyDiT(cfg, device="meta")
    assert all(p.is_meta for p in model.parameters())
    assert _rss_bytes() - before < 200 * 2**20  # 11-15 B parameters would need 44-60 GB
    assert count_parameters(model) == count_parameters(cfg) == _expected_full_parameters(cfg)


def test_ovi_preset_has_ovis_published_size():
    assert 11.0e9 < count_parameters(get_preset("ovi")) < 11.8e9  # Ovi README: "11B"


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda v, a, c: (v[:, :2], a, c), "expected \\[B, 4, T_v, H, W\\]"),
        (lambda v, a, c: (v, a[:, :3], c), "expected \\[B, 6, T_a\\]"),
        (lambda v, a, c: (v[..., :3], a, c), "multiples of the patch size"),
        (
            lambda v, a, c: (v, a, HarmonyConditions(v_context=c.v_context[..., :5], a_context=c.a_context)),
            "cond.v_context",
        ),
    ],
)
def test_bad_inputs_get_a_clear_error_naming_the_value(tiny_model, tiny_config, bad, match):
    v, a = make_latents(tiny_config, frames=3)
    v, a, c = bad(v, a, make_conditions(tiny_config))
    with pytest.raises(ValueError, match=match):
        tiny_model(v, a, torch.tensor([0.5]), torch.tensor([0.5]), c)


def test_injected_operations_and_attention_are_the_ones_used(tiny_config):
    from types import SimpleNamespace

    from harmony_core.model.layers import sdpa_attention

    built, calls = [], []

    class TrackedLinear(torch.nn.Linear):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    def attention(q, k, v, heads, mask=None):
        calls.append(q.shape)
        return sdpa_attention(q, k, v, heads, mask)

    ops = SimpleNamespace(
        Linear=TrackedLinear,
        Conv1d=torch.nn.Conv1d,
        Conv3d=torch.nn.Conv3d,
        LayerNorm=torch.nn.LayerNorm,
        RMSNorm=torch.nn.RMSNorm,
    )
    model = HarmonyDiT(tiny_config, operations=ops, attention=attention)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(isinstance(m, TrackedLinear) for m in linears) and len(built) == len(linears)
    v, a = make_latents(tiny_config, frames=3)
    with torch.no_grad():
        model(v, a, torch.tensor([0.5]), torch.tensor([0.5]), make_conditions(tiny_config, ref=2))
    # per dual block: 2 self + 2 text cross + A2V + V2A + style = 7 attention calls
    assert len(calls) == 7 * tiny_config.video.num_layers


def test_a_timestep_outside_0_1_is_refused_naming_the_likely_mix_up():
    cfg = get_preset("tiny")
    model = HarmonyDiT(cfg, generator=torch.Generator().manual_seed(0))
    v, a = make_latents(cfg, frames=3)
    cond = make_conditions(cfg)
    with pytest.raises(ValueError, match=r"v_t ranges over \[500, 500\].*pass sigma, not t = sigma \* 1000"):
        model(v, a, torch.tensor([500.0]), torch.tensor([0.5]), cond)
    with pytest.raises(ValueError, match=r"a_t ranges over \[-0.1, -0.1\]"):
        model(v, a, torch.tensor([0.5]), torch.tensor([-0.1]), cond)
    with pytest.raises(ValueError, match="a_t ranges over"):
        model(v, a, torch.tensor([0.5]), torch.tensor([float("nan")]), cond)
