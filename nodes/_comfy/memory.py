"""Memory decisions on the ComfyUI side, from ``harmony_core.memory``'s estimates.

* ``forward_bytes``: one DiT forward's activations for a batch, behind
  ``HarmonyAVModel.memory_required``. ComfyUI uses that number to decide how much of the weights
  to keep on the GPU (``load_models_gpu``) and how many conds ``calc_cond_batch`` stacks into one
  forward; its generic formula treats the packed ``[B, 1, N]`` AV latent as an image of N pixels
  and asks for terabytes at full size.
* ``guidance_batching``: before sampling, with the model loaded, whether the guidance passes of a
  step fit as one batched forward or must run one at a time (``choose_batching``), and a clear
  ``InsufficientMemoryError`` (``check_fits``) when even one pass at a time cannot fit.
* ``native_clip_line``: the loader's report line with the estimate at the model's native clip.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ...harmony_core import memory
from ...harmony_core.config import HarmonyConfig

__all__ = ["dtype_key", "forward_bytes", "guidance_batching", "native_clip_line"]

log = logging.getLogger(__name__)


def dtype_key(dtype: torch.dtype | None) -> str:
    """The estimator's name of a storage / compute dtype (fp8 kinds are "fp8"; unknown: "fp32")."""
    if dtype is None:
        return "fp32"
    if dtype in (getattr(torch, "float8_e4m3fn", None), getattr(torch, "float8_e5m2", None)):
        return "fp8"
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def _compute_key(dtype: torch.dtype | None) -> str:
    key = dtype_key(dtype)
    return "fp32" if key == "fp8" else key


def _request(config: HarmonyConfig, v_shape: tuple[int, ...], a_shape: tuple[int, ...]) -> dict[str, Any]:
    """``estimate_memory`` arguments for latents ``[B, C_v, T_v, h, w]`` / ``[B, C_a, T_a]``:
    sizes in latent cells (``space_stride`` 1). The VAEs run through ComfyUI's own VAE, which
    manages its memory itself (tiled fallback), so they are left out (``anchor_vaes=False``)."""
    _, _, t_v, h, w = v_shape
    return dict(width=int(w), height=int(h), num_frames=config.timeline.video_pixel_frames(int(t_v)),
                space_stride=1, batch=int(v_shape[0]), anchor_vaes=False, attention="sdpa")


def forward_bytes(config: HarmonyConfig, v_shape: tuple[int, ...], a_shape: tuple[int, ...], batch: int,
                  compute_dtype: torch.dtype | None) -> int:
    """Activation bytes of one forward of ``batch`` samples over latents of these shapes.

    Args:
        v_shape: ``[B, C_v, T_v, h, w]``; a_shape: ``[B, C_a, T_a]`` (their batch is ignored).
    """
    _, _, t_v, h, w = v_shape
    return int(memory.activation_bytes(config, latent_frames=int(t_v), latent_h=int(h), latent_w=int(w),
                                       audio_latents=int(a_shape[2]), batch=int(batch),
                                       compute_dtype=_compute_key(compute_dtype), attention="sdpa",
                                       text_tokens=max(config.video.text_len, 1),
                                       speech_tokens=config.video.text_len if config.speech_dim else 0))


def guidance_batching(config: HarmonyConfig, *, v_shape: tuple[int, ...], a_shape: tuple[int, ...], passes: int,
                      weight_dtype: torch.dtype | None, compute_dtype: torch.dtype | None, free_bytes: int,
                      what: str) -> bool:
    """Whether a step's guidance passes run as one batched forward (True) or one at a time.

    Args:
        passes: the most passes a step runs (SyncCFG: 3; +1 with a negative prompt).
        weight_dtype, compute_dtype: the model's storage and compute dtypes.
        free_bytes: free memory of the sampling device with the model loaded.
        what: names the node and the run in the error message.

    Raises:
        MemoryError: (``InsufficientMemoryError``) even one pass at a time cannot fit; the
            message gives the need, the free memory and the fixes with their estimated needs.
    """
    if passes <= 1:
        return True
    kw = dict(_request(config, v_shape, a_shape), passes=passes, weight_dtype=dtype_key(weight_dtype),
              compute_dtype=_compute_key(compute_dtype))
    batched, est = memory.choose_batching(config, free_bytes=int(free_bytes), weights_loaded=True, **kw)
    memory.check_fits(est, int(free_bytes), what=what, weights_loaded=True)
    if not batched:
        log.info("%s: the %d guidance passes run one at a time (batched they would not fit in %.1f GB)", what,
                 passes, free_bytes / 1e9)
    return batched


def native_clip_line(config: HarmonyConfig, weight_dtype: torch.dtype, compute_dtype: torch.dtype | None,
                     free_bytes: int | None) -> str:
    """The loader's report line: device memory of a SyncCFG run at Ovi's native clip (704x704,
    121 frames) for models with Ovi's latents (48 video / 20 audio channels), else ""."""
    if config.video.in_channels != 48 or config.audio.in_channels != 20:
        return ""
    kw = dict(width=704, height=704, num_frames=121, passes=3, weight_dtype=dtype_key(weight_dtype),
              compute_dtype=_compute_key(compute_dtype), attention="flash")
    try:
        resident = memory.estimate_memory(config, offload="none", **kw)
        phased = memory.estimate_memory(config, offload="model", **kw)
    except ValueError as e:  # an estimator that does not know this config: skip the line
        log.debug("no memory estimate for %s: %s", config.name, e)
        return ""
    gb = 1e9
    line = (f"memory (harmony_core.memory estimate, SyncCFG at 704x704, 121 frames): DiT weights "
            f"{resident.weights / gb:.1f} GB, peak {phased.peak / gb:.1f} GB with ComfyUI loading each model for "
            f"its phase, {resident.peak / gb:.1f} GB with everything resident")
    if free_bytes is not None and phased.peak > free_bytes:
        line += (f"; {free_bytes / gb:.1f} GB is free on the sampling device, so ComfyUI will keep part of the "
                 "weights in RAM (slower) or the passes run one at a time")
    return line
