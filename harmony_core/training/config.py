"""``TrainConfig``: every knob of a training run, frozen and stored in every checkpoint.

The paper (arXiv 2511.21579, App. B) fixes: flow matching with shift 5, a constant learning rate
(1e-5 in all three stages), loss weights 1 / 0.1 / 0.3 for joint / A2V / V2A. It does not give the
optimiser, warm-up, EMA, precision or the task sampling ratio; those are fields here with the
usual diffusion-transformer defaults (AdamW, EMA 0.999, bf16 autocast on GPUs).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..sampling.schedules import DEFAULT_SHIFT, TRAINING_DISTRIBUTIONS
from .tasks import TaskMix

__all__ = ["LR_SCHEDULES", "PRECISIONS", "RESUMABLE_FIELDS", "TrainConfig", "lr_at"]

PRECISIONS = ("fp32", "bf16")
LR_SCHEDULES = ("constant", "cosine")
# Fields that may differ between a checkpoint and the run resuming it: they change neither the
# maths nor the random streams of the steps still to come.
RESUMABLE_FIELDS = frozenset({"steps", "log_every", "ckpt_every", "keep_last", "grad_checkpointing"})


def _bad(name: str, value: Any, expected: str, fix: str) -> None:
    raise ValueError(f"TrainConfig.{name}={value!r} is invalid: expected {expected}. {fix}")


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
        steps: optimiser steps in total (a resumed run continues up to this number).
        batch_size: *global* batch size (all ranks together; each rank takes batch_size / world_size).
        lr: peak learning rate (paper: 1e-5, constant).
        betas, eps, weight_decay: AdamW.
        warmup: steps of linear warm-up from 0 to ``lr``; then ``lr_schedule``.
        lr_schedule: ``"constant"`` (paper: fine-tuning at a fixed LR) or ``"cosine"`` (half-cosine
            decay from ``lr`` after warm-up to ``lr * lr_min_ratio`` at ``steps``; a from-scratch
            model samples much better from weights trained at a decayed LR).
        lr_min_ratio: final LR as a fraction of ``lr`` for the cosine schedule.
        grad_clip: max global gradient L2 norm (0 = no clipping; the norm is still logged).
        ema_decay: EMA factor of the shipped weights.
        ema_start: steps during which the EMA copies the weights instead of averaging.
        precision: ``"fp32"``, or ``"bf16"`` autocast (weights and optimiser stay fp32).
        grad_checkpointing: recompute each dual-stream block in the backward pass (less memory).
        log_every: steps per logged line (losses averaged over the window).
        ckpt_every: steps between checkpoints (0 = only at the end).
        keep_last: also keep this many numbered ``step_XXXXXX.safetensors`` files (0 = only ``last``).
        seed: seeds data order, tasks, sigmas, noise and references (model init is seeded separately).
        probs, weights, shift, distribution: Cross-Task Synergy (see ``tasks.TaskMix``).
        ref_prob: probability that a batch carries reference audio.
        ref_seconds: ``(min, max)`` reference duration (paper stage 1: 1-3 s).
        ref_mode: ``"same"`` (a segment of the clip itself) or ``"timbre"`` (a same-timbre partner clip).
        sigma_bins: equal-width sigma bins for the loss log.
        motion_weight: emphasis of the video loss on latent positions that move (``tasks.
            motion_weights``; 0 = plain MSE, the paper's loss).
        cond_drop: probability that a sample's text (caption and transcript) is replaced by the
            empty prompt, the condition of the sampler's negative pass. Text CFG (and a negative
            prompt) guides against that pass, so a model trained with 0 has an unconditional branch
            it has never seen; 0.1 is the usual choice.
    """

    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup: int = 0
    lr_schedule: str = "constant"
    lr_min_ratio: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ema_start: int = 0
    precision: str = "fp32"
    grad_checkpointing: bool = False
    log_every: int = 10
    ckpt_every: int = 500
    keep_last: int = 0
    seed: int = 0
    probs: tuple[float, float, float] = (0.5, 0.25, 0.25)
    weights: tuple[float, float, float] = (1.0, 0.1, 0.3)
    shift: float = DEFAULT_SHIFT
    distribution: str = "uniform"
    ref_prob: float = 0.0
    ref_seconds: tuple[float, float] = (1.0, 3.0)
    ref_mode: str = "same"
    sigma_bins: int = 5
    motion_weight: float = 0.0
    cond_drop: float = 0.0

    def __post_init__(self) -> None:
        for f in ("betas", "probs", "weights", "ref_seconds"):
            object.__setattr__(self, f, tuple(float(x) for x in getattr(self, f)))
        for f in ("steps", "batch_size", "log_every", "sigma_bins"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                _bad(f, v, "an int >= 1", "Pass a positive integer.")
        for f in ("warmup", "ema_start", "ckpt_every", "keep_last", "seed"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                _bad(f, v, "an int >= 0", "Pass 0 or a positive integer.")
        if self.lr_schedule not in LR_SCHEDULES:
            _bad("lr_schedule", self.lr_schedule, f"one of {LR_SCHEDULES}", "Use constant (paper) or cosine.")
        if not 0 <= self.lr_min_ratio <= 1:
            _bad("lr_min_ratio", self.lr_min_ratio, "a fraction in [0, 1]", "Use 0.1.")
        if not (math.isfinite(self.lr) and self.lr > 0):
            _bad("lr", self.lr, "a finite number > 0", "The paper uses 1e-5.")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            _bad("betas", self.betas, "two numbers in [0, 1)", "Use 0.9,0.999.")
        if not self.eps > 0:
            _bad("eps", self.eps, "> 0", "Use 1e-8.")
        if not self.weight_decay >= 0:
            _bad("weight_decay", self.weight_decay, ">= 0", "Use 0 or 0.01.")
        if not (math.isfinite(self.grad_clip) and self.grad_clip >= 0):
            _bad("grad_clip", self.grad_clip, "a finite number >= 0 (0 = off)", "Use 1.0.")
        if not 0 <= self.ema_decay < 1:
            _bad("ema_decay", self.ema_decay, "0 <= ema_decay < 1", "Use 0.999.")
        if self.precision not in PRECISIONS:
            _bad("precision", self.precision, f"one of {PRECISIONS}", "Use bf16 on GPUs that support it.")
        if self.distribution not in TRAINING_DISTRIBUTIONS:
            _bad("distribution", self.distribution, f"one of {TRAINING_DISTRIBUTIONS}", "Use uniform.")
        if not 0 <= self.ref_prob <= 1:
            _bad("ref_prob", self.ref_prob, "a probability in [0, 1]", "Use 0 to train without reference audio.")
        if len(self.ref_seconds) != 2 or not 0 < self.ref_seconds[0] <= self.ref_seconds[1]:
            _bad("ref_seconds", self.ref_seconds, "(min, max) with 0 < min <= max", "Use 1.0,3.0 (paper).")
        if self.ref_mode not in ("same", "timbre"):
            _bad("ref_mode", self.ref_mode, "'same' or 'timbre'", "Use same (stage 1) or timbre (stage 2).")
        if not (math.isfinite(self.motion_weight) and self.motion_weight >= 0):
            _bad("motion_weight", self.motion_weight, "a finite number >= 0 (0 = plain MSE)", "Use 0, or 2-4.")
        if not 0 <= self.cond_drop < 1:
            _bad("cond_drop", self.cond_drop, "a probability in [0, 1)", "Use 0.1 (0 = never drop the text).")
        _ = self.task_mix  # validates probs / weights / shift through TaskMix

    @property
    def task_mix(self) -> TaskMix:
        """The Cross-Task Synergy mix of this run."""
        return TaskMix(probs=self.probs, weights=self.weights, shift=self.shift, distribution=self.distribution)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (stored in every checkpoint)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict` (checkpoint metadata); unknown keys are an error."""
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"stored TrainConfig has unknown fields {unknown}; it was written by another version.")
        return cls(**d)


def lr_at(config: TrainConfig, step: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up, then constant (paper) or a
    half-cosine from ``lr`` down to ``lr * lr_min_ratio`` at the last step."""
    if config.warmup and step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    if config.lr_schedule == "constant":
        return config.lr
    span = max(1, config.steps - 1 - config.warmup)
    progress = min(1.0, max(0, step - config.warmup) / span)
    floor = config.lr * config.lr_min_ratio
    return floor + (config.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
