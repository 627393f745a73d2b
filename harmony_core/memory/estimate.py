"""Device-memory estimate of a whole generation run.

A run has three phases, each with its own peak:

1. text encoding: the text encoder's weights and activations;
2. sampling: the DiT's weights, one forward's activations (all guidance passes stacked on the
   batch axis when ``batched``, one pass at a time otherwise), the sampler state and guidance
   buffers, and (SyncCFG in T2AV) the video VAE re-encoding the still-video anchor each step;
3. decoding: the VAEs' weights and the chunked video decode.

``offload`` says what stays on the device: ``"none"`` keeps every model resident, so the peak is
all weights plus the largest phase's transients; ``"model"`` (ComfyUI's normal behaviour) loads
each model for its phase; ``"blocks"`` also streams the DiT's blocks, keeping only the weights
outside the blocks and ``blocks_resident`` dual blocks on the device.

Not modelled: the CUDA context (about 0.3-0.5 GB, outside PyTorch's allocator and already
subtracted from ``torch.cuda.mem_get_info``'s free bytes), allocator fragmentation and kernel
scratch space (cuDNN workspace, attention tiles); ``choose_batching`` and ``check_fits``
(``decide.py``) keep a ``margin`` of the free memory for those.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

import torch

from ..config import HarmonyConfig
from .components import Components, default_components
from .dit import DTYPE_BYTES, activation_bytes, dit_params, dtype_name, tokens, weight_bytes

__all__ = ["OFFLOAD", "MemoryEstimate", "estimate_memory", "forward_memory_fn"]

GIB = 1024**3
OFFLOAD = ("none", "model", "blocks")


def format_gib(n: int) -> str:
    """``n`` bytes as ``"12.3 GiB"``."""
    return f"{n / GIB:.1f} GiB"


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run needs on the device (see the module docstring for the phases).

    Attributes:
        weights: DiT weights resident while sampling (the streamed part only with ``"blocks"``).
        activations: peak of one DiT forward at the forward's batch.
        text_encoder: text-encoder weights; vaes: video VAE + audio VAE + vocoder weights.
        vae_decode_peak: working memory of the chunked video decode (weights excluded).
        anchor_encode_peak: working memory of encoding the still-video anchor during sampling
            (0 when the VAEs are not in the sampling loop).
        overhead: latents, sampler state, guidance outputs, conditioning and (fp8) the cast copy
            of the largest Linear weight.
        peak: the largest need over the phases; phases: ``(name, bytes)`` of each phase.
        passes, batched: guidance passes per step and whether they share one forward.
        tokens: ``(video, audio)`` tokens per pass.
        latent_shape: ``(T_v, H, W, T_a)``; frame: ``(width, height, pixel_frames)`` actually
            estimated (sizes rounded up to whole patches).
        notes: assumptions worth showing to the user.
    """

    weights: int
    activations: int
    text_encoder: int
    vaes: int
    vae_decode_peak: int
    anchor_encode_peak: int
    overhead: int
    peak: int
    phases: tuple[tuple[str, int], ...]
    passes: int
    batched: bool
    tokens: tuple[int, int]
    latent_shape: tuple[int, int, int, int]
    frame: tuple[int, int, int]
    offload: str
    weight_dtype: str
    notes: tuple[str, ...] = ()
    config: HarmonyConfig | None = field(default=None, repr=False, compare=False)
    request: tuple[tuple[str, Any], ...] = field(default=(), repr=False, compare=False)

    @property
    def sampling_extra(self) -> int:
        """What sampling needs on top of weights that are already loaded (activations, overhead,
        the anchor VAE's work): compare it with the free memory once the model is resident."""
        return self.overhead + max(self.activations, self.anchor_encode_peak)

    def describe(self) -> str:
        """A readable multi-line breakdown in GiB."""
        w, h, t = self.frame
        t_v, lh, lw, t_a = self.latent_shape
        mode = "batched" if self.batched else "sequential"
        lines = [
            f"{w}x{h}, {t} frames (latent {t_v}x{lh}x{lw}, audio {t_a}): {self.tokens[0]} video + "
            f"{self.tokens[1]} audio tokens; {self.passes} guidance pass(es) {mode}; weights {self.weight_dtype}; "
            f"offload {self.offload}",
            f"  DiT weights on device   {format_gib(self.weights):>10}",
            f"  DiT activations         {format_gib(self.activations):>10}",
            f"  text encoder            {format_gib(self.text_encoder):>10}",
            f"  VAEs                    {format_gib(self.vaes):>10}",
            f"  VAE decode (working)    {format_gib(self.vae_decode_peak):>10}",
        ]
        if self.anchor_encode_peak:
            lines.append(f"  anchor encode (working) {format_gib(self.anchor_encode_peak):>10}")
        lines.append(f"  latents / buffers       {format_gib(self.overhead):>10}")
        lines += [f"  phase {name:<17} {format_gib(n):>10}" for name, n in self.phases]
        lines.append(f"  PEAK                    {format_gib(self.peak):>10}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _check_choice(name: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ValueError(f"{name}={value!r} is invalid: expected one of {options}.")


def estimate_memory(
    config: HarmonyConfig,
    *,
    width: int,
    height: int,
    seconds: float | None = None,
    num_frames: int | None = None,
    weight_dtype: str | torch.dtype = "bf16",
    compute_dtype: str | torch.dtype = "bf16",
    passes: int = 3,
    batched: bool = True,
    offload: str = "none",
    text_tokens: int = 512,
    attention: str = "flash",
    batch: int = 1,
    space_stride: int = 16,
    ref_seconds: float = 0.0,
    text_encoder_dtype: str | torch.dtype | None = None,
    vae_dtype: str | torch.dtype = "bf16",
    anchor_vaes: bool | None = None,
    blocks_resident: int = 2,
    prompts: int = 2,
    components: Components | None = None,
) -> MemoryEstimate:
    """Estimate the device memory of generating one clip.

    Args:
        config: the model.
        width, height: frame size in pixels (rounded up to whole ``space_stride * patch`` units).
        seconds / num_frames: clip length; give exactly one (``num_frames`` must fit the causal
            VAE, ``1 + 4k``).
        weight_dtype: DiT weight storage ``"fp32" | "bf16" | "fp16" | "fp8"`` or the torch dtype
            (fp8 quantises the Linear weights only; everything else stays in ``compute_dtype``).
        compute_dtype: activations ``"fp32" | "bf16" | "fp16"``.
        passes: guidance passes per step (SyncCFG 3: joint, silent-audio and still-video
            anchors, +1 with a negative prompt; text CFG 2; none 1).
        batched: stack the passes on the batch axis (one forward) or run them one by one.
        offload: ``"none" | "model" | "blocks"`` (module docstring).
        text_tokens: prompt tokens (Wan/Ovi pad to 512).
        attention: ``"flash"`` / ``"sdpa"`` (fused, no score matrix) or ``"math"``.
        batch: clips generated together.
        space_stride: the video VAE's spatial stride (Wan2.2: 16).
        ref_seconds: reference-audio length (Harmony's timbre prompt), 0 for none.
        text_encoder_dtype: defaults to ``weight_dtype``; vae_dtype: the VAEs' dtype.
        anchor_vaes: whether the video VAE runs inside the sampling loop (SyncCFG's still-video
            anchor); default: ``passes >= 3``.
        blocks_resident: dual blocks on the device at a time with ``offload="blocks"``.
        prompts: prompts encoded at once (positive + negative).
        components: text encoder / VAE sizes; default ``default_components(config)``.

    Returns:
        A ``MemoryEstimate``; ``peak`` is the number to compare with the free device memory.
    """
    weight_dtype, compute_dtype, vae_dtype = (dtype_name(d) for d in (weight_dtype, compute_dtype, vae_dtype))
    text_encoder_dtype = None if text_encoder_dtype is None else dtype_name(text_encoder_dtype)
    _check_choice("offload", offload, OFFLOAD)
    _check_choice("weight_dtype", weight_dtype, tuple(DTYPE_BYTES))
    _check_choice("compute_dtype", compute_dtype, ("fp32", "bf16", "fp16"))
    _check_choice("vae_dtype", vae_dtype, ("fp32", "bf16", "fp16"))
    te_dtype = text_encoder_dtype or weight_dtype
    _check_choice("text_encoder_dtype", te_dtype, tuple(DTYPE_BYTES))
    for name, value in (("width", width), ("height", height), ("passes", passes), ("batch", batch)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} is invalid: expected a positive int.")
    if (seconds is None) == (num_frames is None):
        raise ValueError(f"give exactly one of seconds={seconds!r} and num_frames={num_frames!r}: the clip length.")
    if seconds is not None and not seconds > 0:
        raise ValueError(f"seconds={seconds!r} is invalid: expected > 0.")
    request = dict(
        width=width, height=height, seconds=seconds, num_frames=num_frames, weight_dtype=weight_dtype,
        compute_dtype=compute_dtype, passes=passes, batched=batched, offload=offload, text_tokens=text_tokens,
        attention=attention, batch=batch, space_stride=space_stride, ref_seconds=ref_seconds,
        text_encoder_dtype=text_encoder_dtype, vae_dtype=vae_dtype, anchor_vaes=anchor_vaes,
        blocks_resident=blocks_resident, prompts=prompts, components=components,
    )  # fmt: skip
    tl = config.timeline
    frames = tl.pixel_frames_for_seconds(seconds) if seconds is not None else num_frames
    t_v = tl.video_latent_frames(frames)  # raises a clear ValueError for an invalid count
    _, ph, pw = config.video.patch_size
    lat_h = ph * math.ceil(height / (space_stride * ph))
    lat_w = pw * math.ceil(width / (space_stride * pw))
    t_a = tl.audio_latents_for_video(t_v)
    n_ref = tl.audio_latent_frames(ref_seconds) if ref_seconds > 0 else 0
    notes = []
    if (lat_w * space_stride, lat_h * space_stride) != (width, height):
        notes.append(
            f"{width}x{height} is not a multiple of {space_stride * pw}x{space_stride * ph}: estimated at the next "
            f"valid size {lat_w * space_stride}x{lat_h * space_stride}."
        )
    comp = components if components is not None else default_components(config)
    c = DTYPE_BYTES[compute_dtype]
    vb = DTYPE_BYTES[vae_dtype]

    # --- DiT -------------------------------------------------------------------------------------
    fwd_batch = batch * (passes if batched else 1)
    acts = activation_bytes(
        config, latent_frames=t_v, latent_h=lat_h, latent_w=lat_w, audio_latents=t_a, batch=fwd_batch,
        compute_dtype=compute_dtype, attention=attention, ref_latents=n_ref, text_tokens=text_tokens,
        speech_tokens=text_tokens if config.speech_dim else 0,
    )  # fmt: skip
    dit_full = weight_bytes(config, weight_dtype, compute_dtype)
    dit_resident = (
        weight_bytes(config, weight_dtype, compute_dtype, blocks_resident=blocks_resident)
        if offload == "blocks"
        else dit_full
    )
    latent_values = batch * (config.video.in_channels * t_v * lat_h * lat_w + config.audio.in_channels * t_a)
    # float32 latents: sampler state and history (~6 copies), each pass's output, the stacked pass
    # inputs, the guidance combination (~3) and the anchors (2); conditioning of every pass.
    overhead = (6 + 2 * passes + 3 + 2) * latent_values * 4
    overhead += passes * batch * (2 * text_tokens * config.video.text_dim) * c
    if weight_dtype != compute_dtype:  # layers are cast to the compute dtype one at a time
        overhead += dit_params(config).largest_linear * c

    # --- text encoder and VAEs -------------------------------------------------------------------
    te = comp.text_encoder
    te_weights = te_acts = 0
    if te is not None:
        if te_dtype == "fp8":
            te_weights = te.linear_params + (te.params - te.linear_params) * 2
        else:
            te_weights = te.params * DTYPE_BYTES[te_dtype]
        te_acts = te.activation_bytes(prompts * batch, 2 if te_dtype != "fp32" else 4)
    else:
        notes.append("text encoder unknown for this config: not counted.")
    video_vae_weights = decode = anchor = 0
    if comp.video_vae is not None:
        video_vae_weights = comp.video_vae.params * vb
        decode = batch * comp.video_vae.decode_elements(t_v, lat_h, lat_w) * vb
        if anchor_vaes if anchor_vaes is not None else passes >= 3:
            anchor = batch * comp.video_vae.encode_elements(frames, lat_h * space_stride, lat_w * space_stride) * vb
            notes.append("SyncCFG's still-video anchor is re-encoded by the video VAE during sampling.")
    else:
        notes.append("video VAE unknown for this config: not counted.")
    audio_weights = audio_decode = 0
    if comp.audio_codec is not None:
        audio_weights = comp.audio_codec.params * vb
        audio_decode = batch * comp.audio_codec.decode_elements(frames / tl.fps) * vb
    else:
        notes.append("audio VAE unknown for this config: not counted.")
    vaes = video_vae_weights + audio_weights

    # --- phases ----------------------------------------------------------------------------------
    anchor_weights = video_vae_weights if anchor else 0
    sampling_transient = overhead + max(acts, anchor)
    decode_transient = max(decode, audio_decode) + latent_values * 4
    if offload == "none":
        resident = dit_full + te_weights + vaes
        phases = (
            ("text encoding", resident + te_acts),
            ("sampling", resident + sampling_transient),
            ("decoding", resident + decode_transient),
        )
    else:
        phases = (
            ("text encoding", te_weights + te_acts),
            ("sampling", dit_resident + anchor_weights + sampling_transient),
            ("decoding", vaes + decode_transient),
        )
    return MemoryEstimate(
        weights=dit_resident,
        activations=acts,
        text_encoder=te_weights,
        vaes=vaes,
        vae_decode_peak=decode,
        anchor_encode_peak=anchor,
        overhead=overhead,
        peak=max(n for _, n in phases),
        phases=phases,
        passes=passes,
        batched=batched,
        tokens=(tokens(config, t_v, lat_h, lat_w), t_a + n_ref),
        latent_shape=(t_v, lat_h, lat_w, t_a),
        frame=(lat_w * space_stride, lat_h * space_stride, frames),
        offload=offload,
        weight_dtype=weight_dtype,
        notes=tuple(notes),
        config=config,
        request=tuple(request.items()),
    )


def forward_memory_fn(
    config: HarmonyConfig,
    *,
    v_shape: tuple[int, ...],
    a_shape: tuple[int, ...],
    compute_dtype: str = "bf16",
    attention: str = "flash",
    ref_latents: int = 0,
    text_tokens: int = 512,
) -> Callable[[int], int]:
    """``batch -> bytes`` of one DiT forward, for ``GuidedDenoiser(memory_estimate=...)``.

    Args:
        v_shape: ``(B, C_v, T_v, H, W)``; a_shape: ``(B, C_a, T_a)``, as in ``AVLayout``.
    """
    if len(v_shape) != 5 or len(a_shape) != 3:
        raise ValueError(f"expected v_shape (B, C, T_v, H, W) and a_shape (B, C, T_a); got {v_shape}, {a_shape}.")
    _, _, t_v, h, w = v_shape
    t_a = a_shape[2]

    def fn(batch: int) -> int:
        return activation_bytes(
            config, latent_frames=t_v, latent_h=h, latent_w=w, audio_latents=t_a, batch=batch,
            compute_dtype=compute_dtype, attention=attention, ref_latents=ref_latents, text_tokens=text_tokens,
            speech_tokens=text_tokens if config.speech_dim else 0,
        )  # fmt: skip

    return fn
