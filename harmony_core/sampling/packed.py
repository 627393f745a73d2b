"""Guidance on packed AV states whose streams are marked by element masks (ComfyUI's layout).

``GuidedDenoiser`` (``guidance.py``) owns its sampling loop: it knows which latents are clean and
runs its passes itself. A host framework such as ComfyUI owns the loop instead. It hands the
guider a packed state ``x [B, 1, N]`` (video first, then audio), a per-element *noise mask*
(1 = generate, 0 = keep the given latent) and runs one batched model call for several
conditionings. This module holds the pure pieces such a host adapter needs, so the adapter only
marshals data:

* ``frame_generation`` reduces an element mask to one weight per latent frame (what the DiT's
  per-frame timesteps need);
* ``stream_timesteps`` turns one sigma per sample into per-stream, per-frame sigmas, with a clean
  stream (kept latent, or an anchor's replacement) at sigma 0 (Cross-Task Synergy, paper §3.2);
* ``substitute_streams`` replaces a stream by an anchor latent for the samples of a pass;
* ``plan_passes`` decides which SyncCFG / text-CFG passes a step runs (the same rules as
  ``GuidedDenoiser``), ``PASS_CLEAN`` says which stream each pass replaces;
* ``combine_packed`` combines the passes' predictions per stream (paper Eq. 9-10);
* ``static_frame`` picks the latent frame that the static-video anchor holds still;
* ``stream_noise_masks`` builds the element masks of the T2AV / A2V / V2A modes;
* ``keep_clean`` re-imposes the kept latents after sampling (samplers that stop short of sigma 0,
  such as UniPC at 0.001, would otherwise leave them slightly moved).

Every combination is linear with coefficients summing to one, so it applies equally to velocity
and to x0 (denoised) predictions when all passes share the input state and sigma of the guided
stream; hosts that return x0 (ComfyUI's ``calc_cond_batch``) can use it unchanged.
"""

from __future__ import annotations

import torch

from .guidance import GuidanceConfig, combine
from .layout import MODES, AVLayout

__all__ = [
    "PASS_CLEAN",
    "frame_generation",
    "stream_timesteps",
    "substitute_streams",
    "plan_passes",
    "combine_packed",
    "static_frame",
    "stream_noise_masks",
    "keep_clean",
]

# Which stream each pass replaces by a clean anchor latent fed at t = 0: (video, audio).
PASS_CLEAN: dict[str, tuple[float, float]] = {
    "joint": (0.0, 0.0),
    "negative": (0.0, 0.0),
    "anchor_v": (0.0, 1.0),  # video guided against clean silent audio (Eq. 9)
    "anchor_a": (1.0, 0.0),  # audio guided against a clean static video (Eq. 10)
}


def frame_generation(mask: torch.Tensor, batch: int) -> torch.Tensor:
    """Per-latent-frame generation weight from an element mask.

    A frame counts as generated as soon as any of its elements is: its timestep must then be the
    current sigma, since the model cannot be told that part of a frame is clean.

    Args:
        mask: ``[B', C, T, ...]`` (video ``[B', C_v, T_v, H, W]``, audio ``[B', C_a, T_a]``) with
            values in 0..1, 1 = generate; ``B'`` is 1 or ``batch``.
        batch: B, the batch size to expand to.

    Returns:
        ``[B, T]`` float32, the largest mask value inside each frame.
    """
    if mask.dim() < 3:
        raise ValueError(
            f"mask has shape {tuple(mask.shape)}: expected [B, C, T, ...] (a latent-shaped noise mask). "
            "Reshape it to the latent's shape first."
        )
    if mask.shape[0] not in (1, batch):
        raise ValueError(f"mask batch {mask.shape[0]} does not match the latent batch {batch}: expected 1 or {batch}.")
    reduce_dims = [1] + list(range(3, mask.dim()))
    per_frame = mask.float().amax(dim=reduce_dims)  # [B', T]
    return per_frame.expand(batch, -1).contiguous()


def stream_timesteps(
    sigma: torch.Tensor,
    v_gen: torch.Tensor | None = None,
    a_gen: torch.Tensor | None = None,
    *,
    v_clean: torch.Tensor | None = None,
    a_clean: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-stream sigmas: ``sigma`` where a latent is generated, 0 where it is clean.

    Args:
        sigma: ``[B]`` the sampler's noise level per sample.
        v_gen: ``[B, T_v]`` generation weight per video latent frame (``frame_generation``), or
            None (every frame generated).
        a_gen: ``[B, T_a]`` likewise per audio latent, or None.
        v_clean: ``[B]`` 1 where a pass replaces the whole video stream by a clean latent, else 0.
        a_clean: ``[B]`` likewise for audio.

    Returns:
        ``(v_t, a_t)``: ``[B, T_v]`` / ``[B, T_a]`` when the matching weights are given, else
        ``[B]``; float32 sigmas in [0, 1].
    """
    s = sigma.float().reshape(-1)

    def one(gen: torch.Tensor | None, clean: torch.Tensor | None) -> torch.Tensor:
        keep = torch.ones_like(s) if clean is None else 1.0 - clean.float().reshape(-1).to(s.device)
        if keep.shape != s.shape:
            raise ValueError(f"clean flags have {keep.shape[0]} entries for {s.shape[0]} sigmas: expected one "
                             "per sample.")
        if gen is None:
            return s * keep
        if gen.dim() != 2 or gen.shape[0] != s.shape[0]:
            raise ValueError(f"frame weights have shape {tuple(gen.shape)}: expected [B={s.shape[0]}, T].")
        return s[:, None] * keep[:, None] * gen.float().to(s.device)

    return one(v_gen, v_clean), one(a_gen, a_clean)


def substitute_streams(
    v_x: torch.Tensor,
    a_x: torch.Tensor,
    *,
    v_sub: torch.Tensor | None = None,
    a_sub: torch.Tensor | None = None,
    v_flag: torch.Tensor | None = None,
    a_flag: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace whole streams by anchor latents, per sample.

    Args:
        v_x: ``[B, C_v, T_v, H, W]``; a_x: ``[B, C_a, T_a]`` the model inputs.
        v_sub, a_sub: replacement latents of the same shapes (or None: nothing to replace).
        v_flag, a_flag: ``[B]`` 1 where the sample's stream is replaced, 0 where it is kept.

    Returns:
        ``(v_x, a_x)`` with the flagged samples' streams replaced (the inputs themselves when
        nothing is flagged).
    """

    def one(x: torch.Tensor, sub: torch.Tensor | None, flag: torch.Tensor | None, name: str) -> torch.Tensor:
        if sub is None or flag is None:
            return x
        flag = flag.reshape(-1).to(x.device)
        if not bool((flag > 0.5).any()):
            return x
        if sub.shape != x.shape or flag.shape[0] != x.shape[0]:
            raise ValueError(
                f"{name} replacement {tuple(sub.shape)} with {flag.shape[0]} flags does not fit the input "
                f"{tuple(x.shape)}: expected the same shape and one flag per sample."
            )
        pick = (flag > 0.5).view(-1, *([1] * (x.dim() - 1)))
        return torch.where(pick, sub.to(device=x.device, dtype=x.dtype), x)

    return one(v_x, v_sub, v_flag, "video"), one(a_x, a_sub, a_flag, "audio")


def plan_passes(
    guidance: GuidanceConfig,
    *,
    sigma: float,
    generates_video: bool,
    generates_audio: bool,
    static_frame_known: bool,
) -> list[str]:
    """Names of the passes one step runs (the rules of ``GuidedDenoiser``).

    * ``joint`` always;
    * ``anchor_v`` (clean silent audio) when video is generated and ``video_sync_scale != 1``;
    * ``anchor_a`` (clean static video) when audio is generated, ``audio_sync_scale != 1`` and the
      frame to hold still is known (in pure T2AV it is the previous step's estimate, so the first
      step has none);
    * ``negative`` when a text-CFG scale is not 1;
    * outside ``guidance.interval`` only ``joint``.

    Args:
        guidance: scales and interval.
        sigma: the current noise level.
        generates_video, generates_audio: whether any latent of the stream is generated.
        static_frame_known: whether ``static_frame`` has a frame to offer.

    Returns:
        Pass names in the order ``joint, anchor_v, anchor_a, negative`` (absent ones skipped).
    """
    passes = ["joint"]
    lo, hi = guidance.interval
    if not lo <= sigma <= hi:
        return passes
    if guidance.video_sync_scale != 1.0 and generates_video:
        passes.append("anchor_v")
    if guidance.audio_sync_scale != 1.0 and generates_audio and static_frame_known:
        passes.append("anchor_a")
    if guidance.video_text_scale != 1.0 or guidance.audio_text_scale != 1.0:
        passes.append("negative")
    return passes


def combine_packed(outs: dict[str, torch.Tensor], layout: AVLayout, guidance: GuidanceConfig) -> torch.Tensor:
    """Combine the passes' predictions per stream (paper Eq. 9-10, plus optional text CFG).

    Video takes ``joint + (s_v - 1)(joint - anchor_v) + (t_v - 1)(joint - negative)``, audio the
    same with ``anchor_a`` and the audio scales; a missing pass contributes nothing.

    Args:
        outs: pass name -> packed prediction ``[B, N]`` or ``[B, 1, N]`` (video first); must hold
            ``"joint"``.
        layout: the stream shapes inside the packed state.
        guidance: the scales.

    Returns:
        The combined prediction, same shape as ``outs["joint"]``.
    """
    if "joint" not in outs:
        raise ValueError(f"combine_packed needs the 'joint' pass; got {sorted(outs)}.")
    joint = outs["joint"]
    shape = joint.shape

    def split(name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        t = outs.get(name)
        if t is None:
            return None
        if t.shape != shape:
            raise ValueError(f"pass '{name}' has shape {tuple(t.shape)}, joint has {tuple(shape)}: expected equal.")
        return layout.unpack(t.reshape(shape[0], -1))

    jv, ja = split("joint")
    av, aa, neg = split("anchor_v"), split("anchor_a"), split("negative")
    g = guidance
    v = combine(jv, anchor=None if av is None else av[0], sync_scale=g.video_sync_scale,
                negative=None if neg is None else neg[0], text_scale=g.video_text_scale)
    a = combine(ja, anchor=None if aa is None else aa[1], sync_scale=g.audio_sync_scale,
                negative=None if neg is None else neg[1], text_scale=g.audio_text_scale)
    return layout.pack(v, a).reshape(shape)


def static_frame(
    v_x: torch.Tensor, v_gen: torch.Tensor | None, last_v_x0: torch.Tensor | None
) -> torch.Tensor | None:
    """The latent frame the static-video anchor holds still.

    When video frame 0 is kept clean (V2A, or a reference first frame), the input already holds
    it; otherwise the previous step's estimate of frame 0 is used (None before the first step).

    Args:
        v_x: ``[B, C_v, T_v, H, W]`` the current video input (kept frames are clean in it).
        v_gen: ``[B, T_v]`` per-frame generation weights, or None (all generated).
        last_v_x0: ``[B, C_v, T_v, H, W]`` the previous joint x0 estimate of the video, or None.

    Returns:
        ``[B, C_v, 1, H, W]`` or None.
    """
    if v_gen is not None and not bool((v_gen[:, 0] > 0).any()):
        return v_x[:, :, :1]
    return None if last_v_x0 is None else last_v_x0[:, :, :1]


def stream_noise_masks(
    mode: str, v_shape: tuple[int, ...], a_shape: tuple[int, ...], *, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Element noise masks of a generation mode (1 = generate, 0 = keep the given latent).

    Args:
        mode: ``"t2av"`` (both generated), ``"a2v"`` (audio kept) or ``"v2a"`` (video kept).
        v_shape: ``(B, C_v, T_v, H, W)``; a_shape: ``(B, C_a, T_a)``.

    Returns:
        ``(v_mask [B, C_v, T_v, H, W], a_mask [B, C_a, T_a])`` float32.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not a generation mode; expected one of {MODES}.")
    v = torch.full(tuple(v_shape), 0.0 if mode == "v2a" else 1.0, device=device)
    a = torch.full(tuple(a_shape), 0.0 if mode == "a2v" else 1.0, device=device)
    return v, a


def keep_clean(out: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``out`` where the mask generates, the given latent where it keeps: ``out*m + clean*(1-m)``.

    Args:
        out: ``[B, ...]`` the sampled latent of one stream.
        clean: the stream's input latent (same shape, or batch 1).
        mask: its noise mask (1 = generate, 0 = keep), broadcastable to ``out``.

    Returns:
        A tensor like ``out``; kept positions equal ``clean`` exactly.
    """
    m = mask.to(device=out.device, dtype=out.dtype)
    c = clean.to(device=out.device, dtype=out.dtype)
    if m.dim() != out.dim() or c.dim() != out.dim():
        raise ValueError(f"mask {tuple(mask.shape)} / clean {tuple(clean.shape)} do not match the latent "
                         f"{tuple(out.shape)}: expected tensors of the latent's rank.")
    return torch.where(m == 0, c.expand_as(out), out * m + c * (1 - m))
