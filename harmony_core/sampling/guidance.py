"""Guidance: text CFG and SyncCFG as pure functions, and the orchestrator that runs the passes.

SyncCFG (paper §3.4) guides each stream against an *anchor* that removes the other modality's
content while keeping it clean:

* Eq. 9  video: ``v = anchor_v + s_v * (joint_v - anchor_v)``, ``anchor_v`` = the video output
  when the audio stream is clean *silent audio* fed at ``a_t = 0``;
* Eq. 10 audio: ``a = anchor_a + s_a * (joint_a - anchor_a)``, ``anchor_a`` = the audio output
  when the video stream is a clean *static video* fed at ``v_t = 0``.

The paper's scales are ``s_v = 3`` and ``s_a = 2``. As an option beyond the paper, a text-CFG term
against a negative prompt can be added (``(s_text - 1) * (joint - negative)``); with every scale at
1 the result is exactly the joint prediction. All combinations are linear, so they are applied to
velocities (equivalently to x0 estimates, since every pass shares x and sigma for the guided
stream).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol
from collections.abc import Callable

import torch

from ..model.conditions import ForwardOptions, HarmonyConditions
from .anchors import AnchorSource
from .layout import AVLayout, StreamMask

__all__ = ["cfg", "sync_cfg", "combine", "GuidanceConfig", "GuidedDenoiser", "VelocityModel"]

log = logging.getLogger(__name__)


def cfg(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (paper Eq. 8): ``uncond + scale * (cond - uncond)``."""
    return uncond + scale * (cond - uncond)


def sync_cfg(joint: torch.Tensor, anchor: torch.Tensor, scale: float) -> torch.Tensor:
    """SyncCFG (paper Eq. 9 / Eq. 10): ``anchor + scale * (joint - anchor)``."""
    return anchor + scale * (joint - anchor)


def combine(
    joint: torch.Tensor,
    *,
    anchor: torch.Tensor | None = None,
    sync_scale: float = 1.0,
    negative: torch.Tensor | None = None,
    text_scale: float = 1.0,
) -> torch.Tensor:
    """``joint + (s_sync - 1)(joint - anchor) + (s_text - 1)(joint - negative)``.

    With ``text_scale == 1`` this is Eq. 9/10; with ``sync_scale == 1`` it is plain CFG; with both
    at 1 it returns ``joint`` itself.
    """
    out = joint
    if anchor is not None and sync_scale != 1.0:
        out = out + (sync_scale - 1.0) * (joint - anchor)
    if negative is not None and text_scale != 1.0:
        out = out + (text_scale - 1.0) * (joint - negative)
    return out


@dataclass(frozen=True)
class GuidanceConfig:
    """Which guidance passes run and how they are combined.

    Attributes:
        video_sync_scale: ``s_v`` of Eq. 9 (paper: 3). 1 disables the silent-audio anchor pass.
        audio_sync_scale: ``s_a`` of Eq. 10 (paper: 2). 1 disables the static-video anchor pass.
        video_text_scale, audio_text_scale: optional text-CFG term against the negative prompt
            (1 = off, the paper's literal SyncCFG).
        anchor_text: conditioning of the anchor passes: ``"positive"`` (paper, literal) or
            ``"negative"`` (UniAVGen found empty-text anchors strengthen text control).
        interval: ``(sigma_lo, sigma_hi)``: guidance applies only while ``sigma_lo <= sigma <=
            sigma_hi``; outside it only the joint pass runs.
        batch: ``"auto"`` (one batched forward unless it would exceed ``memory_budget``),
            ``"always"`` or ``"never"`` (sequential passes, lower peak memory).
        memory_budget: bytes available for one batched forward (None: no limit on CPU, 80% of the
            free memory on CUDA).
    """

    video_sync_scale: float = 3.0
    audio_sync_scale: float = 2.0
    video_text_scale: float = 1.0
    audio_text_scale: float = 1.0
    anchor_text: str = "positive"
    interval: tuple[float, float] = (0.0, 1.0)
    batch: str = "auto"
    memory_budget: int | None = None

    def __post_init__(self) -> None:
        for f in ("video_sync_scale", "audio_sync_scale", "video_text_scale", "audio_text_scale"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 30.0):
                raise ValueError(f"GuidanceConfig.{f}={v!r} is invalid: expected a number in [0, 30] (1 = off).")
        if self.anchor_text not in ("positive", "negative"):
            raise ValueError(f"GuidanceConfig.anchor_text={self.anchor_text!r}: expected 'positive' or 'negative'.")
        lo, hi = self.interval
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"GuidanceConfig.interval={self.interval!r}: expected 0 <= lo <= hi <= 1 in sigma.")
        if self.batch not in ("auto", "always", "never"):
            raise ValueError(f"GuidanceConfig.batch={self.batch!r}: expected 'auto', 'always' or 'never'.")

    @classmethod
    def sync(cls, video: float = 3.0, audio: float = 2.0, **kw: Any) -> GuidanceConfig:
        """The paper's SyncCFG (Eq. 9-10), scales 3 and 2."""
        return cls(video_sync_scale=video, audio_sync_scale=audio, **kw)

    @classmethod
    def text_cfg(cls, video: float = 5.0, audio: float = 4.0, **kw: Any) -> GuidanceConfig:
        """Plain per-stream text CFG against the negative prompt (Ovi-style, Eq. 8)."""
        return cls(video_sync_scale=1.0, audio_sync_scale=1.0, video_text_scale=video, audio_text_scale=audio, **kw)

    @classmethod
    def none(cls) -> GuidanceConfig:
        return cls(video_sync_scale=1.0, audio_sync_scale=1.0)

    @property
    def uses_negative(self) -> bool:
        return self.video_text_scale != 1.0 or self.audio_text_scale != 1.0 or self.anchor_text == "negative"


class VelocityModel(Protocol):
    def __call__(
        self,
        v_x: torch.Tensor,
        a_x: torch.Tensor,
        v_t: torch.Tensor,
        a_t: torch.Tensor,
        cond: HarmonyConditions,
        *,
        options: ForwardOptions | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class _Pass:
    name: str
    v_x: torch.Tensor
    a_x: torch.Tensor
    v_t: torch.Tensor
    a_t: torch.Tensor
    cond: HarmonyConditions


class GuidedDenoiser:
    """The k-diffusion model for a packed AV state: ``denoiser(x [B, N], sigma [B]) -> x0 [B, N]``.

    It decides the passes of each step (joint; silent-audio anchor when video is guided;
    static-video anchor when audio is guided; negative prompt when text CFG is on), runs them as
    one batched forward when memory allows, combines them per stream, and holds the clean streams
    of A2V / V2A / first-frame modes bit-for-bit: their inputs are replaced by the clean latents,
    fed at t = 0, and their x0 estimate *is* the clean latent.

    Args:
        model: a ``VelocityModel`` (``HarmonyDiT``).
        layout: shapes inside the packed state.
        mask: generated (True) vs clean (False) latents.
        cond: positive conditioning (batch B); neg_cond: negative (needed for text CFG or
            ``anchor_text="negative"``).
        guidance: scales, interval, batching.
        anchors: builds the silent / static anchors (needed when a sync scale is not 1).
        clean: packed ``[B, N]`` clean latents for the held positions (zeros elsewhere), or None.
        memory_estimate: ``fn(batch) -> bytes`` of one forward, for ``batch="auto"``.
    """

    def __init__(
        self,
        model: VelocityModel,
        layout: AVLayout,
        mask: StreamMask,
        cond: HarmonyConditions,
        *,
        guidance: GuidanceConfig,
        anchors: AnchorSource | None = None,
        neg_cond: HarmonyConditions | None = None,
        clean: torch.Tensor | None = None,
        memory_estimate: Callable[[int], int] | None = None,
    ) -> None:
        self.model, self.layout, self.mask, self.cond = model, layout, mask, cond
        self.neg_cond, self.guidance, self.anchors = neg_cond, guidance, anchors
        self.clean = clean
        self.memory_estimate = memory_estimate
        if guidance.uses_negative and neg_cond is None:
            raise ValueError(
                "this guidance uses a negative prompt (text scale != 1 or anchor_text='negative') "
                "but no negative conditioning was given; pass neg_cond or set the text scales to 1."
            )
        needs_anchor = (guidance.video_sync_scale != 1.0 and mask.generates_video) or (
            guidance.audio_sync_scale != 1.0 and mask.generates_audio
        )
        if needs_anchor and anchors is None:
            raise ValueError(
                "SyncCFG needs an anchor source (silent audio / static video through the VAEs); "
                "pass anchors=VAEAnchors(...) or set both sync scales to 1."
            )
        self._keep = None if clean is None else ~mask.packed(layout)
        self._last_x0_v: torch.Tensor | None = None
        self.passes_run: list[list[str]] = []  # names of the passes of every step, for tests/bench

    # ------------------------------------------------------------------------------------------
    def _static_frame(self) -> torch.Tensor | None:
        """Latent of the frame held still for the static-video anchor, or None if unknown yet."""
        if not bool(self.mask.v_gen[:, 0].any()) and self.clean is not None:
            v_clean, _ = self.layout.unpack(self.clean)
            return v_clean[:, :, :1]  # reference first frame or the given (V2A) video's first frame
        return None if self._last_x0_v is None else self._last_x0_v[:, :, :1]

    def _plan(self, v_x, a_x, v_t, a_t, sigma: float) -> list[_Pass]:
        g = self.guidance
        passes = [_Pass("joint", v_x, a_x, v_t, a_t, self.cond)]
        if not (g.interval[0] <= sigma <= g.interval[1]):
            return passes
        anchor_cond = self.cond if g.anchor_text == "positive" else self.neg_cond
        if g.video_sync_scale != 1.0 and self.mask.generates_video:
            silent = self.anchors.silent_audio(tuple(a_x.shape), device=a_x.device, dtype=a_x.dtype)
            passes.append(_Pass("anchor_v", v_x, silent, v_t, torch.zeros_like(a_t), anchor_cond))
        if g.audio_sync_scale != 1.0 and self.mask.generates_audio:
            frame = self._static_frame()
            if frame is not None:
                still = self.anchors.static_video(frame, tuple(v_x.shape))
                passes.append(_Pass("anchor_a", still, a_x, torch.zeros_like(v_t), a_t, anchor_cond))
            else:
                log.debug("no first-frame estimate yet at sigma=%.3f: audio sync guidance skipped this step", sigma)
        if g.uses_negative and (g.video_text_scale != 1.0 or g.audio_text_scale != 1.0):
            passes.append(_Pass("negative", v_x, a_x, v_t, a_t, self.neg_cond))
        return passes

    def _run(self, passes: list[_Pass]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        b = self.layout.batch
        batch = self.guidance.batch
        if batch == "auto" and len(passes) > 1:
            budget = self.guidance.memory_budget
            if budget is None and passes[0].v_x.device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(passes[0].v_x.device)
                budget = int(0.8 * free)
            if (
                budget is not None
                and self.memory_estimate is not None
                and self.memory_estimate(b * len(passes)) > budget
            ):
                batch = "never"
        if batch == "never" or len(passes) == 1:
            return {p.name: self.model(p.v_x, p.a_x, p.v_t, p.a_t, p.cond) for p in passes}
        v_out, a_out = self.model(
            torch.cat([p.v_x for p in passes]),
            torch.cat([p.a_x.expand(b, -1, -1) for p in passes]),
            torch.cat([p.v_t for p in passes]),
            torch.cat([p.a_t for p in passes]),
            HarmonyConditions.cat([p.cond for p in passes]),
        )
        return {p.name: (v_out[i * b : (i + 1) * b], a_out[i * b : (i + 1) * b]) for i, p in enumerate(passes)}

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **_: Any) -> torch.Tensor:
        """One denoising prediction. ``x [B, N]`` packed state, ``sigma [B]`` -> x0 ``[B, N]``."""
        if self._keep is not None:
            x = torch.where(self._keep, self.clean.to(x.dtype), x)
        v_x, a_x = self.layout.unpack(x)
        v_t, a_t = self.mask.timesteps(sigma)
        s = float(sigma.flatten()[0])
        passes = self._plan(v_x, a_x, v_t, a_t, s)
        self.passes_run.append([p.name for p in passes])
        out = self._run(passes)
        g = self.guidance
        jv, ja = out["joint"]
        neg = out.get("negative")
        v_vel = combine(
            jv,
            anchor=out["anchor_v"][0] if "anchor_v" in out else None,
            sync_scale=g.video_sync_scale,
            negative=neg[0] if neg else None,
            text_scale=g.video_text_scale,
        )
        a_vel = combine(
            ja,
            anchor=out["anchor_a"][1] if "anchor_a" in out else None,
            sync_scale=g.audio_sync_scale,
            negative=neg[1] if neg else None,
            text_scale=g.audio_text_scale,
        )
        # x0 = x - sigma * v per stream, with sigma = 0 on clean latents (their x0 is themselves)
        v_sig = v_t[:, None, :, None, None].to(v_x.dtype)
        a_sig = a_t[:, None, :].to(a_x.dtype)
        v_x0 = v_x - v_sig * v_vel.to(v_x.dtype)
        a_x0 = a_x - a_sig * a_vel.to(a_x.dtype)
        self._last_x0_v = v_x0
        x0 = self.layout.pack(v_x0, a_x0)
        if self._keep is not None:
            x0 = torch.where(self._keep, self.clean.to(x0.dtype), x0)
        return x0
