"""Weights and activations of ``HarmonyDiT``, computed from the config (nothing is allocated).

Weights: parameters are counted on a model built on the ``meta`` device and split into Linear
weights (what fp8 storage quantises, each with one float32 scale) and everything else (biases,
norms, AdaLN tables, the patch-embedding convolutions), which stays in the compute dtype.

Activations: a structural model of one inference forward, read from ``model/dit.py``,
``model/blocks.py``, ``model/layers.py`` and ``model/rope.py``. Inside a dual-stream block only
one sub-layer's temporaries exist at a time, so the peak is the memory alive for the whole forward
(contexts, AdaLN tables, RoPE angle tables) plus the worst sub-layer: the copies of the residual
stream that the block still references at that point, plus that sub-layer's own temporaries
(FFN hidden, RoPE's float32 rotation, the V2A key/value gather, attention scores when attention is
not fused). ``tests/core/test_memory.py`` checks it against ``LivePeak`` measurements.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import HarmonyConfig
from ..model.dit import HarmonyDiT
from ..model.windows import local_windows

__all__ = ["DTYPE_BYTES", "dtype_name", "DiTParams", "dit_params", "weight_bytes", "activation_bytes", "tokens"]

# Bytes per stored value. fp8 is e4m3fn / e5m2 storage (computed in a 16-bit type).
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}
_TORCH_NAMES = {
    torch.float32: "fp32",
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
    torch.float8_e4m3fn: "fp8",
    torch.float8_e5m2: "fp8",
}


def dtype_name(dtype: str | torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bf16"`` (names pass through), for callers holding torch dtypes."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _TORCH_NAMES:
            raise ValueError(f"dtype {dtype} has no memory estimate: expected one of {list(_TORCH_NAMES)}.")
        return _TORCH_NAMES[dtype]
    return dtype


ATTENTION = ("flash", "sdpa", "math")


@dataclass(frozen=True)
class DiTParams:
    """Parameter counts of a ``HarmonyDiT`` (numbers of values, not bytes).

    Attributes:
        total: all parameters; linear: values in ``nn.Linear`` weights; other: the rest.
        linear_layers: how many Linear layers (one fp8 scale each).
        blocks: dual-stream blocks (video block + audio block).
        block_linear, block_other, block_linear_layers: the largest dual block's split.
        largest_linear: values of the biggest single Linear weight.
        buffers: bytes of registered buffers.
    """

    total: int
    linear: int
    other: int
    linear_layers: int
    blocks: int
    block_linear: int
    block_other: int
    block_linear_layers: int
    largest_linear: int
    buffers: int


def _split(module: nn.Module) -> tuple[int, int, int, int]:
    """``(linear values, other values, linear layers, largest linear)`` of a module."""
    linear = layers = largest = 0
    for m in module.modules():
        if isinstance(m, nn.Linear):
            linear += m.weight.numel()
            layers += 1
            largest = max(largest, m.weight.numel())
    total = sum(p.numel() for p in module.parameters())
    return linear, total - linear, layers, largest


@functools.lru_cache(maxsize=32)
def dit_params(config: HarmonyConfig) -> DiTParams:
    """Count ``HarmonyDiT(config)``'s parameters on the ``meta`` device (cached per config)."""
    with torch.device("meta"):
        model = HarmonyDiT(config, device="meta", init_weights=False)
    linear, other, layers, largest = _split(model)
    blocks = [(_split(vb), _split(ab)) for vb, ab in zip(model.video_model.blocks, model.audio_model.blocks)]
    big = max(blocks, key=lambda b: b[0][0] + b[0][1] + b[1][0] + b[1][1])
    return DiTParams(
        total=linear + other,
        linear=linear,
        other=other,
        linear_layers=layers,
        blocks=len(blocks),
        block_linear=big[0][0] + big[1][0],
        block_other=big[0][1] + big[1][1],
        block_linear_layers=big[0][2] + big[1][2],
        largest_linear=largest,
        buffers=sum(b.numel() * b.element_size() for b in model.buffers()),
    )


def _store_bytes(linear: int, other: int, layers: int, weight_dtype: str, compute_dtype: str) -> int:
    """Bytes of ``linear`` Linear values (``layers`` layers) plus ``other`` values."""
    if weight_dtype == "fp8":  # Linear weights in 1 byte + one float32 scale per layer
        return linear + 4 * layers + other * DTYPE_BYTES[compute_dtype]
    return (linear + other) * DTYPE_BYTES[weight_dtype]


def weight_bytes(
    config: HarmonyConfig,
    weight_dtype: str | torch.dtype,
    compute_dtype: str | torch.dtype,
    *,
    blocks_resident: int | None = None,
) -> int:
    """Bytes of the DiT's weights on the device.

    Args:
        weight_dtype: ``"fp32" | "bf16" | "fp16" | "fp8"`` (or the torch dtype) of the weights.
        compute_dtype: ``"fp32" | "bf16" | "fp16"``, the type the non-Linear parameters stay in
            when the Linear weights are fp8.
        blocks_resident: None for the whole model; ``k`` for block streaming, where everything
            outside the blocks stays resident and ``k`` dual blocks (the one computing and the
            ones being prefetched) are on the device at a time.
    """
    weight_dtype, compute_dtype = dtype_name(weight_dtype), dtype_name(compute_dtype)
    if weight_dtype not in DTYPE_BYTES or compute_dtype not in ("fp32", "bf16", "fp16"):
        raise ValueError(
            f"weight_dtype={weight_dtype!r} / compute_dtype={compute_dtype!r} are invalid: expected one of "
            f"{tuple(DTYPE_BYTES)} / one of ('fp32', 'bf16', 'fp16')."
        )
    p = dit_params(config)
    if blocks_resident is None:
        return _store_bytes(p.linear, p.other, p.linear_layers, weight_dtype, compute_dtype) + p.buffers
    k = min(blocks_resident, p.blocks)
    n, layers = p.blocks, p.block_linear_layers
    # every block is as large as the largest one (they are identical in every preset)
    outside = _store_bytes(
        max(0, p.linear - n * p.block_linear),
        max(0, p.other - n * p.block_other),
        max(0, p.linear_layers - n * layers),
        weight_dtype,
        compute_dtype,
    )
    return outside + k * _store_bytes(p.block_linear, p.block_other, layers, weight_dtype, compute_dtype) + p.buffers


def tokens(config: HarmonyConfig, latent_frames: int, latent_h: int, latent_w: int) -> int:
    """Video tokens of a ``[T_v, H, W]`` latent (sizes rounded up to whole patches)."""
    pt, ph, pw = config.video.patch_size
    return math.ceil(latent_frames / pt) * math.ceil(latent_h / ph) * math.ceil(latent_w / pw)


def activation_bytes(
    config: HarmonyConfig,
    *,
    latent_frames: int,
    latent_h: int,
    latent_w: int,
    audio_latents: int,
    batch: int,
    compute_dtype: str | torch.dtype = "bf16",
    attention: str = "flash",
    ref_latents: int = 0,
    text_tokens: int = 512,
    speech_tokens: int = 0,
    per_frame_timesteps: bool = True,
) -> int:
    """Peak bytes of one ``HarmonyDiT`` forward's activations (weights and inputs not included).

    Args:
        latent_frames, latent_h, latent_w: the video latent ``[T_v, H, W]``.
        audio_latents: ``T_a``; ref_latents: reference-audio latents ``T_r`` (prepended).
        batch: the forward's batch (``passes * B`` when guidance passes are stacked).
        compute_dtype: ``"fp32" | "bf16" | "fp16"``.
        attention: ``"flash"`` / ``"sdpa"`` (fused kernels, no score matrix) or ``"math"``
            (scores and softmax ``[B, N, L_q, L_k]`` materialised, two copies).
        text_tokens: prompt tokens per stream (padded up to the tower's ``text_len``).
        speech_tokens: transcript-encoder tokens appended to the audio context.
        per_frame_timesteps: sigmas per latent frame / audio latent (what the sampler passes:
            ``StreamMask.timesteps``) rather than one per sample; sizes the AdaLN tables.
    """
    compute_dtype = dtype_name(compute_dtype)
    if attention not in ATTENTION:
        raise ValueError(f"attention={attention!r} is invalid: expected one of {ATTENTION}.")
    if compute_dtype not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"compute_dtype={compute_dtype!r} is invalid: expected 'fp32', 'bf16' or 'fp16'.")
    c = DTYPE_BYTES[compute_dtype]
    v, a, inter = config.video, config.audio, config.interaction
    d, n_heads, k_dim = v.dim, v.num_heads, v.head_dim
    l_v = tokens(config, latent_frames, latent_h, latent_w)
    frames = math.ceil(latent_frames / v.patch_size[0])
    l_a = audio_latents + ref_latents
    fusion, local, style = int(inter.global_fusion), int(inter.local), int(inter.global_style and ref_latents > 0)
    # RoPE's float32 rotation: the float copy, two half-size products and the stacked result (the
    # float copy is the input itself in fp32), plus cos / sin of the [L, K/2] angles.
    rope_v = l_v * d * (12 if c < 4 else 8) + 4 * l_v * k_dim
    attn_out = 2 * c  # SDPA's output and its [B, L, N*K] reshaped copy

    # Copies of the residual stream the dual block references (module docstring of model/dit.py):
    # the block input (held by the caller), the post-attention state when it feeds the fusion
    # layer, the post-cross-attention state, and with local attention the update and its sum.
    r_v = 2 + fusion + 2 * local
    r_a = 2 + fusion + 3 * local
    v_unit, a_unit = l_v * d * c, l_a * d * c

    # Sub-layers of the video stream (the audio stream's residual copies stay alive meanwhile).
    gate_tmp = l_v * d * (12 if c < 4 else 8)  # gated residual add in float32 (model/layers.gate)
    ffn_v = (r_v + 1) * v_unit + max(2 * l_v * v.ffn_dim * c, gate_tmp)
    self_v = max(4 * v_unit + rope_v, 5 * v_unit + attn_out * l_v * d)
    if fusion:
        cross_v = max(5 * v_unit + rope_v, 6 * v_unit + attn_out * l_v * d)
    else:
        cross_v = 4 * v_unit + attn_out * l_v * d
    candidates = [ffn_v, self_v, cross_v]
    if attention == "math":
        candidates.append(5 * v_unit + 2 * n_heads * l_v * l_v * c)
        if fusion:
            candidates.append(6 * v_unit + 2 * n_heads * l_v * l_a * c)
    if local:
        win = local_windows(
            config.timeline,
            frames,
            audio_latents,
            a2v_window=inter.a2v_window,
            v2a_window=inter.v2a_window,
            rope_align=inter.rope_align,
        )
        f_w, n_q = win.v2a_frames.shape[1], win.v2a_tokens.shape[1]
        # V2A: keys (after RoPE) and values of every video token, gathered again per group of
        # audio queries (F_w frames each), and the additive mask [B*T_v, Q, F_w*P].
        held = (3 + fusion) * v_unit  # block input, [post-attention], post-cross, A2V update
        mask = n_q * f_w * l_v * (1 + c + (batch * c if batch > 1 else 0)) // batch
        v2a = held + (2 + 2 * f_w) * v_unit + mask
        if attention == "math":
            v2a += 2 * n_heads * n_q * f_w * l_v * c
        a2v = (2 + fusion) * v_unit + max(v_unit + rope_v, 3 * v_unit)
        candidates += [v2a, held + 2 * v_unit + rope_v, a2v]
    if style:
        candidates.append((3 + fusion + 4) * v_unit)
    per_sample_video = max(candidates) + r_a * a_unit
    ffn_a = (r_v + 1) * v_unit + (r_a + 1) * a_unit + 2 * l_a * a.ffn_dim * c
    per_sample = max(per_sample_video, ffn_a)

    # Alive for the whole forward: embedded contexts, AdaLN tables (float32) and their per-block
    # copies, and the RoPE angle tables (float32 [L, K/2], shared by the batch).
    ctx = (max(text_tokens, v.text_len) + max(text_tokens, a.text_len) + speech_tokens) * d * c
    groups = frames + l_a if per_frame_timesteps else 2
    adaln = groups * (6 + 1 + 6) * d * 4  # e, e0 and the block's table, per stream
    angles = (1 + 2 * local) * (l_v + l_a) * (k_dim // 2) * 4
    return batch * (per_sample + ctx + adaln) + angles
