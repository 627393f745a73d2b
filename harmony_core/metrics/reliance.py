"""Cross-modal reliance: does each stream of a trained model actually use the other one?

A model can only generate synchronised clips if the video prediction depends on *when* things
happen in the audio and vice versa. This measures it directly on the flow-matching objective, for
the two Cross-Task Synergy tasks (paper §3.2):

* **A2V**: video noised at σ, audio clean (``a_t = 0``). The video velocity error (MSE against the
  true ``ε − x0``) is computed once with each clip's *own* audio and once with the audio of another
  clip of the batch (``partner``; ideally the same kind of scene with different event times).
* **V2A**: the mirror image, audio noised and video clean.

``gain = (mse_other − mse_own) / mse_other``: 0 means the stream ignores the other one (its
prediction is as good with the wrong partner), larger means it uses the other stream's content.
Measured on the same noise for both conditions, so the difference is not sampling noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..model.conditions import HarmonyConditions

__all__ = ["RelianceRow", "cross_modal_reliance", "format_reliance"]


@dataclass(frozen=True)
class RelianceRow:
    """Reliance at one noise level.

    Attributes:
        sigma: the noise level of the noised stream.
        a2v_own, a2v_other: video MSE with the clip's own / another clip's clean audio.
        v2a_own, v2a_other: audio MSE with the clip's own / another clip's clean video.
    """

    sigma: float
    a2v_own: float
    a2v_other: float
    v2a_own: float
    v2a_other: float

    @property
    def a2v_gain(self) -> float:
        """Relative drop of the video error thanks to the right audio (0 = audio ignored)."""
        return (self.a2v_other - self.a2v_own) / max(self.a2v_other, 1e-12)

    @property
    def v2a_gain(self) -> float:
        """Relative drop of the audio error thanks to the right video (0 = video ignored)."""
        return (self.v2a_other - self.v2a_own) / max(self.v2a_other, 1e-12)


@torch.no_grad()
def cross_modal_reliance(
    model: torch.nn.Module,
    v_x0: torch.Tensor,
    a_x0: torch.Tensor,
    cond: HarmonyConditions,
    *,
    partner: Sequence[int] | torch.Tensor | None = None,
    sigmas: Sequence[float] = (0.3, 0.6, 0.9),
    generator: torch.Generator | None = None,
) -> list[RelianceRow]:
    """Measure how much each stream's prediction uses the other stream (module docstring).

    Args:
        model: a ``HarmonyDiT`` (``model(v_x, a_x, v_t, a_t, cond) -> (v_pred, a_pred)``).
        v_x0: clean video latents ``[B, C_v, T_v, H, W]``, B >= 2.
        a_x0: clean audio latents ``[B, C_a, T_a]`` of the same clips.
        cond: the clips' conditions (batch B).
        partner: ``[B]`` index of the clip whose other stream is swapped in (a permutation without
            fixed points); default: the next clip (``roll`` by 1).
        sigmas: noise levels in (0, 1].
        generator: noise; the same noise serves both conditions at a level.

    Returns:
        One `RelianceRow` per sigma.

    Raises:
        ValueError: batch below 2, mismatched batches, a partner that maps a clip to itself, or a
            sigma outside (0, 1].
    """
    b = v_x0.shape[0]
    if v_x0.dim() != 5 or a_x0.dim() != 3 or a_x0.shape[0] != b:
        raise ValueError(
            f"v_x0 {tuple(v_x0.shape)} and a_x0 {tuple(a_x0.shape)}: expected [B, C_v, T_v, H, W] and [B, C_a, T_a] "
            "with the same B."
        )
    if b < 2:
        raise ValueError(f"batch B={b} is too small: reliance swaps streams between clips, so pass B >= 2 clips.")
    perm = torch.roll(torch.arange(b), -1) if partner is None else torch.as_tensor(partner, dtype=torch.long)
    if perm.shape != (b,) or bool((perm == torch.arange(b)).any()):
        raise ValueError(f"partner={perm.tolist()} is invalid: expected {b} indices, none mapping a clip to itself.")
    bad = [s for s in sigmas if not 0 < float(s) <= 1]
    if bad or not sigmas:
        raise ValueError(f"sigmas={list(sigmas)} is invalid: expected noise levels in (0, 1], e.g. (0.3, 0.6, 0.9).")
    param = next(model.parameters())
    dev, dtype = param.device, param.dtype if param.is_floating_point() else torch.float32
    v_x0, a_x0 = v_x0.to(dev, dtype), a_x0.to(dev, dtype)
    zero = torch.zeros(b, device=dev, dtype=dtype)
    rows = []
    for sigma in sigmas:
        sigma = float(sigma)
        v_eps = torch.randn(v_x0.shape, generator=generator).to(dev, dtype)
        a_eps = torch.randn(a_x0.shape, generator=generator).to(dev, dtype)
        t = torch.full((b,), sigma, device=dev, dtype=dtype)  # the model takes sigma (it scales to t itself)
        v_noisy, a_noisy = (1 - sigma) * v_x0 + sigma * v_eps, (1 - sigma) * a_x0 + sigma * a_eps
        v_target, a_target = v_eps - v_x0, a_eps - a_x0

        def mse(pred: torch.Tensor, target: torch.Tensor) -> float:
            return float((pred.float() - target.float()).pow(2).mean())

        a2v_own = mse(model(v_noisy, a_x0, t, zero, cond)[0], v_target)
        a2v_other = mse(model(v_noisy, a_x0[perm], t, zero, cond)[0], v_target)
        v2a_own = mse(model(v_x0, a_noisy, zero, t, cond)[1], a_target)
        v2a_other = mse(model(v_x0[perm], a_noisy, zero, t, cond)[1], a_target)
        rows.append(RelianceRow(sigma, a2v_own, a2v_other, v2a_own, v2a_other))
    return rows


def format_reliance(rows: Sequence[RelianceRow]) -> str:
    """A markdown table of `cross_modal_reliance` rows (MSEs and gains)."""
    lines = ["| σ | A2V video MSE, own audio | other clip's audio | A2V gain | V2A audio MSE, own video "
             "| other clip's video | V2A gain |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.sigma:.2f} | {r.a2v_own:.4f} | {r.a2v_other:.4f} | {r.a2v_gain:+.1%} | {r.v2a_own:.4f} "
                     f"| {r.v2a_other:.4f} | {r.v2a_gain:+.1%} |")
    return "\n".join(lines)
