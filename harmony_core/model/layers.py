"""Small building blocks shared by both towers (Wan2.2 / Ovi layouts, parameter names kept).

Layer constructors take an injectable ``ops`` namespace (``Linear``, ``Conv1d``, ``Conv3d``,
``LayerNorm``, ``RMSNorm``), defaulting to ``torch.nn``, so ComfyUI can pass ``comfy.ops``
(weight casting, fp8, low-VRAM offload) without harmony_core knowing ComfyUI exists. Attention is
injected the same way: any callable ``attention(q, k, v, heads, mask=None)`` on ``[B, L, N*K]``
tensors (ComfyUI's ``optimized_attention`` has exactly this contract).
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AttentionFn",
    "sdpa_attention",
    "default_ops",
    "additive_mask",
    "sinusoidal_embedding",
    "modulate",
    "gate",
    "AudioPatchEmbed",
    "Head",
    "init_linear_",
    "init_normal_",
    "modulation_init_",
]


class AttentionFn(Protocol):
    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask: torch.Tensor | None = None
    ) -> torch.Tensor: ...


def sdpa_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Multi-head attention through PyTorch SDPA.

    Args:
        q: ``[B, L_q, N*K]``; k, v: ``[B, L_k, N*K]``.
        heads: N.
        mask: additive float mask broadcastable to ``[B, N, L_q, L_k]``; ``[B, L_q|1, L_k]`` and
            ``[L_q, L_k]`` are accepted (as ComfyUI's ``optimized_attention`` accepts them).

    Returns:
        ``[B, L_q, N*K]``.
    """
    b, lq, d = q.shape
    k_dim = d // heads
    q, k, v = (t.view(b, -1, heads, k_dim).transpose(1, 2) for t in (q, k, v))
    if mask is not None:
        if mask.dim() == 2:
            mask = mask[None]
        if mask.dim() == 3:
            mask = mask[:, None]
        mask = mask.to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.transpose(1, 2).reshape(b, lq, d)


def default_ops() -> Any:
    """The plain-PyTorch operations namespace (``torch.nn`` layers)."""
    return SimpleNamespace(
        Linear=nn.Linear, Conv1d=nn.Conv1d, Conv3d=nn.Conv3d, LayerNorm=nn.LayerNorm, RMSNorm=nn.RMSNorm
    )


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Turn a bool "may attend" mask into an additive one (0 where allowed, -inf elsewhere)."""
    out = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return out.masked_fill_(~allowed, float("-inf"))


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Wan's sinusoidal timestep embedding ``[cos, sin]`` computed in float64.

    Args:
        t: ``[...]`` model times (sigma * 1000).
        dim: even embedding width.

    Returns:
        ``[..., dim]`` float32.
    """
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    arg = t.to(torch.float64)[..., None] * freqs
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=-1).to(torch.float32)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN ``x * (1 + scale) + shift`` with per-group modulation, computed in float32.

    Args:
        x: ``[B, L, D]`` normalised tokens, L = G * P (G groups of P tokens, e.g. P = tokens of
            one video frame when every frame has its own timestep).
        shift, scale: ``[B, G, D]`` float32.

    Returns:
        ``[B, L, D]`` in ``x.dtype``.
    """
    b, length, d = x.shape
    g = shift.shape[1]
    y = x.float().view(b, g, length // g, d) * (1 + scale[:, :, None]) + shift[:, :, None]
    return y.view(b, length, d).to(x.dtype)


def gate(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Gated residual ``x + y * g`` with ``g`` ``[B, G, D]`` per group (see ``modulate``)."""
    b, length, d = y.shape
    groups = g.shape[1]
    out = x.float() + (y.float().view(b, groups, length // groups, d) * g[:, :, None]).view(b, length, d)
    return out.to(x.dtype)


class AudioPatchEmbed(nn.Sequential):
    """Ovi/MMAudio audio embedding: Conv1d(k) -> SiLU -> SwiGLU ConvMLP(k), channel-last.

    Parameter names match Ovi's ``patch_embedding.{0,2.w1,2.w2,2.w3}``.
    """

    def __init__(
        self,
        in_channels: int,
        dim: int,
        hidden: int,
        kernel: int,
        *,
        ops: Any,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        pad = kernel // 2
        conv = ops.Conv1d(in_channels, dim, kernel, padding=pad, device=device, dtype=dtype)
        mlp = nn.Module()
        mlp.w1 = ops.Conv1d(dim, hidden, kernel, padding=pad, bias=False, device=device, dtype=dtype)
        mlp.w2 = ops.Conv1d(hidden, dim, kernel, padding=pad, bias=False, device=device, dtype=dtype)
        mlp.w3 = ops.Conv1d(dim, hidden, kernel, padding=pad, bias=False, device=device, dtype=dtype)
        super().__init__(conv, nn.SiLU(), mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, L, C_in]`` -> ``[B, L, D]``."""
        conv, act, mlp = self[0], self[1], self[2]
        h = act(conv(x.transpose(1, 2)))  # [B, D, L]
        h = mlp.w2(F.silu(mlp.w1(h)) * mlp.w3(h))
        return h.transpose(1, 2)


class Head(nn.Module):
    """Wan output head: AdaLN (shift, scale from the time embedding) then a Linear to patches."""

    def __init__(
        self,
        dim: int,
        out_features: int,
        eps: float,
        *,
        ops: Any,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.norm = ops.LayerNorm(dim, eps=eps, elementwise_affine=False, device=device, dtype=dtype)
        self.head = ops.Linear(dim, out_features, device=device, dtype=dtype)
        self.modulation = nn.Parameter(torch.empty(1, 2, dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Args: x ``[B, L, D]``; e ``[B, G, D]`` float32 time embedding. Returns ``[B, L, out]``."""
        mod = self.modulation.float()[:, None] + e[:, :, None]  # [B, G, 2, D]
        return self.head(modulate(self.norm(x), mod[:, :, 0], mod[:, :, 1]))


def init_linear_(module: nn.Module, zero: bool = False, generator: torch.Generator | None = None) -> None:
    """Xavier-uniform weights and zero bias (Wan's init), or all zeros for new residual branches."""
    if zero:
        nn.init.zeros_(module.weight)
    else:
        nn.init.xavier_uniform_(module.weight.flatten(1), generator=generator)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


def init_normal_(module: nn.Module, std: float, generator: torch.Generator | None = None) -> None:
    """Normal weights (Wan's init for the text and time embeddings) and zero bias."""
    nn.init.normal_(module.weight, std=std, generator=generator)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


def modulation_init_(p: torch.Tensor, generator: torch.Generator | None = None) -> None:
    """Wan initialises AdaLN tables as ``randn / sqrt(dim)``."""
    with torch.no_grad():
        p.copy_(torch.randn(p.shape, dtype=torch.float32, generator=generator) / math.sqrt(p.shape[-1]))
