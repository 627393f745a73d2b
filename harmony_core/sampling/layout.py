"""Packing both streams into one sampler state, and the per-stream "keep clean" masks of the
generation modes.

Samplers see one tensor ``x [B, N]`` with ``N = C_v*T_v*H*W + C_a*T_a`` (video first, then
audio, each flattened per sample), the same order ComfyUI's ``pack_latents`` uses for its nested
AV latents. A ``StreamMask`` says, per video latent frame and per audio latent, whether it is
generated (True) or given clean and held fixed (False): A2V keeps all audio, V2A keeps all video,
a reference first frame keeps video frame 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["AVLayout", "StreamMask", "MODES", "mode_mask"]

MODES = ("t2av", "a2v", "v2a")


@dataclass(frozen=True)
class AVLayout:
    """Shapes of the two streams inside a packed ``[B, N]`` state."""

    v_shape: tuple[int, ...]  # [B, C_v, T_v, H, W]
    a_shape: tuple[int, ...]  # [B, C_a, T_a]

    @classmethod
    def of(cls, v_x: torch.Tensor, a_x: torch.Tensor) -> AVLayout:
        if v_x.dim() != 5 or a_x.dim() != 3 or v_x.shape[0] != a_x.shape[0]:
            raise ValueError(
                f"expected video [B, C, T_v, H, W] and audio [B, C, T_a] with one batch size; "
                f"got {tuple(v_x.shape)} and {tuple(a_x.shape)}."
            )
        return cls(tuple(v_x.shape), tuple(a_x.shape))

    @property
    def batch(self) -> int:
        return self.v_shape[0]

    @property
    def v_numel(self) -> int:
        return math.prod(self.v_shape[1:])

    @property
    def a_numel(self) -> int:
        return math.prod(self.a_shape[1:])

    def pack(self, v_x: torch.Tensor, a_x: torch.Tensor) -> torch.Tensor:
        """``[B, C_v, T_v, H, W]`` + ``[B, C_a, T_a]`` -> ``[B, N]``."""
        b = v_x.shape[0]
        return torch.cat([v_x.reshape(b, -1), a_x.reshape(b, -1).to(v_x.dtype)], dim=1)

    def unpack(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B', N]`` -> video ``[B', C_v, T_v, H, W]`` and audio ``[B', C_a, T_a]`` (views)."""
        b = x.shape[0]
        if x.shape[-1] != self.v_numel + self.a_numel:
            raise ValueError(
                f"packed state has {x.shape[-1]} values per sample; this layout needs {self.v_numel} + {self.a_numel}."
            )
        x = x.reshape(b, -1)
        return x[:, : self.v_numel].view(b, *self.v_shape[1:]), x[:, self.v_numel :].view(b, *self.a_shape[1:])


@dataclass(frozen=True)
class StreamMask:
    """Which latents are generated (True) vs. given clean and held fixed (False).

    Attributes:
        v_gen: ``[B, T_v]`` bool, per video latent frame.
        a_gen: ``[B, T_a]`` bool, per audio latent.
    """

    v_gen: torch.Tensor
    a_gen: torch.Tensor

    def timesteps(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-stream model timesteps: sigma where generated, 0 where clean (``[B, T_v]``, ``[B, T_a]``)."""
        s = sigma.float().view(-1, 1)
        return s * self.v_gen.float(), s * self.a_gen.float()

    def packed(self, layout: AVLayout) -> torch.Tensor:
        """Element mask ``[B, N]`` (True = generated) matching ``layout.pack``."""
        b, c, f, h, w = layout.v_shape
        v = self.v_gen[:, None, :, None, None].expand(b, c, f, h, w).reshape(b, -1)
        a = self.a_gen[:, None, :].expand(b, layout.a_shape[1], layout.a_shape[2]).reshape(b, -1)
        return torch.cat([v, a], dim=1)

    @property
    def generates_video(self) -> bool:
        return bool(self.v_gen.any())

    @property
    def generates_audio(self) -> bool:
        return bool(self.a_gen.any())

    def repeat(self, n: int) -> StreamMask:
        return StreamMask(self.v_gen.repeat(n, 1), self.a_gen.repeat(n, 1))


def mode_mask(
    mode: str, layout: AVLayout, *, clean_first_frame: bool = False, device: torch.device | str | None = None
) -> StreamMask:
    """The stream mask of a generation mode.

    Args:
        mode: ``"t2av"`` (both generated), ``"a2v"`` (audio given clean, video generated) or
            ``"v2a"`` (video given clean, audio generated).
        layout: the clip's shapes.
        clean_first_frame: hold video latent frame 0 clean (reference-image first frame).
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not a generation mode; expected one of {MODES}.")
    b, t_v, t_a = layout.batch, layout.v_shape[2], layout.a_shape[2]
    v_gen = torch.full((b, t_v), mode != "v2a", dtype=torch.bool, device=device)
    a_gen = torch.full((b, t_a), mode != "a2v", dtype=torch.bool, device=device)
    if clean_first_frame:
        v_gen[:, 0] = False
    return StreamMask(v_gen, a_gen)
