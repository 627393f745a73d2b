"""The one definition of Harmony's time convention, plus shifted flow-matching schedules.

Convention (rectified flow, as in Wan2.2 and SD3; used everywhere in harmony_core):

* ``sigma`` lies in ``[0, 1]``; ``sigma = 1`` is pure noise and ``sigma = 0`` is data.
* Forward process: ``x_sigma = (1 - sigma) * x0 + sigma * eps`` with ``eps ~ N(0, I)``.
* The network predicts the velocity ``v = eps - x0`` (so ``dx_sigma / dsigma = v``).
* Denoised estimate: ``x0 = x_sigma - sigma * v``; conversely ``v = (x_sigma - x0) / sigma``.
* Model time (the number fed to the time embedding) is ``t = sigma * 1000`` (Wan).

Samplers walk ``sigmas`` from high to low (1 -> 0). Code written in the opposite convention
(flow_matching's ``t = 0`` noise / ``t = 1`` data, or MMAudio) converts at its boundary with
``sigma = 1 - t_fm``; nothing inside harmony_core re-derives these formulas.

The Harmony paper (arXiv 2511.21579, App. B) trains with flow matching and shift 5 and samples
with 40 steps at shift 5; :data:`DEFAULT_SHIFT` and :data:`DEFAULT_STEPS` record those numbers.
"""

from __future__ import annotations

import logging
import math
import numbers

import torch

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SHIFT",
    "DEFAULT_STEPS",
    "TRAINING_DISTRIBUTIONS",
    "T_SCALE",
    "append_dims",
    "denoised_from_velocity",
    "flow_sigmas",
    "noise_latent",
    "sample_training_sigmas",
    "shift_sigma",
    "sigma_to_t",
    "t_to_sigma",
    "velocity_from_denoised",
    "velocity_target",
]

DEFAULT_SHIFT = 5.0  # Harmony App. B: flow matching with shift 5 (training and sampling).
DEFAULT_STEPS = 40  # Harmony App. B: 40 sampling steps.
T_SCALE = 1000.0  # Wan: model timestep t = sigma * 1000.
TRAINING_DISTRIBUTIONS = ("uniform", "logit_normal")


# Helpers


def append_dims(x: torch.Tensor, target_ndim: int) -> torch.Tensor:
    """Append trailing singleton dims so a per-sample tensor broadcasts against ``[B, ...]``.

    Args:
        x: Tensor ``[B]`` (or 0-d, or any tensor with at most ``target_ndim`` dims).
        target_ndim: Number of dims of the tensor ``x`` will be broadcast against.

    Returns:
        A view of ``x`` shaped ``[B, 1, ..., 1]`` with ``target_ndim`` dims.

    Raises:
        ValueError: If ``x`` already has more than ``target_ndim`` dims.
    """
    extra = target_ndim - x.ndim
    if extra < 0:
        raise ValueError(
            f"append_dims: input has {x.ndim} dims but target_ndim={target_ndim} is smaller. "
            "Pass the ndim of the tensor you broadcast against."
        )
    return x[(...,) + (None,) * extra]


def _check_positive(name: str, value: float, fix: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} has type {type(value).__name__}: expected a real number. {fix}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} is invalid: expected a finite value > 0. {fix}")


def _broadcast_sigma(sigma: float | torch.Tensor, like: torch.Tensor) -> float | torch.Tensor:
    """Return ``sigma`` as a Python float, or as a tensor ``[B, 1, ...]`` matching ``like``'s dtype and device."""
    if not isinstance(sigma, torch.Tensor):
        if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
            raise TypeError(f"sigma={sigma!r} has type {type(sigma).__name__}: expected a float or a tensor [B].")
        return float(sigma)
    batch = like.shape[0] if like.ndim > 0 else 1
    if sigma.ndim > 1 or (sigma.ndim == 1 and sigma.shape[0] not in (1, batch)):
        raise ValueError(
            f"sigma has shape {tuple(sigma.shape)} but the latent has shape {tuple(like.shape)}: expected a "
            f"scalar or a per-sample tensor [B] with B={batch}. Pass one sigma per batch item."
        )
    return append_dims(sigma.to(device=like.device, dtype=like.dtype), like.ndim)


def _check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}: expected equal "
            f"shapes. Pass {name_b} with the same layout as {name_a}."
        )


# Schedules


def shift_sigma(sigma: float | torch.Tensor, shift: float) -> float | torch.Tensor:
    """Apply the SD3/Wan timestep shift ``shift * s / (1 + (shift - 1) * s)``.

    This is ComfyUI's ``time_snr_shift``: it fixes 0 and 1, is increasing in ``s``, and for
    ``shift > 1`` moves every intermediate sigma towards noise (``shift = 1`` is the identity).

    Args:
        sigma: Unshifted sigma(s) in ``[0, 1]``: a float or a tensor of any shape.
        shift: Shift factor, > 0 (Harmony uses 5).

    Returns:
        The shifted sigma(s), same type and shape as ``sigma``.

    Raises:
        ValueError: If ``shift`` is not a finite positive number.
    """
    _check_positive("shift", shift, "Use the model's shift (Harmony/Wan: 5.0); 1.0 disables shifting.")
    # Same map written as "multiply the noise odds sigma/(1-sigma) by shift": unlike the textbook
    # form it returns exactly 0 and 1 at the endpoints for every shift (and s itself for shift=1).
    return sigma / (sigma + (1 - sigma) / shift)


def flow_sigmas(
    steps: int,
    *,
    shift: float = DEFAULT_SHIFT,
    sigma_max: float = 1.0,
    sigma_min: float = 0.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Shifted flow-matching sampling schedule ending in an exact zero (Wan2.2 / SD3 style).

    The unshifted grid is ``steps + 1`` equally spaced values from ``sigma_max`` down to
    ``sigma_min``; its first ``steps`` values are shifted with :func:`shift_sigma` and an
    exact ``0.0`` is appended, so the last step always lands on clean data.

    Args:
        steps: Number of sampling steps (model evaluations for Euler), >= 1.
        shift: Timestep shift, > 0 (Harmony App. B: 5).
        sigma_max: Unshifted start, in ``(sigma_min, 1]``; 1.0 starts from pure noise.
        sigma_min: Unshifted end of the grid before the final zero, in ``[0, sigma_max)``.
        device: Device of the returned tensor.
        dtype: Floating dtype of the returned tensor (computed in float64, then cast).

    Returns:
        Tensor ``[steps + 1]``, strictly decreasing, first entry ``shift_sigma(sigma_max)``,
        last entry exactly 0.

    Raises:
        TypeError: If ``steps`` is not an int or ``dtype`` is not floating point.
        ValueError: If ``steps < 1`` or the sigma range or shift is invalid.
    """
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise TypeError(f"steps={steps!r} has type {type(steps).__name__}: expected an int >= 1.")
    if steps < 1:
        raise ValueError(f"steps={steps} is invalid: expected >= 1. Harmony's default is {DEFAULT_STEPS}.")
    _check_positive("shift", shift, "Use the model's shift (Harmony/Wan: 5.0); 1.0 disables shifting.")
    if not (0.0 <= sigma_min < sigma_max <= 1.0):
        raise ValueError(
            f"sigma_max={sigma_max!r}, sigma_min={sigma_min!r} is invalid: expected 0 <= sigma_min < sigma_max <= 1. "
            "Use sigma_max=1.0 to start from pure noise and sigma_min=0.0 to run to the end."
        )
    if not dtype.is_floating_point:
        raise TypeError(f"dtype={dtype} is invalid: expected a floating dtype such as torch.float32.")
    grid = torch.linspace(sigma_max, sigma_min, steps + 1, dtype=torch.float64)[:-1]
    sigmas = torch.cat([shift_sigma(grid, shift), grid.new_zeros(1)])
    sigmas = sigmas.to(device=device, dtype=dtype)
    if not bool((sigmas[1:] < sigmas[:-1]).all()):
        raise ValueError(
            f"flow_sigmas(steps={steps}, shift={shift}) is not strictly decreasing in {dtype}: the steps are "
            "finer than the dtype resolves. Use fewer steps or dtype=torch.float32/float64."
        )
    return sigmas


# Conversions between data, noise, velocity and denoised


def noise_latent(x0: torch.Tensor, eps: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Forward process ``x_sigma = (1 - sigma) * x0 + sigma * eps``.

    Args:
        x0: Clean latent ``[B, ...]`` (e.g. ``[B, C, T_v, H, W]`` or ``[B, C, T_a]``).
        eps: Gaussian noise ``[B, ...]``, same shape as ``x0``.
        sigma: Noise level in ``[0, 1]``: a float, a 0-d tensor, or a per-sample tensor ``[B]``.

    Returns:
        Noisy latent ``[B, ...]`` with ``x0``'s shape and dtype.
    """
    _check_same_shape("x0", x0, "eps", eps)
    s = _broadcast_sigma(sigma, x0)
    return (1 - s) * x0 + s * eps


def velocity_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Flow-matching regression target ``v = eps - x0`` (independent of sigma).

    Args:
        x0: Clean latent ``[B, ...]``.
        eps: Noise ``[B, ...]`` used in :func:`noise_latent`, same shape.

    Returns:
        Velocity ``[B, ...]``.
    """
    _check_same_shape("x0", x0, "eps", eps)
    return eps - x0


def denoised_from_velocity(x: torch.Tensor, v: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Data estimate ``x0 = x - sigma * v`` from a velocity prediction. Valid for every sigma in ``[0, 1]``.

    Args:
        x: Noisy latent ``[B, ...]`` at noise level ``sigma``.
        v: Predicted velocity ``[B, ...]``, same shape.
        sigma: Float, 0-d tensor or per-sample tensor ``[B]``.

    Returns:
        Denoised latent ``[B, ...]``.
    """
    _check_same_shape("x", x, "v", v)
    return x - _broadcast_sigma(sigma, x) * v


def velocity_from_denoised(x: torch.Tensor, denoised: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Velocity ``v = (x - x0) / sigma`` from a data estimate; this is also the ODE derivative ``dx/dsigma``.

    At ``sigma = 0`` the velocity is not determined by ``(x, x0)`` (both are the data), so
    every sigma must be > 0. For a tensor ``sigma`` this check reads the values back to the
    host (one device sync).

    Args:
        x: Noisy latent ``[B, ...]``.
        denoised: Data estimate ``[B, ...]``, same shape.
        sigma: Float, 0-d tensor or per-sample tensor ``[B]``, all > 0.

    Returns:
        Velocity ``[B, ...]``.

    Raises:
        ValueError: If any sigma is <= 0.
    """
    _check_same_shape("x", x, "denoised", denoised)
    s = _broadcast_sigma(sigma, x)
    if (isinstance(s, float) and s <= 0) or (isinstance(s, torch.Tensor) and bool((s <= 0).any())):
        raise ValueError(
            f"velocity_from_denoised got sigma={sigma!r}: expected every sigma > 0, because the velocity is "
            "undefined at sigma=0. Stop the conversion before the final sigma=0 step (return denoised there)."
        )
    return (x - denoised) / s


def sigma_to_t(sigma: float | torch.Tensor, scale: float = T_SCALE) -> float | torch.Tensor:
    """Model time ``t = sigma * scale`` (Wan feeds ``t`` in ``[0, 1000]`` to its time embedding).

    Args:
        sigma: Float or tensor of any shape, in ``[0, 1]``.
        scale: Time scale, > 0 (1000 for Wan-family models).

    Returns:
        ``t`` with ``sigma``'s type and shape.
    """
    _check_positive("scale", scale, f"Use {T_SCALE} for Wan-family models.")
    return sigma * scale


def t_to_sigma(t: float | torch.Tensor, scale: float = T_SCALE) -> float | torch.Tensor:
    """Inverse of :func:`sigma_to_t`: ``sigma = t / scale``.

    Args:
        t: Float or tensor of any shape, in ``[0, scale]``.
        scale: Time scale, > 0.

    Returns:
        ``sigma`` with ``t``'s type and shape.
    """
    _check_positive("scale", scale, f"Use {T_SCALE} for Wan-family models.")
    return t / scale


# Training


def sample_training_sigmas(
    n: int,
    *,
    generator: torch.Generator,
    shift: float = DEFAULT_SHIFT,
    distribution: str = "uniform",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Draw per-sample training noise levels, then shift them (SD3/Wan-style shifted flow matching).

    ``"uniform"`` draws ``u ~ U(0, 1)`` (open interval: the midpoints of torch's 2^-24 grid);
    ``"logit_normal"`` draws ``u = sigmoid(z)``, ``z ~ N(0, 1)`` (SD3). The result is
    ``shift_sigma(u, shift)``. Draws happen on the generator's device, so a seed gives the same
    sigmas whatever ``device`` is.

    Args:
        n: Number of sigmas (batch size B), >= 1.
        generator: Source of randomness (required; no global RNG is used).
        shift: Timestep shift, > 0 (Harmony App. B: 5).
        distribution: One of :data:`TRAINING_DISTRIBUTIONS`.
        device: Device of the result; None keeps the generator's device.
        dtype: Floating dtype of the result (computed in float64).

    Returns:
        Tensor ``[B]`` of sigmas in ``(0, 1]`` (1 only through rounding to ``dtype``).

    Raises:
        TypeError: If ``generator`` is not a ``torch.Generator`` or ``n`` is not an int.
        ValueError: If ``n < 1``, ``shift <= 0`` or ``distribution`` is unknown.
    """
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator={generator!r} is invalid: expected a torch.Generator. "
            "Create one with torch.Generator().manual_seed(seed)."
        )
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n={n!r} is invalid: expected an int >= 1 (the batch size).")
    _check_positive("shift", shift, "Use the training shift (Harmony App. B: 5.0); 1.0 disables shifting.")
    if distribution not in TRAINING_DISTRIBUTIONS:
        raise ValueError(f"distribution={distribution!r} is unknown: expected one of {list(TRAINING_DISTRIBUTIONS)}.")
    if distribution == "uniform":
        # torch.rand(float32) returns multiples of 2^-24 in [0, 1); the cell midpoints lie in (0, 1).
        u = torch.rand(n, generator=generator, device=generator.device, dtype=torch.float32)
        u = u.double() + 2.0**-25
    else:
        u = torch.sigmoid(torch.randn(n, generator=generator, device=generator.device, dtype=torch.float64))
    return shift_sigma(u, shift).to(device=device, dtype=dtype)
