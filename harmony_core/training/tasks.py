"""Cross-Task Synergy (paper §3.2): joint T2AV, audio-driven video (A2V) and video-driven audio
(V2A) training tasks, and the per-stream flow-matching loss.

* joint: both streams noised at one shared sigma, loss on both (weight 1);
* A2V: clean audio fed at ``a_t = 0``, only the video is noised and scored (weight 0.1);
* V2A: clean video fed at ``v_t = 0``, only the audio is noised and scored (weight 0.3).

The paper sums the three losses per step: ``L = L_joint + 0.1 L_A2V + 0.3 L_V2A``. We draw one
task per sample with probabilities ``p`` and weight its loss by ``lambda / p``, which is an
unbiased estimate of that sum for any sampling ratio (the ratios then only trade variance; the
paper does not give them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..sampling.schedules import DEFAULT_SHIFT, sample_training_sigmas

__all__ = ["TASKS", "TaskMix", "TaskBatch", "sample_task_batch", "flow_loss", "motion_weights"]

TASKS = ("joint", "a2v", "v2a")


@dataclass(frozen=True)
class TaskMix:
    """Task sampling probabilities and loss weights (paper: weights 1 / 0.1 / 0.3).

    Attributes:
        probs: probability of ``(joint, a2v, v2a)`` per sample (normalised).
        weights: ``(lambda_joint, lambda_a2v, lambda_v2a)``.
        shift: shift of the training sigma distribution (paper: 5).
        distribution: ``"uniform"`` or ``"logit_normal"`` sigma before the shift.
    """

    probs: tuple[float, float, float] = (0.5, 0.25, 0.25)
    weights: tuple[float, float, float] = (1.0, 0.1, 0.3)
    shift: float = DEFAULT_SHIFT
    distribution: str = "uniform"

    def __post_init__(self) -> None:
        if len(self.probs) != 3 or any(p < 0 for p in self.probs) or sum(self.probs) <= 0:
            raise ValueError(
                f"TaskMix.probs={self.probs!r}: expected three non-negative numbers "
                f"for (joint, a2v, v2a) with a positive sum."
            )
        if len(self.weights) != 3 or any(w < 0 for w in self.weights):
            raise ValueError(f"TaskMix.weights={self.weights!r}: expected three non-negative loss weights.")
        for p, w, name in zip(self.probs, self.weights, TASKS):
            if w > 0 and p == 0:
                raise ValueError(f"task {name!r} has loss weight {w} but probability 0; it would never train.")

    @classmethod
    def joint_only(cls) -> TaskMix:
        """The ablation without Cross-Task Synergy."""
        return cls(probs=(1.0, 0.0, 0.0), weights=(1.0, 0.0, 0.0))

    def sample_weight(self, task: int) -> float:
        p = self.probs[task] / sum(self.probs)
        return self.weights[task] / p if p > 0 else 0.0


@dataclass
class TaskBatch:
    """Noised inputs, targets and per-sample loss weights of one training batch.

    Attributes:
        tasks: ``[B]`` long task index into ``TASKS``.
        v_xt, v_t, v_target: ``[B, C, T_v, H, W]``, ``[B]``, ``[B, C, T_v, H, W]`` (velocity).
        a_xt, a_t, a_target: ``[B, C, T_a]``, ``[B]``, ``[B, C, T_a]``.
        v_weight, a_weight: ``[B]`` loss weight of each stream (0 for a clean conditioning stream).
    """

    tasks: torch.Tensor
    v_xt: torch.Tensor
    v_t: torch.Tensor
    v_target: torch.Tensor
    a_xt: torch.Tensor
    a_t: torch.Tensor
    a_target: torch.Tensor
    v_weight: torch.Tensor
    a_weight: torch.Tensor


def sample_task_batch(
    v_x0: torch.Tensor,
    a_x0: torch.Tensor,
    mix: TaskMix,
    *,
    generator: torch.Generator,
    tasks: torch.Tensor | None = None,
) -> TaskBatch:
    """Draw a task per sample and build the noised inputs (sigma convention of ``schedules``).

    Args:
        v_x0: ``[B, C_v, T_v, H, W]`` clean video latents.
        a_x0: ``[B, C_a, T_a]`` clean audio latents.
        mix: task probabilities, weights and sigma distribution.
        generator: the RNG for tasks, sigmas and noise (drawn on the CPU, so runs are reproducible
            on any device).
        tasks: force these ``[B]`` task indices instead of sampling them.
    """
    b = v_x0.shape[0]
    if tasks is None:
        probs = torch.tensor(mix.probs, dtype=torch.float64)
        tasks = torch.multinomial(probs / probs.sum(), b, replacement=True, generator=generator)
    sigma = sample_training_sigmas(b, generator=generator, shift=mix.shift, distribution=mix.distribution)
    v_eps = torch.randn(v_x0.shape, generator=generator).to(v_x0)
    a_eps = torch.randn(a_x0.shape, generator=generator).to(a_x0)
    sig = sigma.to(v_x0.device, torch.float32)
    v_t = torch.where(tasks.to(sig.device) == 2, torch.zeros_like(sig), sig)  # V2A: clean video
    a_t = torch.where(tasks.to(sig.device) == 1, torch.zeros_like(sig), sig)  # A2V: clean audio
    v_xt = (1 - v_t.view(-1, 1, 1, 1, 1)) * v_x0 + v_t.view(-1, 1, 1, 1, 1) * v_eps
    a_xt = (1 - a_t.view(-1, 1, 1)) * a_x0 + a_t.view(-1, 1, 1) * a_eps
    w = torch.tensor([mix.sample_weight(int(k)) for k in tasks], dtype=torch.float32, device=v_x0.device)
    v_weight = torch.where(tasks.to(w.device) == 2, torch.zeros_like(w), w)
    a_weight = torch.where(tasks.to(w.device) == 1, torch.zeros_like(w), w)
    return TaskBatch(
        tasks=tasks,
        v_xt=v_xt,
        v_t=v_t,
        v_target=v_eps - v_x0,
        a_xt=a_xt,
        a_t=a_t,
        a_target=a_eps - a_x0,
        v_weight=v_weight,
        a_weight=a_weight,
    )


def flow_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample mean squared velocity error ``[B]`` (unreduced over the batch, so the trainer can
    weight tasks and log loss per sigma bin).

    ``weight``, if given, scales each element's squared error (broadcast against ``pred``; e.g.
    ``motion_weights``' ``[B, 1, T_v, H, W]``) before the mean.
    """
    err = (pred.float() - target.float()).pow(2)
    if weight is not None:
        err = err * weight.float()
    return err.flatten(1).mean(dim=1)


def motion_weights(v_x0: torch.Tensor, strength: float) -> torch.Tensor | None:
    """Video loss weights that emphasise the latent positions that change over time.

    Synchronization lives in a small part of a frame (a mouth, a ball, a stick): its share of the
    plain video MSE is tiny, so the gradient that would teach the video to follow the audio is too.
    Each position gets ``1 + strength * m``, with ``m`` the channel-mean absolute temporal difference
    of the clean latent at that position divided by its clip mean; the result is normalised to mean
    1 per clip, so the loss scale does not move. The first latent frame takes the first difference.
    A static clip gets uniform weights. ``strength = 0`` returns ``None`` (plain MSE).

    Args:
        v_x0: ``[B, C, T_v, H, W]`` clean video latents.
        strength: ``>= 0``; 0 disables.

    Returns:
        ``[B, 1, T_v, H, W]`` weights (mean 1 per clip), or ``None``.
    """
    if strength < 0:
        raise ValueError(f"motion weight strength={strength!r}: expected a number >= 0 (0 = plain MSE).")
    if strength == 0 or v_x0.shape[2] < 2:
        return None
    d = (v_x0[:, :, 1:] - v_x0[:, :, :-1]).abs().float().mean(dim=1, keepdim=True)  # [B, 1, T_v - 1, H, W]
    d = torch.cat([d[:, :, :1], d], dim=2)
    mean = d.flatten(1).mean(dim=1).view(-1, 1, 1, 1, 1)
    m = torch.where(mean > 1e-6, d / mean.clamp_min(1e-6), torch.ones_like(d))
    w = 1.0 + strength * m
    return w / w.flatten(1).mean(dim=1).view(-1, 1, 1, 1, 1)
