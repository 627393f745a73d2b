"""Exponential moving average of model weights (the weights a trained model ships with).

``shadow <- decay * shadow + (1 - decay) * weight`` after every optimiser step from ``start_step``
on; before that the shadow simply copies the weights, so an early, fast-moving model does not leak
into the average (the paper gives no EMA settings; this is the usual diffusion practice).

The shadow is kept in float32 whatever the weights' dtype, and for FSDP it is sharded exactly like
the parameters (a ``DTensor`` per parameter), so it never needs a full copy of the model on one rank;
:meth:`EMA.state_dict` gathers full tensors for checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EMA"]


def _full(t: torch.Tensor) -> torch.Tensor:
    """A plain tensor from a possibly sharded ``DTensor`` (a collective for DTensors: call on every rank)."""
    full = getattr(t, "full_tensor", None)
    return full() if callable(full) else t


class EMA:
    """Float32 moving average of every parameter of a module.

    Args:
        model: the module whose ``named_parameters()`` are averaged (pass the unwrapped module, not a
            DDP wrapper, so names carry no ``module.`` prefix).
        decay: averaging factor in ``[0, 1)``; 0 makes the shadow equal the latest weights.
        start_step: optimiser steps before which the shadow copies the weights instead of averaging.
    """

    def __init__(self, model: nn.Module, *, decay: float, start_step: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay={decay!r} is invalid: expected 0 <= decay < 1. Use e.g. 0.999.")
        if start_step < 0:
            raise ValueError(f"ema start_step={start_step!r} is invalid: expected >= 0.")
        self.decay = float(decay)
        self.start_step = int(start_step)
        with torch.no_grad():
            self.shadow: dict[str, torch.Tensor] = {
                name: p.detach().float().clone() for name, p in model.named_parameters()
            }

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold the current weights in; ``step`` is the number of optimiser steps taken so far (>= 1)."""
        decay = self.decay if step > self.start_step else 0.0
        for name, p in model.named_parameters():
            s = self.shadow[name]
            s.lerp_(p.detach().float(), 1.0 - decay)  # s + (1 - d) (p - s) = d s + (1 - d) p

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Full float32 tensors by parameter name (gathers FSDP shards: call on every rank)."""
        return {name: _full(t) for name, t in self.shadow.items()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor], *, source: str = "EMA state") -> None:
        """Copy full tensors into the shadow (re-sharding them for FSDP); keys must match exactly."""
        missing = sorted(set(self.shadow) - set(state))
        unexpected = sorted(set(state) - set(self.shadow))
        if missing or unexpected:
            raise ValueError(
                f"{source} does not fit the model: missing {missing[:5]} ({len(missing)}), unexpected "
                f"{unexpected[:5]} ({len(unexpected)}). The checkpoint was written for another model."
            )
        for name, s in self.shadow.items():
            t = state[name]
            if tuple(t.shape) != tuple(s.shape):
                raise ValueError(f"{source}: '{name}' has shape {tuple(t.shape)}, the model {tuple(s.shape)}.")
            mesh = getattr(s, "device_mesh", None)
            if mesh is not None:  # FSDP: keep only this rank's shard of the full tensor
                from torch.distributed.tensor import distribute_tensor

                t = distribute_tensor(t.to(s.device_mesh.device_type), mesh, s.placements)
            s.copy_(t)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s parameters with the averaged weights (cast to each parameter's dtype)."""
        for name, p in model.named_parameters():
            p.copy_(self.shadow[name])
