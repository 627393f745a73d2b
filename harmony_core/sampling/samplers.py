"""Deterministic ODE samplers for the rectified-flow convention of :mod:`.schedules`.

Every sampler is a plain function with the k-diffusion signature, so ``nodes/_comfy.py`` can
wrap it in ComfyUI's ``KSAMPLER`` unchanged::

    x = sample_euler(model, x, sigmas, extra_args=..., callback=..., disable=...)

Model contract: ``model(x, sigma_batch, **extra_args) -> denoised`` where ``x`` is a float
tensor ``[B, ...]`` (the video and audio streams packed into one tensor by the denoiser),
``sigma_batch`` is ``[B]`` (every entry equal to the current sigma) and ``denoised`` is the
``x0`` estimate with ``x``'s shape. ``sigmas`` is a decreasing 1-D schedule such as
:func:`.schedules.flow_sigmas`.

The callback, if given, is called once per step with the dict
``{"i", "sigma", "sigma_next", "x", "denoised"}``, where ``x`` is the state *before* step
``i``'s update (as in k-diffusion) and ``denoised`` the model output at that state.
Progress bars are the caller's business (via the callback); ``disable`` is accepted only
because ComfyUI passes it, and ``generator`` only so that every harmony sampler shares one
signature (these ODE samplers draw no noise).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable
from typing import Any

import torch

from .schedules import velocity_from_denoised

log = logging.getLogger(__name__)

__all__ = [
    "SAMPLERS",
    "Denoiser",
    "StepCallback",
    "UNIPC_VARIANTS",
    "get_sampler",
    "sample_euler",
    "sample_heun",
    "sample_unipc",
    "to_d",
]

Denoiser = Callable[..., torch.Tensor]
StepCallback = Callable[[dict[str, Any]], None]
UNIPC_VARIANTS = ("bh1", "bh2")


# Helpers


def to_d(x: torch.Tensor, sigma: float | torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """ODE derivative ``dx/dsigma = (x - denoised) / sigma``, which is the flow velocity ``v``.

    Args:
        x: State ``[B, ...]`` at noise level ``sigma``.
        sigma: Float or per-sample tensor ``[B]``, > 0.
        denoised: Model output ``[B, ...]`` at ``(x, sigma)``.

    Returns:
        Derivative ``[B, ...]``.
    """
    return velocity_from_denoised(x, denoised, sigma)


def _check_inputs(name: str, x: torch.Tensor, sigmas: torch.Tensor, *, strict: bool) -> list[float]:
    """Validate ``x [B, ...]`` and ``sigmas [S]``; return the sigmas as Python floats."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 1:
        raise TypeError(
            f"{name}: x must be a floating-point tensor [B, ...]; got {type(x).__name__} "
            f"{getattr(x, 'shape', '')}. Pass the packed latent."
        )
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or sigmas.numel() < 1:
        raise ValueError(
            f"{name}: sigmas must be a 1-D tensor with at least one entry; got "
            f"{getattr(sigmas, 'shape', sigmas)}. Build it with flow_sigmas(steps)."
        )
    values = [float(s) for s in sigmas.tolist()]
    if not all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in values):
        raise ValueError(
            f"{name}: sigmas must lie in [0, 1] (1 = noise, 0 = data); got {values}. "
            "Rescale t-convention schedules with t_to_sigma."
        )
    steps = list(itertools.pairwise(values))
    bad = [(a, b) for a, b in steps if (b >= a if strict else b > a)]
    if bad:
        need = "strictly decreasing" if strict else "non-increasing"
        raise ValueError(
            f"{name}: sigmas must be {need}; found the step(s) {bad[:3]}. "
            "Samplers integrate from noise (high sigma) to data (sigma=0)."
        )
    if any(s == 0.0 for s in values[:-1]):
        raise ValueError(f"{name}: sigma=0 may only be the last entry; got {values}.")
    return values


def _sigma_batch(x: torch.Tensor, sigma: float, sigmas: torch.Tensor) -> torch.Tensor:
    """Per-sample sigma ``[B]`` on ``x``'s device in the schedule's dtype (not x's: bf16 would round 0.999 to 1)."""
    dtype = sigmas.dtype if sigmas.is_floating_point() else torch.float32
    return torch.full((x.shape[0],), sigma, dtype=dtype, device=x.device)


def _report(
    callback: StepCallback | None, i: int, sigmas: torch.Tensor, x: torch.Tensor, denoised: torch.Tensor
) -> None:
    if callback is not None:
        callback({"i": i, "sigma": sigmas[i], "sigma_next": sigmas[i + 1], "x": x, "denoised": denoised})


# Euler and Heun


@torch.no_grad()
def sample_euler(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: StepCallback | None = None,
    disable: bool | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Euler's method on the probability-flow ODE (Karras et al. 2022, Alg. 2 without churn).

    Args:
        model: Denoiser ``model(x [B, ...], sigma [B], **extra_args) -> x0 [B, ...]``.
        x: Start state ``[B, ...]`` at ``sigmas[0]`` (pure noise when ``sigmas[0] == 1``).
        sigmas: Non-increasing schedule ``[S]`` in ``[0, 1]``; ``S - 1`` steps.
        extra_args: Keyword arguments forwarded to every model call.
        callback: Called once per step with ``{"i", "sigma", "sigma_next", "x", "denoised"}``.
        disable: Ignored (progress-bar flag ComfyUI passes).
        generator: Ignored (deterministic sampler); accepted so all samplers share one signature.

    Returns:
        Final state ``[B, ...]`` at ``sigmas[-1]``.
    """
    sig = _check_inputs("sample_euler", x, sigmas, strict=False)
    extra_args = {} if extra_args is None else extra_args
    for i in range(len(sig) - 1):
        denoised = model(x, _sigma_batch(x, sig[i], sigmas), **extra_args)
        _report(callback, i, sigmas, x, denoised)
        x = x + to_d(x, sig[i], denoised) * (sig[i + 1] - sig[i])
    return x


@torch.no_grad()
def sample_heun(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: StepCallback | None = None,
    disable: bool | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Heun's 2nd-order method (Karras et al. 2022, Alg. 1); the final step to sigma=0 is Euler.

    Two model calls per step except the last; the callback reports the first one.

    Args:
        model: Denoiser ``model(x [B, ...], sigma [B], **extra_args) -> x0 [B, ...]``.
        x: Start state ``[B, ...]`` at ``sigmas[0]``.
        sigmas: Non-increasing schedule ``[S]`` in ``[0, 1]``.
        extra_args: Keyword arguments forwarded to every model call.
        callback: Called once per step with ``{"i", "sigma", "sigma_next", "x", "denoised"}``.
        disable: Ignored (progress-bar flag ComfyUI passes).
        generator: Ignored (deterministic sampler).

    Returns:
        Final state ``[B, ...]`` at ``sigmas[-1]``.
    """
    sig = _check_inputs("sample_heun", x, sigmas, strict=False)
    extra_args = {} if extra_args is None else extra_args
    for i in range(len(sig) - 1):
        sigma, sigma_next = sig[i], sig[i + 1]
        denoised = model(x, _sigma_batch(x, sigma, sigmas), **extra_args)
        _report(callback, i, sigmas, x, denoised)
        d = to_d(x, sigma, denoised)
        x_euler = x + d * (sigma_next - sigma)
        if sigma_next == 0.0 or sigma_next == sigma:
            # The derivative at sigma=0 is undefined (velocity_from_denoised); Euler's last step
            # already lands on `denoised`, as in k-diffusion.
            x = x_euler
            continue
        denoised_next = model(x_euler, _sigma_batch(x, sigma_next, sigmas), **extra_args)
        d_next = to_d(x_euler, sigma_next, denoised_next)
        x = x + (d + d_next) * (0.5 * (sigma_next - sigma))
    return x


# UniPC (Zhao et al. 2023, arXiv 2302.04867), data-prediction form for rectified flow
#
# With alpha = 1 - sigma and lambda = log(alpha / sigma), the exact solution from s to t
# (h = lambda_t - lambda_s > 0) is, in the paper's data-prediction (x0) form,
#     x_t = (sigma_t / sigma_s) x_s + alpha_t * sum_k h^(k+1) phi_(k+1)(-h) x0^(k)(lambda_s),
# phi_1(z) = (e^z - 1)/z, phi_(k+1)(z) = (phi_k(z) - 1/k!)/z. The k = 0 term is the DDIM step
# alpha_t (1 - e^-h) x0_s; higher derivatives are replaced by the differences
# D_m = x0_m - x0_s at points with r_m = (lambda_m - lambda_s) / h, weighted by B(h) a_m / r_m.
# Matching Taylor terms gives the paper's order conditions R a = g / B(h) with
# R[k-1, m] = r_m^(k-1) and g_k = k! h phi_(k+1)(-h), k = 1..M. UniP uses the previous model
# outputs (r_m < 0); UniC adds the fresh output at t (r = 1), raising the order by one.


def _phi(k: int, z: float) -> float:
    """phi_k(z) = sum_j z^j / (j + k)!, the exponential-integrator phi function (k >= 1)."""
    if abs(z) <= 1.0:
        # Series: the recursion below cancels catastrophically for small |z|.
        term, total = 1.0 / math.factorial(k), 0.0
        for j in range(30):
            total += term
            term *= z / (j + k + 1)
        return total
    value = math.expm1(z) / z
    for n in range(1, k):
        value = (value - 1.0 / math.factorial(n)) / z
    return value


def _log_snr(sigma: float) -> float:
    """lambda = log(alpha / sigma) with alpha = 1 - sigma; callers guarantee 0 < sigma < 1."""
    return math.log1p(-sigma) - math.log(sigma)


def _unipc_weights(rs: list[float], h: float, variant: str) -> list[float]:
    """Products B(h) * a_m solving UniPC's order conditions R a = g / B(h) (paper Thm 3.1).

    The data-prediction form mirrors the paper's noise-prediction B(h) under h -> -h: bh1 is
    B(h) = h and bh2 is B(h) = 1 - e^-h. With one unknown, a_1 = 1/2 (the h -> 0 limit of
    g_1 / B(h)): its O(h) error still meets the order condition, since B(h) = O(h). That is the
    only case in which bh1 and bh2 differ. With two or more unknowns the square system is solved
    exactly in float64, so B(h) cancels from the product B(h) * a.
    """
    b_h = h if variant == "bh1" else -math.expm1(-h)
    if len(rs) == 1:
        return [0.5 * b_h]
    size = len(rs)
    lhs = torch.tensor([[r ** (k - 1) for r in rs] for k in range(1, size + 1)], dtype=torch.float64)
    rhs = torch.tensor([math.factorial(k) * h * _phi(k + 1, -h) / b_h for k in range(1, size + 1)], dtype=torch.float64)
    a = torch.linalg.solve(lhs, rhs)
    return [b_h * float(v) for v in a]


def _unipc_update(
    x_s: torch.Tensor,
    denoised_s: torch.Tensor,
    sigma_s: float,
    sigma_t: float,
    points: list[tuple[float, torch.Tensor]],
    variant: str,
) -> torch.Tensor:
    """One UniP (or UniC) update from ``sigma_s`` to ``sigma_t`` using extra points ``[(sigma_m, x0_m)]``.

    With no points this is the exact-in-form DDIM step, written without lambda so it stays
    finite at sigma_s = 1 (alpha_s = 0) and sigma_t = 0. Points require finite lambdas.
    """
    alpha_s, alpha_t = 1.0 - sigma_s, 1.0 - sigma_t
    # alpha_t (1 - e^-h) = alpha_t - sigma_t alpha_s / sigma_s.
    x_t = (sigma_t / sigma_s) * x_s + (alpha_t - sigma_t * alpha_s / sigma_s) * denoised_s
    if not points:
        return x_t
    assert 0.0 < sigma_t < sigma_s < 1.0, (sigma_s, sigma_t)  # finite lambda_s, lambda_t
    lambda_s = _log_snr(sigma_s)
    h = _log_snr(sigma_t) - lambda_s
    rs = [(_log_snr(sigma_m) - lambda_s) / h for sigma_m, _ in points]
    for weight, r, (_, denoised_m) in zip(_unipc_weights(rs, h, variant), rs, points):
        x_t = x_t + (alpha_t * weight / r) * (denoised_m - denoised_s)
    return x_t


@torch.no_grad()
def sample_unipc(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: StepCallback | None = None,
    disable: bool | None = None,
    generator: torch.Generator | None = None,
    order: int = 2,
    variant: str = "bh2",
) -> torch.Tensor:
    """UniPC multistep predictor-corrector (Zhao et al. 2023, arXiv 2302.04867), x0 form for rectified flow.

    One model call per step. Each step runs UniP-p with the last ``p <= order`` model outputs,
    and the next step's fresh output first corrects that prediction with UniC-p (no corrector
    after the last step). Points at sigma = 1 (lambda = -inf) are never used as extra points,
    so the step from pure noise is the first-order DDIM step
    ``x = sigma_next * x + (1 - sigma_next) * denoised`` and is not corrected; the final step
    to sigma = 0 returns ``denoised`` (lambda = +inf, and no model call at sigma = 0).

    Args:
        model: Denoiser ``model(x [B, ...], sigma [B], **extra_args) -> x0 [B, ...]``.
        x: Start state ``[B, ...]`` at ``sigmas[0]``.
        sigmas: Strictly decreasing schedule ``[S]`` in ``[0, 1]``.
        extra_args: Keyword arguments forwarded to every model call.
        callback: Called once per step with ``{"i", "sigma", "sigma_next", "x", "denoised"}``;
            ``x`` is the (corrected) state the step starts from.
        disable: Ignored (progress-bar flag ComfyUI passes).
        generator: Ignored (deterministic sampler).
        order: Predictor order 1, 2 or 3 (the corrector adds one); 2 is the usual choice (Wan2.2's
            flow-UniPC default). The sigma=1 and sigma=0 ends are first order, which caps the
            global order at 2 from pure noise to data.
        variant: ``"bh1"`` (B(h) = h) or ``"bh2"`` (B(h) = e^h - 1 in the paper's noise form).

    Returns:
        Final state ``[B, ...]`` at ``sigmas[-1]``.
    """
    if isinstance(order, bool) or order not in (1, 2, 3):
        raise ValueError(f"sample_unipc: order={order!r} is invalid: expected 1, 2 or 3 (2 is the usual choice).")
    if variant not in UNIPC_VARIANTS:
        raise ValueError(f"sample_unipc: variant={variant!r} is invalid: expected one of {list(UNIPC_VARIANTS)}.")
    sig = _check_inputs("sample_unipc", x, sigmas, strict=True)
    extra_args = {} if extra_args is None else extra_args
    history: list[tuple[float, torch.Tensor]] = []  # (sigma, x0) of past model outputs, newest last
    last_step = None  # (x_s, x0_s, sigma_s, points) of the previous prediction, for UniC
    for i in range(len(sig) - 1):
        sigma, sigma_next = sig[i], sig[i + 1]
        denoised = model(x, _sigma_batch(x, sigma, sigmas), **extra_args)
        if last_step is not None:
            # UniC: redo the previous step with the fresh output at r = 1 (paper Alg. "UniC-p").
            x_s, denoised_s, sigma_s, points = last_step
            x = _unipc_update(x_s, denoised_s, sigma_s, sigma, [*points, (sigma, denoised)], variant)
        _report(callback, i, sigmas, x, denoised)
        if sigma_next == 0.0:
            x = denoised  # DDIM step to lambda = +inf; higher-order terms are undefined there.
            break
        # Previous outputs with finite lambda (sigma < 1), newest first, up to order - 1 of them.
        points = [p for p in reversed(history) if p[0] < 1.0][: order - 1]
        x_next = _unipc_update(x, denoised, sigma, sigma_next, points, variant)
        # UniC needs a finite lambda_s; skip it after a step that starts from pure noise.
        last_step = (x, denoised, sigma, points) if sigma < 1.0 else None
        history = [*history, (sigma, denoised)][-(order - 1) :] if order > 1 else []
        x = x_next
    return x


# Registry

SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler,
    "heun": sample_heun,
    "unipc": sample_unipc,
}


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """Look up a sampler function by name.

    Args:
        name: One of ``SAMPLERS``' keys (``"euler"``, ``"heun"``, ``"unipc"``).

    Returns:
        The sampler function.

    Raises:
        ValueError: If ``name`` is unknown; the message lists the valid names.
    """
    if name not in SAMPLERS:
        raise ValueError(f"sampler {name!r} is unknown: expected one of {sorted(SAMPLERS)}.")
    return SAMPLERS[name]
