"""Tests for harmony_core.sampling.schedules: the time convention, shifted schedules, training sigmas."""

from __future__ import annotations

import pytest
import torch

from harmony_core.sampling.schedules import (
    DEFAULT_SHIFT,
    DEFAULT_STEPS,
    append_dims,
    denoised_from_velocity,
    flow_sigmas,
    noise_latent,
    sample_training_sigmas,
    shift_sigma,
    sigma_to_t,
    t_to_sigma,
    velocity_from_denoised,
    velocity_target,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# shift_sigma


def test_defaults_match_the_paper_appendix_b():
    # Harmony App. B: flow matching with shift 5, 40 sampling steps.
    assert DEFAULT_SHIFT == 5.0
    assert DEFAULT_STEPS == 40


def test_shift_of_one_is_the_identity():
    s = torch.linspace(0, 1, 101, dtype=torch.float64)
    assert torch.equal(shift_sigma(s, 1.0), s)


@pytest.mark.parametrize("shift", [0.3, 1.0, 3.0, 5.0, 12.0])
def test_shift_fixes_the_endpoints_and_is_increasing(shift):
    s = torch.linspace(0, 1, 257, dtype=torch.float64)
    out = shift_sigma(s, shift)
    assert out[0].item() == 0.0
    assert out[-1].item() == 1.0
    assert bool((out[1:] > out[:-1]).all())


def test_shift_five_maps_one_half_to_five_sixths():
    # By hand: 5 * 0.5 / (1 + 4 * 0.5) = 2.5 / 3 = 5/6.
    assert shift_sigma(0.5, 5.0) == pytest.approx(5 / 6, abs=1e-15)


def test_shift_multiplies_the_noise_odds_by_the_shift():
    # sigma' / (1 - sigma') = shift * sigma / (1 - sigma): an independent characterisation of the formula,
    # which also means shifts compose by multiplication.
    s = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    out = shift_sigma(s, 5.0)
    torch.testing.assert_close(out / (1 - out), 5.0 * s / (1 - s))
    torch.testing.assert_close(shift_sigma(shift_sigma(s, 2.0), 3.0), shift_sigma(s, 6.0))


def test_shift_accepts_floats_and_keeps_tensor_shapes():
    assert isinstance(shift_sigma(0.25, 3.0), float)
    s = torch.rand(2, 3, generator=_gen())
    assert shift_sigma(s, 3.0).shape == (2, 3)


@pytest.mark.parametrize("shift", [0.0, -1.0, float("nan"), float("inf")])
def test_shift_rejects_non_positive_or_non_finite_shift(shift):
    with pytest.raises(ValueError, match="shift"):
        shift_sigma(0.5, shift)


# flow_sigmas


@pytest.mark.parametrize("steps", [1, 2, 7, 40])
@pytest.mark.parametrize("shift", [1.0, 5.0])
def test_flow_sigmas_has_steps_plus_one_strictly_decreasing_entries_from_one_to_exact_zero(steps, shift):
    sigmas = flow_sigmas(steps, shift=shift)
    assert sigmas.shape == (steps + 1,)
    assert sigmas.dtype == torch.float32
    assert sigmas[0].item() == 1.0
    assert sigmas[-1].item() == 0.0
    assert bool((sigmas[1:] < sigmas[:-1]).all())


def test_flow_sigmas_without_shift_is_the_uniform_grid():
    torch.testing.assert_close(
        flow_sigmas(8, shift=1.0, dtype=torch.float64), torch.linspace(1, 0, 9, dtype=torch.float64)
    )


def test_flow_sigmas_shifts_a_linear_grid_and_starts_at_shifted_sigma_max():
    sigmas = flow_sigmas(4, shift=5.0, sigma_max=0.8, sigma_min=0.0, dtype=torch.float64)
    grid = torch.tensor([0.8, 0.6, 0.4, 0.2], dtype=torch.float64)
    expected = torch.cat([5 * grid / (1 + 4 * grid), torch.zeros(1, dtype=torch.float64)])
    torch.testing.assert_close(sigmas, expected)


def test_flow_sigmas_with_positive_sigma_min_still_ends_in_exact_zero():
    sigmas = flow_sigmas(10, shift=5.0, sigma_min=0.1, dtype=torch.float64)
    assert sigmas[-1].item() == 0.0
    assert sigmas[-2].item() == pytest.approx(shift_sigma(0.1 + 0.9 / 10, 5.0))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"steps": 0}, ValueError),
        ({"steps": -3}, ValueError),
        ({"steps": 2.5}, TypeError),
        ({"steps": True}, TypeError),
        ({"steps": 10, "shift": 0.0}, ValueError),
        ({"steps": 10, "sigma_max": 1.5}, ValueError),
        ({"steps": 10, "sigma_min": 0.5, "sigma_max": 0.5}, ValueError),
        ({"steps": 10, "dtype": torch.int64}, TypeError),
    ],
)
def test_flow_sigmas_rejects_bad_arguments_up_front(kwargs, error):
    with pytest.raises(error):
        flow_sigmas(**kwargs)


# Conversions


def test_round_trip_through_velocity_reproduces_data_in_float32():
    g = _gen(1)
    x0 = torch.randn(4, 3, 5, 6, generator=g)
    eps = torch.randn(4, 3, 5, 6, generator=g)
    sigma = torch.tensor([0.0, 0.3, 0.77, 1.0])
    x = noise_latent(x0, eps, sigma)
    out = denoised_from_velocity(x, velocity_target(x0, eps), sigma)
    torch.testing.assert_close(out, x0, atol=1e-6, rtol=0)


@pytest.mark.parametrize("sigma", [0.0, 0.125, 0.25, 0.5, 0.75, 1.0])
def test_round_trip_is_exact_in_float64_for_dyadic_sigmas(sigma):
    # Data and noise on a 1/8 grid so every product and sum is exactly representable.
    g = _gen(2)
    x0 = torch.randint(-64, 64, (3, 2, 7), generator=g).double() / 8
    eps = torch.randint(-64, 64, (3, 2, 7), generator=g).double() / 8
    x = noise_latent(x0, eps, sigma)
    assert torch.equal(denoised_from_velocity(x, velocity_target(x0, eps), sigma), x0)


def test_noise_latent_interpolates_data_at_zero_and_noise_at_one():
    g = _gen(3)
    x0, eps = torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g)
    assert torch.equal(noise_latent(x0, eps, 0.0), x0)
    assert torch.equal(noise_latent(x0, eps, 1.0), eps)


def test_per_sample_sigma_matches_applying_each_sigma_separately():
    g = _gen(4)
    x0, eps = torch.randn(3, 2, 5, generator=g), torch.randn(3, 2, 5, generator=g)
    sigma = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)  # dtype follows the latent, not sigma
    out = noise_latent(x0, eps, sigma)
    assert out.dtype == torch.float32
    for b in range(3):
        torch.testing.assert_close(out[b], noise_latent(x0[b : b + 1], eps[b : b + 1], sigma[b].item())[0])


def test_velocity_from_denoised_inverts_denoised_from_velocity():
    g = _gen(5)
    x, v = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    sigma = torch.tensor([0.2, 0.9])
    torch.testing.assert_close(velocity_from_denoised(x, denoised_from_velocity(x, v, sigma), sigma), v)


@pytest.mark.parametrize("sigma", [0.0, torch.tensor([0.5, 0.0])])
def test_velocity_from_denoised_refuses_sigma_zero(sigma):
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="sigma=0"):
        velocity_from_denoised(x, x, sigma)


def test_conversions_reject_mismatched_shapes_and_batch_sizes():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="shape"):
        noise_latent(x, torch.zeros(2, 4), 0.5)
    with pytest.raises(ValueError, match="per-sample"):
        noise_latent(x, x, torch.tensor([0.1, 0.2, 0.3]))


def test_append_dims_adds_trailing_singletons_and_rejects_shrinking():
    assert append_dims(torch.zeros(4), 5).shape == (4, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="target_ndim"):
        append_dims(torch.zeros(2, 2), 1)


def test_model_time_is_sigma_times_one_thousand_and_round_trips():
    assert sigma_to_t(0.5) == 500.0
    assert t_to_sigma(250.0) == 0.25
    s = torch.rand(10, generator=_gen(6), dtype=torch.float64)
    torch.testing.assert_close(t_to_sigma(sigma_to_t(s)), s)
    with pytest.raises(ValueError, match="scale"):
        sigma_to_t(0.5, scale=0.0)


# Training sigmas


@pytest.mark.parametrize("distribution", ["uniform", "logit_normal"])
def test_training_sigmas_are_reproducible_from_the_generator_and_inside_the_open_interval(distribution):
    a = sample_training_sigmas(4096, generator=_gen(7), distribution=distribution)
    b = sample_training_sigmas(4096, generator=_gen(7), distribution=distribution)
    assert torch.equal(a, b)
    assert a.shape == (4096,) and a.dtype == torch.float32
    assert bool((a > 0).all()) and bool((a <= 1).all())


def test_unshifted_uniform_training_sigmas_have_the_uniform_distribution():
    s = sample_training_sigmas(20000, generator=_gen(8), shift=1.0).double()
    # U(0,1): mean 1/2, variance 1/12; standard error of the mean is ~0.002.
    assert s.mean().item() == pytest.approx(0.5, abs=0.01)
    assert s.var().item() == pytest.approx(1 / 12, abs=0.005)


@pytest.mark.parametrize("distribution", ["uniform", "logit_normal"])
def test_shifted_training_sigmas_have_their_median_at_the_shifted_median(distribution):
    # Both base distributions have median 1/2 and the shift is increasing, so P(sigma < shift(1/2)) = 1/2.
    s = sample_training_sigmas(20000, generator=_gen(9), shift=5.0, distribution=distribution)
    assert (s < 5 / 6).double().mean().item() == pytest.approx(0.5, abs=0.015)


def test_unshifted_logit_normal_sigmas_have_standard_normal_logits():
    s = sample_training_sigmas(20000, generator=_gen(10), shift=1.0, distribution="logit_normal").double()
    logits = torch.log(s / (1 - s))
    assert logits.mean().item() == pytest.approx(0.0, abs=0.03)
    assert logits.std().item() == pytest.approx(1.0, abs=0.03)


def test_training_sigmas_reject_unknown_distribution_missing_generator_and_bad_n():
    with pytest.raises(ValueError, match="logit_normal"):
        sample_training_sigmas(4, generator=_gen(), distribution="cosine")
    with pytest.raises(TypeError, match="torch.Generator"):
        sample_training_sigmas(4, generator=None)
    with pytest.raises(ValueError, match="n=0"):
        sample_training_sigmas(0, generator=_gen())


def test_training_sigmas_do_not_touch_the_global_rng():
    with torch.random.fork_rng():
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        sample_training_sigmas(16, generator=_gen(11))
        assert torch.equal(torch.rand(3), expected)
