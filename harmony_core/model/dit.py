"""HarmonyDiT: the dual-stream diffusion transformer (paper §3.1-3.3).

Two Wan2.2-style towers, ``video_model`` and ``audio_model`` (the names Ovi checkpoints use), run
block by block in lock-step. Each dual-stream step is:

1. self-attention in both streams (AdaLN from each stream's *own* timestep);
2. text cross-attention in both streams; with ``global_fusion`` this is Ovi's fusion layer, where
   each stream also attends to the whole other stream (each reads the other's state after its
   self-attention, so the exchange is symmetric);
3. Global-Local Decoupled Interaction, from the post-(2) states of both streams: frame-wise local
   A2V and V2A attention with RoPE-aligned time positions, and the global style update of the
   reference-audio tokens (Eq. 5-7); all residual, output projections zero-initialised;
4. FFN in both streams.

Per-stream timesteps: ``v_t`` and ``a_t`` are independent (Cross-Task Synergy feeds a clean
conditioning stream at t = 0), per sample ``[B]`` or per latent frame ``[B, T_v]`` / per audio
token ``[B, T_a]`` (a clean reference first frame is a video frame at t = 0). Reference-audio
tokens are prepended to the audio sequence, always at t = 0, with RoPE positions ``-T_r..-1``;
they take no part in the local windows and are stripped from the output.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import HarmonyConfig, TowerConfig
from .blocks import TowerBlock
from .conditions import ForwardOptions, HarmonyConditions
from .layers import (
    AttentionFn,
    AudioPatchEmbed,
    Head,
    additive_mask,
    default_ops,
    init_linear_,
    init_normal_,
    modulation_init_,
    sdpa_attention,
    sinusoidal_embedding,
)
from .rope import audio_rope_angles, time_rope_angles, video_rope_angles
from .windows import LocalWindows, local_windows

__all__ = ["Tower", "HarmonyDiT", "count_parameters"]


class Tower(nn.Module):
    """One stream's embeddings, blocks and head (Wan ``WanModel`` minus the forward loop)."""

    def __init__(
        self, cfg: TowerConfig, hcfg: HarmonyConfig, *, is_video: bool, ops: Any, factory: dict[str, Any]
    ) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        if is_video:
            self.patch_embedding = ops.Conv3d(
                cfg.in_channels, d, kernel_size=cfg.patch_size, stride=cfg.patch_size, **factory
            )
        else:
            self.patch_embedding = AudioPatchEmbed(
                cfg.in_channels, d, cfg.conv_mlp_hidden, cfg.patch_kernel, ops=ops, **factory
            )
        self.text_embedding = nn.Sequential(
            ops.Linear(cfg.text_dim, d, **factory), nn.GELU(approximate="tanh"), ops.Linear(d, d, **factory)
        )
        if not is_video and hcfg.speech_dim:
            self.speech_embedding = nn.Sequential(
                ops.Linear(hcfg.speech_dim, d, **factory), nn.GELU(approximate="tanh"), ops.Linear(d, d, **factory)
            )
        self.time_embedding = nn.Sequential(
            ops.Linear(cfg.freq_dim, d, **factory), nn.SiLU(), ops.Linear(d, d, **factory)
        )
        self.time_projection = nn.Sequential(nn.SiLU(), ops.Linear(d, 6 * d, **factory))
        self.blocks = nn.ModuleList(
            TowerBlock(cfg, hcfg.interaction, is_video=is_video, ops=ops, factory=factory)
            for _ in range(cfg.num_layers)
        )
        self.head = Head(d, cfg.out_features, cfg.eps, ops=ops, **factory)

    def embed_time(self, t: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Time embedding of ``[B, G]`` sigmas -> ``e [B, G, D]`` and ``e0 [B, G, 6, D]`` (float32)."""
        w = self.time_embedding[0].weight
        dtype = w.dtype if w.dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64) else torch.float32
        sin = sinusoidal_embedding(t * scale, self.cfg.freq_dim).to(dtype)
        e = self.time_embedding(sin).float()
        e0 = self.time_projection(e.to(dtype)).float().unflatten(-1, (6, self.cfg.dim))
        return e, e0

    def embed_text(self, ctx: torch.Tensor, embedding: nn.Module, pad_to: int) -> torch.Tensor:
        """Zero-pad ``[B, L, C]`` to ``pad_to`` rows (Wan/Ovi) and embed -> ``[B, max(L, pad_to), D]``."""
        if pad_to and ctx.shape[1] < pad_to:
            ctx = torch.cat([ctx, ctx.new_zeros(ctx.shape[0], pad_to - ctx.shape[1], ctx.shape[2])], dim=1)
        return embedding(ctx)


def local_rope_angles(cfg: HarmonyConfig, win: LocalWindows, per_frame: int) -> dict[str, torch.Tensor]:
    """Time-slice RoPE angles of the local A2V / V2A attentions: ``a2v_q [T_v*P, K/2]``,
    ``a2v_k [T_a, K/2]``, ``v2a_q [T_a, K/2]``, ``v2a_k [T_v*P, K/2]`` (``P = per_frame`` video
    tokens per latent frame), positions in each direction's timeline unit (``*_time_scale``)."""
    sv, sa = cfg.interaction.a2v_time_scale, cfg.interaction.v2a_time_scale
    return {
        "a2v_q": time_rope_angles(cfg.video, win.a2v_q_pos.repeat_interleave(per_frame) * sv),
        "a2v_k": time_rope_angles(cfg.video, win.a2v_k_pos * sv),
        "v2a_q": time_rope_angles(cfg.audio, win.v2a_q_pos * sa),
        "v2a_k": time_rope_angles(cfg.audio, win.v2a_k_pos.repeat_interleave(per_frame) * sa),
    }


class HarmonyDiT(nn.Module):
    """The dual-stream Harmony transformer; predicts flow velocity for both streams.

    Args:
        config: the architecture.
        operations: layer namespace (``Linear``, ``Conv1d``, ``Conv3d``, ``LayerNorm``,
            ``RMSNorm``); default ``torch.nn``. ComfyUI passes ``comfy.ops`` classes.
        attention: ``attention(q, k, v, heads, mask=None)`` on ``[B, L, N*K]``; default SDPA.
        device, dtype: where to allocate parameters (``"meta"`` allocates nothing).
        generator: RNG for the weight initialisation (skipped on ``meta`` or with
            ``init_weights=False``, e.g. when weights come from a checkpoint).
    """

    def __init__(
        self,
        config: HarmonyConfig,
        *,
        operations: Any = None,
        attention: AttentionFn | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        init_weights: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        ops = operations if operations is not None else default_ops()
        factory = {"device": device, "dtype": dtype}
        self.attention: AttentionFn = attention or sdpa_attention
        self.video_model = Tower(config.video, config, is_video=True, ops=ops, factory=factory)
        self.audio_model = Tower(config.audio, config, is_video=False, ops=ops, factory=factory)
        self.gradient_checkpointing = False
        if init_weights and str(device) != "meta":
            self.init_weights(generator=generator)

    # ------------------------------------------------------------------------------------------
    # Initialisation
    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Wan's initialisation; new interaction output projections start at zero; Ovi divides the
        video tower's fusion projections by 10 at initialisation."""
        zero = self.config.interaction.zero_init
        for tower in (self.video_model, self.audio_model):
            for name, m in tower.named_modules():
                weight = getattr(m, "weight", None)
                if not isinstance(weight, torch.Tensor):
                    continue
                if weight.dim() >= 2:  # Linear / Conv (ComfyUI's ops subclass the torch layers)
                    is_new = name.split(".")[-2:-1] in (["a2v"], ["v2a"], ["style"]) and name.endswith(".o")
                    init_linear_(m, zero=zero and is_new, generator=generator)
                else:  # LayerNorm / RMSNorm affine
                    nn.init.ones_(weight)
                    if isinstance(getattr(m, "bias", None), torch.Tensor):
                        nn.init.zeros_(m.bias)
            for m in (
                tower.text_embedding[0],
                tower.text_embedding[2],
                tower.time_embedding[0],
                tower.time_embedding[2],
            ):
                init_normal_(m, 0.02, generator)
            nn.init.zeros_(tower.head.head.weight)
            nn.init.zeros_(tower.head.head.bias)
            modulation_init_(tower.head.modulation, generator)
            for blk in tower.blocks:
                modulation_init_(blk.modulation, generator)
        for name, m in self.video_model.named_modules():
            if "fusion" in name and isinstance(m, nn.Linear):
                m.weight.div_(10.0)

    # ------------------------------------------------------------------------------------------
    # Forward
    # ------------------------------------------------------------------------------------------
    def forward(
        self,
        v_x: torch.Tensor,
        a_x: torch.Tensor,
        v_t: torch.Tensor,
        a_t: torch.Tensor,
        cond: HarmonyConditions,
        *,
        options: ForwardOptions | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict the flow velocity ``eps - x0`` of both streams.

        Args:
            v_x: ``[B, C_v, T_v, H, W]`` video latents at noise level ``v_t``.
            a_x: ``[B, C_a, T_a]`` audio latents at noise level ``a_t``.
            v_t: ``[B]`` or ``[B, T_v]`` video sigmas in [0, 1] (0 = clean).
            a_t: ``[B]`` or ``[B, T_a]`` audio sigmas in [0, 1].
            cond: text / transcript / reference-audio conditioning (batch B).
            options: per-call switches (modality-isolated passes, skip-layer guidance).

        Returns:
            ``(v_vel [B, C_v, T_v, H, W], a_vel [B, C_a, T_a])`` in ``v_x.dtype`` / ``a_x.dtype``.
        """
        opts = options or ForwardOptions()
        cfg = self.config
        inter = cfg.interaction
        self._check_inputs(v_x, a_x, v_t, a_t, cond)
        b, _, frames, h, w = v_x.shape
        t_a = a_x.shape[2]
        vm, am = self.video_model, self.audio_model
        dtype = self._compute_dtype()
        pt, ph, pw = cfg.video.patch_size
        grid = (frames // pt, h // ph, w // pw)
        per_frame = grid[1] * grid[2]

        # --- embeddings -----------------------------------------------------------------------
        vx = vm.patch_embedding(v_x.to(dtype)).flatten(2).transpose(1, 2)  # [B, L_v, D]
        ax = am.patch_embedding(a_x.to(dtype).transpose(1, 2))  # [B, T_a, D]
        n_ref = 0
        if cond.a_ref is not None:
            n_ref = cond.a_ref.shape[2]
            ref = am.patch_embedding(cond.a_ref.to(dtype).transpose(1, 2))  # [B, T_r, D]
            ax = torch.cat([ref, ax], dim=1)
        v_groups = v_t.to(v_x.device).float().view(b, -1)  # [B, 1] or [B, T_v]
        if v_groups.shape[1] > 1 and pt > 1:
            v_groups = v_groups[:, ::pt]
        a_groups = a_t.to(a_x.device).float().view(b, -1)
        if n_ref:
            a_groups = torch.cat([a_groups.new_zeros(b, n_ref), a_groups.expand(b, t_a)], dim=1)
        v_e, v_e0 = vm.embed_time(v_groups, cfg.timestep_scale)
        a_e, a_e0 = am.embed_time(a_groups, cfg.timestep_scale)

        v_ctx = vm.embed_text(cond.v_context.to(dtype), vm.text_embedding, cfg.video.text_len)
        a_ctx = am.embed_text(cond.a_context.to(dtype), am.text_embedding, cfg.audio.text_len)
        v_mask = self._ctx_mask(cond.v_context_mask, v_ctx.shape[1], dtype)
        a_mask_parts = [self._ctx_bool(cond.a_context_mask, b, a_ctx.shape[1], v_x.device)]
        if cond.speech is not None and hasattr(am, "speech_embedding"):
            sp = am.speech_embedding(cond.speech.to(dtype))
            a_ctx = torch.cat([a_ctx, sp], dim=1)
            a_mask_parts.append(self._ctx_bool(cond.speech_mask, b, sp.shape[1], v_x.device))
        a_allowed = torch.cat(a_mask_parts, dim=1)
        a_mask = None if bool(a_allowed.all()) else additive_mask(a_allowed, dtype)[:, None, :]

        # --- positions ------------------------------------------------------------------------
        dev = v_x.device
        v_angles = video_rope_angles(cfg.video, grid, device=dev)
        a_pos = torch.arange(-n_ref, t_a, device=dev, dtype=torch.float64)
        a_angles = audio_rope_angles(cfg.audio, a_pos)
        local = None
        if inter.local and (opts.a2v or opts.v2a):
            win = local_windows(
                cfg.timeline,
                grid[0],
                t_a,
                a2v_window=inter.a2v_window,
                v2a_window=inter.v2a_window,
                rope_align=inter.rope_align,
                device=dev,
            )
            local = {"win": win, **local_rope_angles(cfg, win, per_frame)}

        ctx = dict(
            v_e0=v_e0,
            a_e0=a_e0,
            v_ctx=v_ctx,
            a_ctx=a_ctx,
            v_mask=v_mask,
            a_mask=a_mask,
            v_angles=v_angles,
            a_angles=a_angles,
            local=local,
            n_ref=n_ref,
            frames=grid[0],
            opts=opts,
        )
        for i, (vb, ab) in enumerate(zip(vm.blocks, am.blocks)):
            if i in opts.skip_blocks:
                continue
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                vx, ax = checkpoint(self._dual_block, vb, ab, vx, ax, ctx, use_reentrant=False)
            else:
                vx, ax = self._dual_block(vb, ab, vx, ax, ctx)

        # --- heads ----------------------------------------------------------------------------
        v_out = vm.head(vx, v_e)  # [B, L_v, C*pt*ph*pw]
        v_out = v_out.view(b, *grid, pt, ph, pw, cfg.video.in_channels)
        v_out = torch.einsum("bfhwpqrc->bcfphqwr", v_out).reshape(b, cfg.video.in_channels, frames, h, w)
        a_out = am.head(ax, a_e)[:, n_ref:].transpose(1, 2)  # [B, C_a, T_a]
        return v_out.to(v_x.dtype), a_out.to(a_x.dtype)

    def _dual_block(
        self, vb: TowerBlock, ab: TowerBlock, vx: torch.Tensor, ax: torch.Tensor, ctx: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One dual-stream step (see the module docstring for the order)."""
        att = self.attention
        opts: ForwardOptions = ctx["opts"]
        inter = self.config.interaction
        n_ref = ctx["n_ref"]
        ve, ae = vb.mod_table(ctx["v_e0"]), ab.mod_table(ctx["a_e0"])
        vx = vb.attn_part(vx, ve, ctx["v_angles"], att)
        ax = ab.attn_part(ax, ae, ctx["a_angles"], att)

        fuse = inter.global_fusion and opts.fusion
        v_other, a_other = (ax, vx) if fuse else (None, None)
        vx_new = vx + vb.cross_attn(
            vb.norm3(vx), ctx["v_ctx"], ctx["v_mask"], att, v_other, ctx["v_angles"], ctx["a_angles"]
        )
        ax_new = ax + ab.cross_attn(
            ab.norm3(ax), ctx["a_ctx"], ctx["a_mask"], att, a_other, ctx["a_angles"], ctx["v_angles"]
        )
        vx, ax = vx_new, ax_new

        local = ctx["local"]
        dv = da = dr = None
        a_tgt = ax[:, n_ref:]
        if local is not None and opts.a2v:
            dv = vb.a2v.local_a2v(vx, a_tgt, local["win"], local["a2v_q"], local["a2v_k"], ctx["frames"], att)
        if local is not None and opts.v2a:
            da = ab.v2a.local_v2a(a_tgt, vx, local["win"], local["v2a_q"], local["v2a_k"], ctx["frames"], att)
        if inter.global_style and opts.style and n_ref:
            dr = ab.style.global_style(ax[:, :n_ref], vx, att)
        if dv is not None:
            vx = vx + dv
        if da is not None or dr is not None:
            parts = [ax[:, :n_ref] + dr if dr is not None else ax[:, :n_ref], a_tgt + da if da is not None else a_tgt]
            ax = torch.cat(parts, dim=1)

        return vb.ffn_part(vx, ve), ab.ffn_part(ax, ae)

    # ------------------------------------------------------------------------------------------
    # Helpers
    # ------------------------------------------------------------------------------------------
    def _compute_dtype(self) -> torch.dtype:
        w = self.video_model.patch_embedding.weight
        return w.dtype if w.dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64) else torch.bfloat16

    @staticmethod
    def _ctx_bool(mask: torch.Tensor | None, b: int, length: int, device: torch.device) -> torch.Tensor:
        """Bool mask ``[B, L]`` over the (possibly padded) embedded context; padding rows count as
        real when no mask was given (Wan/Ovi attend to their zero padding)."""
        allowed = torch.ones(b, length, dtype=torch.bool, device=device)
        if mask is not None:
            allowed[:, : mask.shape[1]] = mask.to(device)
            allowed[:, mask.shape[1] :] = False
        return allowed

    def _ctx_mask(self, mask: torch.Tensor | None, length: int, dtype: torch.dtype) -> torch.Tensor | None:
        if mask is None:
            return None
        allowed = self._ctx_bool(mask, mask.shape[0], length, mask.device)
        return additive_mask(allowed, dtype)[:, None, :]

    def _check_inputs(
        self, v_x: torch.Tensor, a_x: torch.Tensor, v_t: torch.Tensor, a_t: torch.Tensor, cond: HarmonyConditions
    ) -> None:
        cfg = self.config
        if v_x.dim() != 5 or v_x.shape[1] != cfg.video.in_channels:
            raise ValueError(
                f"v_x has shape {tuple(v_x.shape)}: expected [B, {cfg.video.in_channels}, T_v, H, W]. "
                f"Encode the video with the matching video VAE."
            )
        if a_x.dim() != 3 or a_x.shape[1] != cfg.audio.in_channels:
            raise ValueError(
                f"a_x has shape {tuple(a_x.shape)}: expected [B, {cfg.audio.in_channels}, T_a]. "
                f"Encode the audio with the matching audio VAE."
            )
        b, _, f, h, w = v_x.shape
        pt, ph, pw = cfg.video.patch_size
        if f % pt or h % ph or w % pw:
            raise ValueError(
                f"v_x frames/height/width {(f, h, w)} must be multiples of the patch size "
                f"{cfg.video.patch_size}; resize or crop the latent."
            )
        if a_x.shape[0] != b:
            raise ValueError(f"batch sizes differ: v_x has {b}, a_x has {a_x.shape[0]}.")
        if v_t.numel() not in (b, b * f):
            raise ValueError(f"v_t has shape {tuple(v_t.shape)}: expected [B]={b} or [B, T_v]=[{b}, {f}].")
        if a_t.numel() not in (b, b * a_x.shape[2]):
            raise ValueError(f"a_t has shape {tuple(a_t.shape)}: expected [B]={b} or [B, T_a]=[{b}, {a_x.shape[2]}].")
        for name, t in (("v_t", v_t), ("a_t", a_t)):
            lo, hi = float(t.min()), float(t.max())
            if not (lo >= 0.0 and hi <= 1.0 + 1e-3):  # also catches NaN
                raise ValueError(
                    f"{name} ranges over [{lo:g}, {hi:g}]: expected noise levels (sigmas) in [0, 1], 0 = clean. The "
                    f"model applies timestep_scale={cfg.timestep_scale:g} itself: pass sigma, not "
                    f"t = sigma * {cfg.timestep_scale:g}."
                )
        if cond.batch_size != b:
            raise ValueError(f"conditioning batch {cond.batch_size} differs from latent batch {b}.")
        for name, t, dim in (
            ("v_context", cond.v_context, cfg.video.text_dim),
            ("a_context", cond.a_context, cfg.audio.text_dim),
        ):
            if t.dim() != 3 or t.shape[2] != dim:
                raise ValueError(
                    f"cond.{name} has shape {tuple(t.shape)}: expected [B, L, {dim}]. "
                    f"Use the text encoder this model was trained with."
                )
            for tower in (cfg.video, cfg.audio):
                if tower.text_len and t.shape[1] > tower.text_len:
                    raise ValueError(f"cond.{name} has {t.shape[1]} tokens, more than text_len={tower.text_len}.")
        if (
            cond.speech is not None
            and cfg.speech_dim
            and (cond.speech.dim() != 3 or cond.speech.shape[2] != cfg.speech_dim)
        ):
            raise ValueError(f"cond.speech has shape {tuple(cond.speech.shape)}: expected [B, L, {cfg.speech_dim}].")
        if cond.a_ref is not None and (cond.a_ref.dim() != 3 or cond.a_ref.shape[1] != cfg.audio.in_channels):
            raise ValueError(
                f"cond.a_ref has shape {tuple(cond.a_ref.shape)}: expected [B, {cfg.audio.in_channels}, T_r]."
            )
        if cfg.interaction.local and a_x.shape[2] < 1:
            raise ValueError("a_x has no audio latents; the local windows need at least one.")


def count_parameters(model_or_config: nn.Module | HarmonyConfig) -> int:
    """Parameter count of a model, or of a config (built on the ``meta`` device: no memory)."""
    if isinstance(model_or_config, HarmonyConfig):
        model_or_config = HarmonyDiT(model_or_config, device="meta")
    return sum(math.prod(p.shape) for p in model_or_config.parameters())
