"""Harmony as a native ComfyUI model: a ``BASE`` config, a ``BaseModel`` subclass and the wrapper
that gives ``HarmonyDiT`` ComfyUI's diffusion-model calling convention.

How the two streams and their timesteps flow through ComfyUI (LTXAV pattern):

1. The LATENT holds ``NestedTensor((video [B, C_v, T_v, H, W], audio [B, C_a, T_a]))``.
   ``CFGGuider.sample`` packs it to ``[B, 1, N]`` and passes ``latent_shapes`` on; a nested
   ``noise_mask`` is reshaped per stream and packed the same way.
2. ``HarmonyAVModel.extra_conds`` (once per sampling run) returns ``latent_shapes`` as a
   ``CONDConstant`` (so ``BaseModel._apply_model`` unpacks ``x`` into ``[video, audio]``), the
   text as a ``CONDHarmonyText`` and, when there is a mask, one generation weight per latent frame
   and stream (``harmony_v_gen`` / ``harmony_a_gen``).
3. ``process_timestep`` turns the sampler's one sigma per sample into per-frame sigmas for each
   stream: a kept stream (mask 0: A2V's audio, V2A's video) is at sigma 0, and so is a stream that
   a guidance pass replaced by a clean anchor (``harmony_pass`` flags, set by our guider).
4. ``scale_latent_inpaint`` returns the clean latent, so ``KSamplerX0Inpaint`` shows the kept
   stream to the model clean (not re-noised) and forces its prediction back to it.
5. ``HarmonyDiffusionModel.forward`` swaps in the anchor latents of the flagged samples
   (``harmony_v_sub`` / ``harmony_a_sub``), runs ``HarmonyDiT`` and returns ``[v_vel, a_vel]``,
   which ComfyUI packs and turns into x0 with ``CONST`` (``x0 = x - sigma * v``).
"""

from __future__ import annotations

import functools

import logging
import math
from typing import Any

import comfy.conds
import comfy.latent_formats
import comfy.model_base
import comfy.supported_models_base
import comfy.utils
import torch
from torch import nn

from ...harmony_core.config import HarmonyConfig
from ...harmony_core.model.conditions import HarmonyConditions
from ...harmony_core.model.dit import HarmonyDiT
from ...harmony_core.sampling.packed import frame_generation, stream_timesteps, substitute_streams
from ...harmony_core.sampling.schedules import DEFAULT_SHIFT, t_to_sigma

__all__ = [
    "HarmonyLatentFormat",
    "HarmonyModelConfig",
    "HarmonyAVModel",
    "HarmonyDiffusionModel",
    "CONDHarmonyText",
    "text_payload",
    "conditions_from_cond",
]

log = logging.getLogger(__name__)

TEXT_KEY = "harmony_text"  # conditioning-dict key carrying the non-video text tensors


def _comfy_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                     mask: torch.Tensor | None = None, transformer_options: dict | None = None) -> torch.Tensor:
    """ComfyUI's ``optimized_attention`` (sage / flash / SDPA / sub-quadratic, whichever ComfyUI
    picked) on ``[B, L, N*K]``; looked up at call time so attention patches are honoured, and
    given the run's ``transformer_options`` when they carry an ``optimized_attention_override``
    (what attention-patch nodes install, e.g. a SageAttention switch)."""
    from comfy.ldm.modules.attention import optimized_attention

    if transformer_options and "optimized_attention_override" in transformer_options:
        return optimized_attention(q, k, v, heads, mask=mask, transformer_options=transformer_options)
    return optimized_attention(q, k, v, heads, mask=mask)


class HarmonyLatentFormat(comfy.latent_formats.LatentFormat):
    """Identity format: samplers see the packed AV state, which no per-channel statistic fits
    (each stream is normalised by its own VAE wrapper), and there is no RGB preview."""

    latent_channels = 1
    latent_rgb_factors = None
    latent_rgb_factors_bias = None


class _CastDiT(HarmonyDiT):
    """``HarmonyDiT`` computing in ComfyUI's manual-cast dtype when the weights are stored in a
    narrower one (e.g. bf16 or fp8 weights computed in fp32 on a CPU)."""

    compute_dtype: torch.dtype | None = None

    def _compute_dtype(self) -> torch.dtype:
        return self.compute_dtype or super()._compute_dtype()


class HarmonyDiffusionModel(nn.Module):
    """The ``diffusion_model`` of ``HarmonyAVModel``: ``HarmonyDiT`` (as ``.dit``) behind ComfyUI's
    ``forward(x, timestep, context, control, transformer_options, **extra_conds)``.

    Args:
        harmony_config: the ``HarmonyConfig`` as JSON (it travels through ``unet_config``).
        dtype: weight dtype; device: where to allocate; operations: ``comfy.ops`` layer namespace.
        manual_cast_dtype: compute dtype when it differs from the weight dtype.
    """

    def __init__(self, *, harmony_config: str, dtype: torch.dtype | None = None, device: Any = None,
                 operations: Any = None, manual_cast_dtype: torch.dtype | None = None, **_: Any) -> None:
        super().__init__()
        self.dtype = dtype or torch.float32
        self.dit = _CastDiT(HarmonyConfig.from_json(harmony_config), operations=operations,
                            attention=_comfy_attention, device=device, dtype=dtype, init_weights=False)
        self.dit.compute_dtype = manual_cast_dtype

    def forward(self, x: Any, timestep: Any, context: Any = None, control: Any = None,
                transformer_options: dict | None = None, harmony_text: HarmonyConditions | None = None,
                harmony_pass: torch.Tensor | None = None, harmony_v_sub: torch.Tensor | None = None,
                harmony_a_sub: torch.Tensor | None = None, **_: Any) -> list[torch.Tensor]:
        """Velocities of both streams.

        Args:
            x: ``[video [B, C_v, T_v, H, W], audio [B, C_a, T_a]]`` (unpacked by ComfyUI).
            timestep: ``(v_t, a_t)`` per-stream sigmas from ``HarmonyAVModel.process_timestep``.
            harmony_text: the batch's text conditioning.
            harmony_pass: ``[B, 2]`` (video, audio) flags: 1 = replace the stream by the anchor.
            harmony_v_sub, harmony_a_sub: the anchor latents (clean static video, clean silence).

        Returns:
            ``[v_vel, a_vel]``.
        """
        if not isinstance(x, (list, tuple)) or len(x) != 2:
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise ValueError(
                f"Harmony got a latent of shape {shape}: it samples audio and video together. Start from "
                "'Harmony Empty AV Latent' (or combine a video and an audio latent with 'Harmony AV Latent "
                "Combine')."
            )
        if harmony_text is None:
            raise ValueError("Harmony got no text conditioning: connect 'Harmony Text Encode' to the guider.")
        v_x, a_x = x
        v_t, a_t = timestep
        flags = harmony_pass
        v_x, a_x = substitute_streams(
            v_x, a_x, v_sub=harmony_v_sub, a_sub=harmony_a_sub,
            v_flag=None if flags is None else flags[:, 0], a_flag=None if flags is None else flags[:, 1],
        )
        dtype = self.dit._compute_dtype()
        cond = harmony_text.to(device=v_x.device, dtype=dtype)
        if transformer_options and "optimized_attention_override" in transformer_options:
            self.dit.attention = functools.partial(_comfy_attention, transformer_options=transformer_options)
        try:
            v_vel, a_vel = self.dit(v_x, a_x, v_t, a_t, cond)
        finally:
            self.dit.attention = _comfy_attention
        return [v_vel, a_vel]


class CONDHarmonyText(comfy.conds.CONDRegular):
    """Text conditioning as one ComfyUI cond: batched by ``HarmonyConditions.cat``, which pads
    prompts of different lengths with masks, so a positive and a negative prompt share one forward
    pass (ComfyUI's ``CONDCrossAttn`` pads by repetition, which a masked model must not see)."""

    def __init__(self, cond: HarmonyConditions) -> None:
        self.cond = cond

    def process_cond(self, batch_size: int, **_: Any) -> CONDHarmonyText:
        c = self.cond
        if c.batch_size == batch_size:
            return CONDHarmonyText(c)
        if batch_size % c.batch_size:
            raise ValueError(f"text conditioning of batch {c.batch_size} cannot fill a batch of {batch_size}.")
        return CONDHarmonyText(c.repeat(batch_size // c.batch_size))

    def _pattern(self) -> tuple:
        c = self.cond
        return (c.speech is None, c.a_ref is None, c.v_context.device, c.v_context.shape[2], c.a_context.shape[2])

    def can_concat(self, other: Any) -> bool:
        return isinstance(other, CONDHarmonyText) and self._pattern() == other._pattern()

    def concat(self, others: list[CONDHarmonyText]) -> HarmonyConditions:
        return HarmonyConditions.cat([self.cond] + [o.cond for o in others])

    def size(self) -> list[int]:
        return list(self.cond.v_context.shape)


def text_payload(cond: HarmonyConditions) -> dict[str, torch.Tensor | None]:
    """The tensors of ``cond`` other than ``v_context`` (which is the CONDITIONING tensor itself),
    stored under ``"harmony_text"`` in the conditioning dict."""
    return {
        "a_context": cond.a_context, "speech": cond.speech, "v_context_mask": cond.v_context_mask,
        "a_context_mask": cond.a_context_mask, "speech_mask": cond.speech_mask, "a_ref": cond.a_ref,
    }


def conditions_from_cond(cross_attn: torch.Tensor, payload: dict | None) -> HarmonyConditions:
    """Rebuild ``HarmonyConditions`` from a CONDITIONING entry.

    Args:
        cross_attn: ``[B, L_v, D]`` the CONDITIONING tensor (video prompt tokens).
        payload: the ``"harmony_text"`` dict of ``text_payload``.

    Raises:
        ValueError: when the conditioning did not come from 'Harmony Text Encode'.
    """
    if payload is None:
        raise ValueError(
            "this CONDITIONING has no Harmony text (audio caption and transcript); make it with "
            "'Harmony Text Encode', not a plain CLIP Text Encode."
        )
    v_mask = payload.get("v_context_mask")
    if v_mask is not None and v_mask.shape[1] != cross_attn.shape[1]:
        log.warning("the video prompt tensor was changed by another node (%d tokens, mask has %d); attending to all "
                    "of it", cross_attn.shape[1], v_mask.shape[1])
        v_mask = None
    return HarmonyConditions(v_context=cross_attn, a_context=payload["a_context"], speech=payload.get("speech"),
                             v_context_mask=v_mask, a_context_mask=payload.get("a_context_mask"),
                             speech_mask=payload.get("speech_mask"), a_ref=payload.get("a_ref"))


class HarmonyAVModel(comfy.model_base.BaseModel):
    """``BaseModel`` for Harmony: flow matching (``CONST``), packed AV latents, per-stream timesteps."""

    def __init__(self, model_config: HarmonyModelConfig, device: Any = None) -> None:
        super().__init__(model_config, comfy.model_base.ModelType.FLOW, device=device,
                         unet_model=HarmonyDiffusionModel)

    @property
    def harmony_config(self) -> HarmonyConfig:
        return self.diffusion_model.dit.config

    def extra_conds(self, **kwargs: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        cross_attn = kwargs.get("cross_attn")
        if cross_attn is not None:
            out[TEXT_KEY] = CONDHarmonyText(conditions_from_cond(cross_attn, kwargs.get(TEXT_KEY)))
        shapes = kwargs.get("latent_shapes")
        if shapes is not None:
            out["latent_shapes"] = comfy.conds.CONDConstant(shapes)
        mask = kwargs.get("denoise_mask")
        if mask is not None and shapes is not None and len(shapes) == 2:
            v_mask, a_mask = comfy.utils.unpack_latents(mask, shapes)
            out["harmony_v_gen"] = comfy.conds.CONDRegular(frame_generation(v_mask, v_mask.shape[0]))
            out["harmony_a_gen"] = comfy.conds.CONDRegular(frame_generation(a_mask, a_mask.shape[0]))
        return out

    def process_timestep(self, timestep: torch.Tensor, x: Any = None, harmony_v_gen: torch.Tensor | None = None,
                         harmony_a_gen: torch.Tensor | None = None, harmony_pass: torch.Tensor | None = None,
                         **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
        sigma = t_to_sigma(timestep.float(), float(getattr(self.model_sampling, "multiplier", 1000.0)))
        flags = harmony_pass
        return stream_timesteps(sigma, harmony_v_gen, harmony_a_gen,
                                v_clean=None if flags is None else flags[:, 0],
                                a_clean=None if flags is None else flags[:, 1])

    def scale_latent_inpaint(self, sigma: Any = None, noise: Any = None, latent_image: Any = None,
                             **_: Any) -> torch.Tensor:
        return latent_image  # kept streams are shown clean; their timestep is 0 (process_timestep)

    # ``(video [B, C_v, T_v, h, w], audio [B, C_a, T_a])`` of the run being sampled, set by our guider
    # before ComfyUI loads the model: the packed ``[B, 1, N]`` shape ComfyUI passes to
    # ``memory_required`` does not say how N splits into video tokens, audio tokens and channels.
    harmony_latent_shapes: tuple | None = None

    def memory_required(self, input_shape: Any, cond_shapes: Any = None) -> float:
        """Activation bytes of one forward over ``input_shape = [batch, 1, N]`` (ComfyUI's question
        when it loads the model and when ``calc_cond_batch`` stacks conds), from
        ``harmony_core.memory`` when the latent shapes of this run are known; ComfyUI's generic
        formula otherwise."""
        shapes = self.harmony_latent_shapes
        packed = math.prod(input_shape[2:]) if len(input_shape) > 2 else 0
        if shapes is not None and len(shapes) == 2 and sum(math.prod(s[1:]) for s in shapes) == packed:
            from .memory import forward_bytes

            return forward_bytes(self.harmony_config, tuple(shapes[0]), tuple(shapes[1]), int(input_shape[0]),
                                 self.get_dtype_inference())
        return super().memory_required(input_shape, cond_shapes=cond_shapes or {})


class HarmonyModelConfig(comfy.supported_models_base.BASE):
    """Model config of a Harmony DiT (not auto-detected: our loader builds it from the file).

    Args:
        config: the architecture; stored as JSON in ``unet_config`` so ``BaseModel`` passes it to
            ``HarmonyDiffusionModel``.
        shift: the flow-schedule shift (paper: 5).
    """

    unet_extra_config: dict = {}
    latent_format = HarmonyLatentFormat
    supported_inference_dtypes = [torch.bfloat16, torch.float16, torch.float32]
    memory_usage_factor = 2.0

    def __init__(self, config: HarmonyConfig, shift: float = DEFAULT_SHIFT) -> None:
        self.sampling_settings = {"shift": float(shift), "multiplier": 1000.0}
        super().__init__({"harmony_config": config.to_json()})

    def set_inference_dtype(self, dtype: torch.dtype, manual_cast_dtype: torch.dtype | None) -> None:
        super().set_inference_dtype(dtype, manual_cast_dtype)
        self.unet_config["manual_cast_dtype"] = manual_cast_dtype

    def get_model(self, state_dict: dict, prefix: str = "", device: Any = None) -> HarmonyAVModel:
        return HarmonyAVModel(self, device=device)
