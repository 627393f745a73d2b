"""Tests for harmony_core.sampling.samplers on closed-form flow fields."""

from __future__ import annotations

import math

import pytest
import torch

from harmony_core.sampling.samplers import SAMPLERS, get_sampler, sample_euler, sample_heun, sample_unipc
from harmony_core.sampling.schedules import flow_sigmas

UNIPC_CONFIGS = [(order, variant) for order in (1, 2, 3) for variant in ("bh1", "bh2")]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class GaussianData:
    """Data x0 ~ N(mu, s^2) independently per dimension, with its exact denoiser and exact ODE solution.

    Under x_sigma = (1 - sigma) x0 + sigma eps the marginal is N(m, S^2) with m = (1 - sigma) mu and
    S^2 = (1 - sigma)^2 s^2 + sigma^2, so E[x0 | x_sigma] = mu + (1 - sigma) s^2 / S^2 * (x - m).
    The probability-flow ODE dx/dsigma = (x - E[x0|x]) / sigma moves each point at a fixed
    standard score z = (x - m) / S: with x(sigma) = m + S z,
        dx/dsigma = -mu + S' z,   S' = (sigma - (1 - sigma) s^2) / S,
    and (x - E[x0|x]) / sigma = (x - m)(1 - (1 - sigma) s^2 / S^2) / sigma - mu
                              = S z (sigma - (1 - sigma) s^2) / S^2 - mu, which is the same.
    Hence the solution from x(1) = z (S(1) = 1) ends at x(0) = mu + s z.
    ``test_gaussian_closed_form_solves_the_probability_flow_ode`` checks this numerically.
    """

    def __init__(self, dim: int, seed: int):
        g = _gen(seed)
        self.mu = torch.randn(dim, generator=g, dtype=torch.float64)
        self.s = 0.5 + torch.rand(dim, generator=g, dtype=torch.float64)  # std in [0.5, 1.5]

    def denoiser(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sig = sigma[:, None]
        var = (1 - sig) ** 2 * self.s**2 + sig**2
        return self.mu + (1 - sig) * self.s**2 / var * (x - (1 - sig) * self.mu)

    def trajectory(self, z: torch.Tensor, sigma: float) -> torch.Tensor:
        std = torch.sqrt((1 - sigma) ** 2 * self.s**2 + sigma**2)
        return (1 - sigma) * self.mu + std * z


def _rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).pow(2).mean().sqrt().item()


def _observed_order(err_coarse: float, err_fine: float) -> float:
    return math.log2(err_coarse / err_fine)  # steps doubled between the two runs


# Exact cases


@pytest.mark.parametrize("steps", [1, 3, 17, 40])
@pytest.mark.parametrize("shift", [1.0, 5.0])
def test_euler_is_exact_on_a_constant_velocity_field(steps, shift):
    g = _gen(1)
    x1 = torch.randn(2, 3, 4, 5, generator=g)
    v = torch.randn(2, 3, 4, 5, generator=g)

    def model(x, sigma):
        return x - sigma[:, None, None, None] * v  # denoised of the field dx/dsigma = v

    out = sample_euler(model, x1, flow_sigmas(steps, shift=shift))
    torch.testing.assert_close(out, x1 - v, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("name", "options"),
    [("euler", {}), ("heun", {})] + [("unipc", {"order": o, "variant": v}) for o, v in UNIPC_CONFIGS],
)
@pytest.mark.parametrize("steps", [1, 2, 5, 40])
def test_every_sampler_lands_on_the_data_given_an_oracle_denoiser(name, options, steps):
    g = _gen(2)
    x0 = torch.randn(2, 4, 3, 6, generator=g)
    eps = torch.randn(2, 4, 3, 6, generator=g)
    out = get_sampler(name)(lambda x, sigma: x0, eps, flow_sigmas(steps, shift=5.0), **options)
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)


# Convergence on the Gaussian field


def test_gaussian_closed_form_solves_the_probability_flow_ode():
    data = GaussianData(dim=6, seed=3)
    z = torch.randn(4, 6, generator=_gen(3), dtype=torch.float64)
    for sigma in (0.9, 0.5, 0.1):
        x = data.trajectory(z, sigma)
        h = 1e-5
        derivative = (data.trajectory(z, sigma + h) - data.trajectory(z, sigma - h)) / (2 * h)
        velocity = (x - data.denoiser(x, torch.full((4,), sigma, dtype=torch.float64))) / sigma
        torch.testing.assert_close(derivative, velocity, atol=1e-8, rtol=0)
    torch.testing.assert_close(data.trajectory(z, 0.0), data.mu + data.s * z)


def _gaussian_errors(sampler, step_counts, seed=4, **options):
    data = GaussianData(dim=16, seed=seed)
    z = torch.randn(8, 16, generator=_gen(seed), dtype=torch.float64)
    exact = data.mu + data.s * z
    errors = []
    for steps in step_counts:
        sigmas = flow_sigmas(steps, shift=5.0, dtype=torch.float64)
        errors.append(_rms(sampler(data.denoiser, z, sigmas, **options), exact))
    return errors


def test_euler_error_halves_when_steps_double():
    errors = _gaussian_errors(sample_euler, [20, 40, 80])
    for coarse, fine in zip(errors[:-1], errors[1:], strict=True):
        assert 0.8 <= _observed_order(coarse, fine) <= 1.3, errors


def test_unipc_order_two_converges_at_second_order_from_pure_noise_to_data():
    # The sigma=1 and sigma=0 endpoints are taken at first order (lambda is infinite there), which
    # caps the global order at 2; with shift 5 the last sigmas are ~5/steps, so the asymptotic
    # regime starts above ~100 steps (below that the error falls irregularly but fast).
    errors = _gaussian_errors(sample_unipc, [160, 320, 640], order=2)
    for coarse, fine in zip(errors[:-1], errors[1:], strict=True):
        assert _observed_order(coarse, fine) >= 1.7, errors


def test_unipc_beats_euler_by_a_wide_margin_at_equal_model_calls():
    euler = _gaussian_errors(sample_euler, [20, 40])
    unipc = _gaussian_errors(sample_unipc, [20, 40])
    assert unipc[0] * 3 < euler[0], (unipc, euler)
    assert unipc[1] * 8 < euler[1], (unipc, euler)  # Harmony's 40 steps


@pytest.mark.parametrize(("order", "variant"), UNIPC_CONFIGS)
def test_unipc_predictor_corrector_has_order_one_above_the_predictor_away_from_the_endpoints(order, variant):
    # Between sigma = 0.9 and 0.05 every lambda is finite, so UniP-p + UniC-p reaches order p + 1
    # (Zhao et al. 2023, Thm 3.1); without the corrector it would be order p.
    data = GaussianData(dim=16, seed=5)
    z = torch.randn(8, 16, generator=_gen(5), dtype=torch.float64)
    errors = []
    for steps in (40, 80):
        sigmas = torch.linspace(0.9, 0.05, steps + 1, dtype=torch.float64)
        out = sample_unipc(data.denoiser, data.trajectory(z, 0.9), sigmas, order=order, variant=variant)
        errors.append(_rms(out, data.trajectory(z, 0.05)))
    assert _observed_order(*errors) >= order + 0.6, errors


def test_heun_is_second_order_away_from_the_endpoints():
    data = GaussianData(dim=16, seed=6)
    z = torch.randn(8, 16, generator=_gen(6), dtype=torch.float64)
    errors = []
    for steps in (20, 40):
        sigmas = torch.linspace(0.9, 0.05, steps + 1, dtype=torch.float64)
        errors.append(_rms(sample_heun(data.denoiser, data.trajectory(z, 0.9), sigmas), data.trajectory(z, 0.05)))
    assert 1.7 <= _observed_order(*errors) <= 2.4, errors


# UniPC endpoints


@pytest.mark.parametrize(("order", "variant"), UNIPC_CONFIGS)
@pytest.mark.parametrize("steps", [1, 2, 3, 8, 40])
def test_unipc_is_finite_from_sigma_exactly_one_to_sigma_exactly_zero(order, variant, steps):
    data = GaussianData(dim=8, seed=7)
    z = torch.randn(3, 8, generator=_gen(7))
    sigmas = flow_sigmas(steps, shift=5.0)
    assert sigmas[0].item() == 1.0 and sigmas[-1].item() == 0.0

    def model(x, sigma):
        return data.denoiser(x.double(), sigma.double()).float()

    out = sample_unipc(model, z, sigmas, order=order, variant=variant)
    assert bool(torch.isfinite(out).all())


def test_unipc_step_from_pure_noise_is_the_ddim_step_and_the_last_step_returns_denoised():
    data = GaussianData(dim=8, seed=8)
    z = torch.randn(3, 8, generator=_gen(8), dtype=torch.float64)
    sigmas = torch.tensor([1.0, 0.7, 0.4, 0.0], dtype=torch.float64)
    seen = []
    out = sample_unipc(data.denoiser, z, sigmas, callback=seen.append)
    first = seen[0]["denoised"]
    # sigma=1 -> 0.7: x = sigma_next * x + (1 - sigma_next) * denoised, uncorrected (lambda_1 = -inf).
    torch.testing.assert_close(seen[1]["x"], 0.7 * z + 0.3 * first, atol=1e-15, rtol=0)
    assert torch.equal(out, seen[-1]["denoised"])


# Contract: callback, extra_args, registry, validation


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_callback_gets_the_documented_keys_once_per_step_with_the_state_before_the_update(name):
    x = torch.randn(2, 3, 4, generator=_gen(9))
    sigmas = flow_sigmas(6, shift=5.0)
    seen = []
    get_sampler(name)(lambda x, sigma: 0.5 * x, x, sigmas, callback=seen.append)
    assert [payload["i"] for payload in seen] == list(range(6))
    for i, payload in enumerate(seen):
        assert set(payload) == {"i", "sigma", "sigma_next", "x", "denoised"}
        assert payload["sigma"].item() == sigmas[i].item()
        assert payload["sigma_next"].item() == sigmas[i + 1].item()
    assert torch.equal(seen[0]["x"], x)
    torch.testing.assert_close(seen[0]["denoised"], 0.5 * x)


@pytest.mark.parametrize(("name", "calls"), [("euler", 5), ("heun", 9), ("unipc", 5)])
def test_samplers_pass_extra_args_and_a_per_sample_sigma_to_every_model_call(name, calls):
    x = torch.randn(3, 2, 5, generator=_gen(10))
    context = torch.ones(3, 7)
    sigmas = flow_sigmas(5, shift=5.0)
    log = []

    def model(x_in, sigma, *, context, flag):
        log.append((sigma.clone(), context, flag))
        assert x_in.shape == x.shape
        return 0.9 * x_in

    get_sampler(name)(model, x, sigmas, extra_args={"context": context, "flag": "on"}, disable=True)
    assert len(log) == calls
    for sigma, ctx, flag in log:
        assert ctx is context and flag == "on"
        assert sigma.shape == (3,) and sigma.dtype == torch.float32
        assert bool((sigma == sigma[0]).all()) and 0.0 < sigma[0].item() <= 1.0
    assert [s[0].item() for s, _, _ in log[:: 2 if name == "heun" else 1]] == sigmas[:-1].tolist()


def test_get_sampler_rejects_unknown_names_listing_the_valid_ones():
    assert get_sampler("unipc") is sample_unipc
    with pytest.raises(ValueError) as info:
        get_sampler("dpmpp_2m")
    for name in ("euler", "heun", "unipc"):
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("options", "match"), [({"order": 4}, "order"), ({"order": 0}, "order"), ({"variant": "bh3"}, "variant")]
)
def test_unipc_rejects_unsupported_order_and_variant(options, match):
    with pytest.raises(ValueError, match=match):
        sample_unipc(lambda x, s: x, torch.zeros(1, 2), flow_sigmas(3), **options)


@pytest.mark.parametrize(
    "sigmas",
    [torch.tensor([0.0, 0.5, 1.0]), torch.tensor([1.5, 0.5, 0.0]), torch.tensor([1.0, 0.0, 0.0]), torch.ones(2, 2)],
)
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_reject_schedules_that_do_not_run_from_noise_to_data(name, sigmas):
    with pytest.raises(ValueError, match="sigma"):
        get_sampler(name)(lambda x, s: x, torch.zeros(1, 2), sigmas)
