"""Latent generation for every mode: joint T2AV, A2V, V2A and reference-image first frame.

``generate_latents`` builds the packed state, the per-stream masks, the guided denoiser and the
sigma schedule, runs one of the k-diffusion-signature samplers, and returns both latents. Clean
streams (the given audio in A2V, the given video in V2A, a reference first frame) come back
bit-for-bit identical to what was passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

import torch

from ..model.conditions import HarmonyConditions
from .anchors import AnchorSource
from .guidance import GuidanceConfig, GuidedDenoiser, VelocityModel
from .layout import AVLayout, mode_mask
from .samplers import get_sampler
from .schedules import DEFAULT_SHIFT, DEFAULT_STEPS, flow_sigmas

__all__ = ["GenerationRequest", "generate_latents"]


@dataclass(frozen=True)
class GenerationRequest:
    """What to sample.

    Attributes:
        mode: ``"t2av"``, ``"a2v"`` or ``"v2a"``.
        steps: sampler steps (paper: 40).
        shift: schedule shift (paper: 5).
        sampler: ``"euler"``, ``"heun"`` or ``"unipc"``.
        guidance: the guidance passes and scales.
    """

    mode: str = "t2av"
    steps: int = DEFAULT_STEPS
    shift: float = DEFAULT_SHIFT
    sampler: str = "unipc"
    guidance: GuidanceConfig = GuidanceConfig()

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps={self.steps!r} is invalid: expected an int >= 1 (paper: 40).")
        get_sampler(self.sampler)


@torch.no_grad()
def generate_latents(
    model: VelocityModel,
    cond: HarmonyConditions,
    *,
    v_shape: tuple[int, ...],
    a_shape: tuple[int, ...],
    request: GenerationRequest,
    generator: torch.Generator,
    neg_cond: HarmonyConditions | None = None,
    anchors: AnchorSource | None = None,
    v_clean: torch.Tensor | None = None,
    a_clean: torch.Tensor | None = None,
    first_frame: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    callback: Callable[[dict[str, Any]], None] | None = None,
    memory_estimate: Callable[[int], int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample a video latent and an audio latent.

    Args:
        model: velocity model (``HarmonyDiT``).
        cond / neg_cond: positive / negative conditioning, batch B.
        v_shape: ``(B, C_v, T_v, H, W)``; a_shape: ``(B, C_a, T_a)``.
        request: mode, steps, shift, sampler and guidance.
        generator: the only source of randomness (initial noise).
        anchors: SyncCFG anchor builder (silent audio / static video through the VAEs).
        v_clean: ``[B, C_v, T_v, H, W]`` the given video (V2A).
        a_clean: ``[B, C_a, T_a]`` the given audio (A2V).
        first_frame: ``[B, C_v, 1, H, W]`` clean first latent frame (reference image), any mode
            that generates video.
        callback: called once per step with ``{i, sigma, sigma_next, x, denoised}``.
        memory_estimate: bytes of one forward at a batch size (decides batched guidance passes).

    Returns:
        ``(v_x0 [B, C_v, T_v, H, W], a_x0 [B, C_a, T_a])`` on ``device`` in float32.
    """
    mode = request.mode
    layout = AVLayout(tuple(v_shape), tuple(a_shape))
    b = layout.batch
    if mode == "a2v" and a_clean is None:
        raise ValueError("mode='a2v' draws video for a given sound: pass the audio latent as a_clean.")
    if mode == "v2a" and v_clean is None:
        raise ValueError("mode='v2a' adds sound to a given video: pass the video latent as v_clean.")
    for name, t, shape in (("a_clean", a_clean, layout.a_shape), ("v_clean", v_clean, layout.v_shape)):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(
                f"{name} has shape {tuple(t.shape)} but the requested clip needs {shape}; "
                f"encode inputs at the clip's length and size."
            )
    if first_frame is not None and tuple(first_frame.shape) != (b, layout.v_shape[1], 1, *layout.v_shape[3:]):
        raise ValueError(
            f"first_frame has shape {tuple(first_frame.shape)}: expected "
            f"{(b, layout.v_shape[1], 1, *layout.v_shape[3:])} (one latent frame)."
        )
    mask = mode_mask(mode, layout, clean_first_frame=first_frame is not None and mode != "v2a", device=device)

    v0 = torch.zeros(layout.v_shape, device=device, dtype=dtype) if v_clean is None else v_clean.to(device, dtype)
    a0 = torch.zeros(layout.a_shape, device=device, dtype=dtype) if a_clean is None else a_clean.to(device, dtype)
    if first_frame is not None and mode != "v2a":
        v0 = v0.clone()
        v0[:, :, :1] = first_frame.to(device, dtype)
    holds_clean = not (bool(mask.v_gen.all()) and bool(mask.a_gen.all()))
    clean = layout.pack(v0, a0) if holds_clean else None

    sigmas = flow_sigmas(request.steps, shift=request.shift, device=device, dtype=torch.float64)
    noise = torch.randn((b, layout.v_numel + layout.a_numel), generator=generator, dtype=torch.float32).to(
        device, dtype
    )
    s0 = float(sigmas[0])
    x = noise * s0 + (clean if clean is not None else torch.zeros_like(noise)) * (1.0 - s0)
    keep = None if clean is None else ~mask.packed(layout)
    if keep is not None:
        x = torch.where(keep, clean, x)

    denoiser = GuidedDenoiser(
        model,
        layout,
        mask,
        cond.to(device),
        guidance=request.guidance,
        anchors=anchors,
        neg_cond=None if neg_cond is None else neg_cond.to(device),
        clean=clean,
        memory_estimate=memory_estimate,
    )
    sampler = get_sampler(request.sampler)
    x = sampler(denoiser, x, sigmas.to(dtype), extra_args={}, callback=callback, disable=True)
    if keep is not None:
        x = torch.where(keep, clean, x)  # bit-for-bit: samplers never move the clean streams
    v_out, a_out = layout.unpack(x)
    return v_out.float(), a_out.float()
