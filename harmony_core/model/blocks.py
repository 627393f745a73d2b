"""Per-stream transformer blocks (Wan2.2 layout) and Harmony's cross-modal attention modules.

A ``TowerBlock`` holds one stream's layers with Wan/Ovi parameter names: ``norm1``, ``self_attn``,
``norm3``, ``cross_attn`` (text; plus Ovi's ``k_fusion``/``v_fusion`` global fusion when enabled),
``norm2``, ``ffn``, ``modulation``. The video block adds ``a2v`` (frame-wise local attention to
audio), the audio block adds ``v2a`` (local attention to video) and ``style`` (global style
alignment of the reference-audio tokens, paper Eq. 7). ``HarmonyDiT`` runs a video block and an
audio block as one dual-stream step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import InteractionConfig, TowerConfig
from .layers import AttentionFn, additive_mask, gate, modulate
from .rope import apply_rope
from .windows import LocalWindows

__all__ = ["SelfAttention", "TextCrossAttention", "CrossModalAttention", "TowerBlock"]


def _linear(ops: Any, d_in: int, d_out: int, factory: dict[str, Any]) -> nn.Module:
    return ops.Linear(d_in, d_out, **factory)


class SelfAttention(nn.Module):
    """Wan self-attention with RMS qk-norm over the full width and RoPE on q and k."""

    def __init__(self, cfg: TowerConfig, *, ops: Any, factory: dict[str, Any]) -> None:
        super().__init__()
        d = cfg.dim
        self.num_heads = cfg.num_heads
        self.q, self.k, self.v, self.o = (_linear(ops, d, d, factory) for _ in range(4))
        self.norm_q = ops.RMSNorm(d, eps=cfg.eps, **factory) if cfg.qk_norm else nn.Identity()
        self.norm_k = ops.RMSNorm(d, eps=cfg.eps, **factory) if cfg.qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, angles: torch.Tensor, attention: AttentionFn) -> torch.Tensor:
        """x ``[B, L, D]``, angles ``[L, K/2]`` -> ``[B, L, D]``."""
        b, length, d = x.shape
        n = self.num_heads
        q = apply_rope(self.norm_q(self.q(x)).view(b, length, n, d // n), angles).view(b, length, d)
        k = apply_rope(self.norm_k(self.k(x)).view(b, length, n, d // n), angles).view(b, length, d)
        return self.o(attention(q, k, self.v(x), n))


class TextCrossAttention(SelfAttention):
    """Text cross-attention; with ``fusion`` it is Ovi's fusion layer: the same query also attends
    (with RoPE on q and on the other stream's keys) to the whole other stream, and both results are
    summed before the shared output projection."""

    def __init__(self, cfg: TowerConfig, *, fusion: bool, ops: Any, factory: dict[str, Any]) -> None:
        super().__init__(cfg, ops=ops, factory=factory)
        if fusion:
            d = cfg.dim
            self.k_fusion = _linear(ops, d, d, factory)
            self.v_fusion = _linear(ops, d, d, factory)
            self.pre_attn_norm_fusion = ops.LayerNorm(d, eps=cfg.eps, elementwise_affine=True, **factory)
            self.norm_k_fusion = ops.RMSNorm(d, eps=1e-6, **factory) if cfg.qk_norm else nn.Identity()

    @property
    def has_fusion(self) -> bool:
        return hasattr(self, "k_fusion")

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        context_mask: torch.Tensor | None,
        attention: AttentionFn,
        other: torch.Tensor | None = None,
        angles: torch.Tensor | None = None,
        other_angles: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args:
        x: ``[B, L, D]`` (already ``norm3``-ed).
        context: ``[B, L_c, D]`` embedded text; context_mask: additive ``[B, 1, L_c]`` or None.
        other: ``[B, L_o, D]`` the other stream (fusion only), with its RoPE ``other_angles``.
        """
        b, length, d = x.shape
        n = self.num_heads
        q = self.norm_q(self.q(x))
        out = attention(q, self.norm_k(self.k(context)), self.v(context), n, context_mask)
        if other is not None and self.has_fusion:
            lo = other.shape[1]
            o_in = self.pre_attn_norm_fusion(other)
            k_f = apply_rope(self.norm_k_fusion(self.k_fusion(o_in)).view(b, lo, n, d // n), other_angles)
            q_r = apply_rope(q.view(b, length, n, d // n), angles)
            out = out + attention(q_r.view(b, length, d), k_f.view(b, lo, d), self.v_fusion(o_in), n)
        return self.o(out)


class CrossModalAttention(nn.Module):
    """Harmony's new cross-modal attention (local A2V / V2A windows, or global style).

    LayerNorm on both streams, RMS qk-norm, RoPE on the time slice only (so scores depend on the
    time difference between the two tokens, never on image position), and an output projection
    that starts at zero so a pretrained pair of towers is unchanged at step 0.
    """

    def __init__(self, cfg: TowerConfig, *, ops: Any, factory: dict[str, Any]) -> None:
        super().__init__()
        d = cfg.dim
        self.num_heads = cfg.num_heads
        self.norm_x = ops.LayerNorm(d, eps=cfg.eps, elementwise_affine=True, **factory)
        self.norm_ctx = ops.LayerNorm(d, eps=cfg.eps, elementwise_affine=True, **factory)
        self.q, self.k, self.v, self.o = (_linear(ops, d, d, factory) for _ in range(4))
        self.norm_q = ops.RMSNorm(d, eps=cfg.eps, **factory) if cfg.qk_norm else nn.Identity()
        self.norm_k = ops.RMSNorm(d, eps=cfg.eps, **factory) if cfg.qk_norm else nn.Identity()

    def _qkv(self, x: torch.Tensor, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, lx, d = x.shape
        lc = ctx.shape[1]
        n = self.num_heads
        c = self.norm_ctx(ctx)
        q = self.norm_q(self.q(self.norm_x(x))).view(b, lx, n, d // n)
        k = self.norm_k(self.k(c)).view(b, lc, n, d // n)
        return q, k, self.v(c)

    def local_a2v(
        self,
        v_x: torch.Tensor,
        a_x: torch.Tensor,
        win: LocalWindows,
        q_angles: torch.Tensor,
        k_angles: torch.Tensor,
        frames: int,
        attention: AttentionFn,
    ) -> torch.Tensor:
        """Frame-wise A2V (paper Eq. 5): every video frame's tokens attend to their audio window.

        Frames are folded into the batch axis: one attention call of batch ``B*T_v``.

        Args:
            v_x: ``[B, T_v*P, D]`` video tokens (P tokens per latent frame).
            a_x: ``[B, T_a, D]`` target audio tokens (no reference tokens).
            q_angles: ``[T_v*P, K/2]`` time-slice RoPE of the video queries.
            k_angles: ``[T_a, K/2]`` time-slice RoPE of the audio keys, on the video timeline.

        Returns:
            ``[B, T_v*P, D]`` update (before the residual add).
        """
        b, lv, d = v_x.shape
        n, p = self.num_heads, lv // frames
        q, k, v = self._qkv(v_x, a_x)
        q = apply_rope(q, q_angles).reshape(b * frames, p, d)  # [B*T_v, P, D]
        k = apply_rope(k, k_angles).reshape(b, -1, d)
        w = win.a2v_index.shape[1]
        k_win = k[:, win.a2v_index].reshape(b * frames, w, d)  # [B*T_v, W_a, D]
        v_win = v[:, win.a2v_index].reshape(b * frames, w, d)
        mask = additive_mask(win.a2v_valid, q.dtype)[None].expand(b, frames, w).reshape(b * frames, 1, w)
        out = attention(q, k_win, v_win, n, mask)
        return self.o(out.reshape(b, lv, d))

    def local_v2a(
        self,
        a_x: torch.Tensor,
        v_x: torch.Tensor,
        win: LocalWindows,
        q_angles: torch.Tensor,
        k_angles: torch.Tensor,
        frames: int,
        attention: AttentionFn,
    ) -> torch.Tensor:
        """Frame-wise V2A: every audio token attends to the video frames of its own window.

        Audio tokens are grouped by the video frame holding their centre and groups are folded into
        the batch axis; each token keeps its own exact window through a per-query mask.

        Args:
            a_x: ``[B, T_a, D]`` target audio tokens.
            v_x: ``[B, T_v*P, D]`` video tokens.
            q_angles: ``[T_a, K/2]``; k_angles: ``[T_v*P, K/2]`` (video keys on the audio timeline).

        Returns:
            ``[B, T_a, D]`` update.
        """
        b, la, d = a_x.shape
        n, p = self.num_heads, v_x.shape[1] // frames
        q, k, v = self._qkv(a_x, v_x)
        q = apply_rope(q, q_angles).reshape(b, la, d)
        k = apply_rope(k, k_angles).reshape(b, frames, p, d)
        v = v.reshape(b, frames, p, d)
        nq, nf = win.v2a_tokens.shape[1], win.v2a_frames.shape[1]
        q_grp = q[:, win.v2a_tokens].reshape(b * frames, nq, d)  # [B*T_v, Q, D]
        k_grp = k[:, win.v2a_frames].reshape(b * frames, nf * p, d)  # [B*T_v, F_w*P, D]
        v_grp = v[:, win.v2a_frames].reshape(b * frames, nf * p, d)
        allowed = win.v2a_query_mask & win.v2a_frames_valid[:, None, :]
        allowed = allowed | ~win.v2a_tokens_valid[:, :, None]  # padded query slots: any finite row
        allowed = allowed[..., None].expand(frames, nq, nf, p).reshape(frames, nq, nf * p)
        mask = additive_mask(allowed, q.dtype)[None].expand(b, -1, -1, -1).reshape(b * frames, nq, nf * p)
        out = attention(q_grp, k_grp, v_grp, n, mask).reshape(b, frames * nq, d)
        return self.o(out[:, win.v2a_slot])

    def global_style(self, ref: torch.Tensor, v_x: torch.Tensor, attention: AttentionFn) -> torch.Tensor:
        """Global style alignment (paper Eq. 7): reference-audio tokens attend to all video tokens.

        Args: ref ``[B, T_r, D]``, v_x ``[B, L_v, D]``. Returns the ``[B, T_r, D]`` update.
        """
        q, k, v = self._qkv(ref, v_x)
        b, lr, d = ref.shape
        return self.o(attention(q.reshape(b, lr, d), k.reshape(b, -1, d), v, self.num_heads))


class TowerBlock(nn.Module):
    """One stream's block: AdaLN self-attention, text (+ fusion) cross-attention, FFN, plus the
    stream's GLDI modules. The dual-stream forward lives in ``HarmonyDiT``."""

    def __init__(
        self, cfg: TowerConfig, inter: InteractionConfig, *, is_video: bool, ops: Any, factory: dict[str, Any]
    ) -> None:
        super().__init__()
        d = cfg.dim
        self.norm1 = ops.LayerNorm(d, eps=cfg.eps, elementwise_affine=False, **factory)
        self.self_attn = SelfAttention(cfg, ops=ops, factory=factory)
        self.norm3 = (
            ops.LayerNorm(d, eps=cfg.eps, elementwise_affine=True, **factory) if cfg.cross_attn_norm else nn.Identity()
        )
        self.cross_attn = TextCrossAttention(cfg, fusion=inter.global_fusion, ops=ops, factory=factory)
        self.norm2 = ops.LayerNorm(d, eps=cfg.eps, elementwise_affine=False, **factory)
        self.ffn = nn.Sequential(
            _linear(ops, d, cfg.ffn_dim, factory), nn.GELU(approximate="tanh"), _linear(ops, cfg.ffn_dim, d, factory)
        )
        self.modulation = nn.Parameter(torch.empty(1, 6, d, **factory))
        if inter.local:
            if is_video:
                self.a2v = CrossModalAttention(cfg, ops=ops, factory=factory)
            else:
                self.v2a = CrossModalAttention(cfg, ops=ops, factory=factory)
        if inter.global_style and not is_video:
            self.style = CrossModalAttention(cfg, ops=ops, factory=factory)

    def mod_table(self, e0: torch.Tensor) -> list[torch.Tensor]:
        """The six AdaLN rows ``(shift1, scale1, gate1, shift2, scale2, gate2)``, each ``[B, G, D]``."""
        e = self.modulation.float()[:, None] + e0  # [B, G, 6, D]
        return list(e.unbind(2))

    def attn_part(
        self, x: torch.Tensor, e: list[torch.Tensor], angles: torch.Tensor, attention: AttentionFn
    ) -> torch.Tensor:
        y = self.self_attn(modulate(self.norm1(x), e[0], e[1]), angles, attention)
        return gate(x, y, e[2])

    def ffn_part(self, x: torch.Tensor, e: list[torch.Tensor]) -> torch.Tensor:
        return gate(x, self.ffn(modulate(self.norm2(x), e[3], e[4])), e[5])
