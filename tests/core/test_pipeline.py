"""Generation modes: the conditioning stream is untouched bit-for-bit; the plumbing is exact."""

from __future__ import annotations

import pytest
import torch

from harmony_core.sampling.guidance import GuidanceConfig
from harmony_core.sampling.pipeline import GenerationRequest, generate_latents
from tests._helpers import make_conditions, make_latents, make_tiny_model


@pytest.mark.parametrize("sampler", ["euler", "heun", "unipc"])
def test_a2v_leaves_the_given_audio_bit_for_bit_unchanged(tiny_config, sampler):
    model = make_tiny_model(tiny_config)
    v, a = make_latents(tiny_config, frames=4)
    req = GenerationRequest(mode="a2v", steps=4, sampler=sampler, guidance=GuidanceConfig.none())
    out_v, out_a = generate_latents(
        model,
        make_conditions(tiny_config),
        v_shape=v.shape,
        a_shape=a.shape,
        request=req,
        generator=torch.Generator().manual_seed(0),
        a_clean=a,
    )
    assert torch.equal(out_a, a)
    assert not torch.allclose(out_v, torch.zeros_like(out_v))


@pytest.mark.parametrize("sampler", ["euler", "unipc"])
def test_v2a_leaves_the_given_video_bit_for_bit_unchanged(tiny_config, sampler):
    model = make_tiny_model(tiny_config)
    v, a = make_latents(tiny_config, frames=4)
    req = GenerationRequest(mode="v2a", steps=4, sampler=sampler, guidance=GuidanceConfig.none())
    out_v, _ = generate_latents(
        model,
        make_conditions(tiny_config),
        v_shape=v.shape,
        a_shape=a.shape,
        request=req,
        generator=torch.Generator().manual_seed(0),
        v_clean=v,
    )
    assert torch.equal(out_v, v)


def test_a_reference_first_frame_is_kept_and_the_rest_is_generated(tiny_config):
    model = make_tiny_model(tiny_config)
    v, a = make_latents(tiny_config, frames=4)
    req = GenerationRequest(mode="t2av", steps=3, sampler="unipc", guidance=GuidanceConfig.none())
    out_v, _ = generate_latents(
        model,
        make_conditions(tiny_config),
        v_shape=v.shape,
        a_shape=a.shape,
        request=req,
        generator=torch.Generator().manual_seed(0),
        first_frame=v[:, :, :1],
    )
    assert torch.equal(out_v[:, :, :1], v[:, :, :1])
    assert not torch.equal(out_v[:, :, 1:], v[:, :, 1:])


class Oracle:
    """Velocity of the straight path towards fixed targets: x0 = x - sigma * v recovers them."""

    def __init__(self, v0, a0):
        self.v0, self.a0 = v0, a0

    def __call__(self, v_x, a_x, v_t, a_t, cond, *, options=None):
        sv, sa = v_t.view(-1, 1, v_t.shape[-1], 1, 1), a_t.view(-1, 1, a_t.shape[-1])
        v_vel = torch.where(sv > 0, (v_x - self.v0) / sv.clamp_min(1e-12), torch.zeros_like(v_x))
        a_vel = torch.where(sa > 0, (a_x - self.a0) / sa.clamp_min(1e-12), torch.zeros_like(a_x))
        return v_vel, a_vel


@pytest.mark.parametrize("sampler", ["euler", "heun", "unipc"])
def test_an_exact_velocity_model_lands_on_its_target_through_packing_and_timesteps(tiny_config, sampler):
    v0, a0 = make_latents(tiny_config, frames=4, seed=7)
    req = GenerationRequest(steps=6, sampler=sampler, guidance=GuidanceConfig.none())
    out_v, out_a = generate_latents(
        Oracle(v0, a0),
        make_conditions(tiny_config),
        v_shape=v0.shape,
        a_shape=a0.shape,
        request=req,
        generator=torch.Generator().manual_seed(1),
    )
    torch.testing.assert_close(out_v, v0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out_a, a0, rtol=1e-4, atol=1e-4)


def test_the_same_generator_seed_gives_the_same_clip(tiny_config):
    model = make_tiny_model(tiny_config)
    v, a = make_latents(tiny_config, frames=3)
    req = GenerationRequest(steps=3, guidance=GuidanceConfig.none())
    kw = dict(v_shape=v.shape, a_shape=a.shape, request=req)
    first = generate_latents(model, make_conditions(tiny_config), generator=torch.Generator().manual_seed(5), **kw)
    second = generate_latents(model, make_conditions(tiny_config), generator=torch.Generator().manual_seed(5), **kw)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_modes_that_need_a_given_stream_say_so(tiny_config):
    v, a = make_latents(tiny_config, frames=3)
    with pytest.raises(ValueError, match="pass the audio latent as a_clean"):
        generate_latents(
            make_tiny_model(tiny_config),
            make_conditions(tiny_config),
            v_shape=v.shape,
            a_shape=a.shape,
            request=GenerationRequest(mode="a2v"),
            generator=torch.Generator(),
        )
    with pytest.raises(ValueError, match="mode='x2y' is not a generation mode"):
        generate_latents(
            make_tiny_model(tiny_config),
            make_conditions(tiny_config),
            v_shape=v.shape,
            a_shape=a.shape,
            request=GenerationRequest(mode="x2y", steps=1),
            generator=torch.Generator(),
        )
