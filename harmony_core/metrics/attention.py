"""Where in time does a video frame listen? The A2V attention profile of a trained model.

Harmony's local A2V attention (paper §3.3.1) lets each video latent frame attend to the audio
tokens of its time window. For the video to draw an event on the right frame, that attention must
prefer the sounds *at its own time* over the rest of the window. This measures it: run the model
once, recompute every layer's A2V attention weights from the inputs the layer saw, and average them
by the key's time offset from the query frame's centre (in audio latents).

A value is ``mean weight x number of keys in that frame's window``: **1.0 everywhere means the
frame averages its whole window** (it cannot tell when a sound happened); values well above 1 at
offsets near 0 and below 1 far away mean it localises sounds in time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..model.conditions import HarmonyConditions
from ..model.dit import local_rope_angles
from ..model.rope import apply_rope
from ..model.windows import local_windows

__all__ = ["A2VProfile", "a2v_attention_profile", "format_a2v_profile"]


@dataclass(frozen=True)
class A2VProfile:
    """One layer's A2V attention by time offset.

    Attributes:
        layer: block index.
        by_offset: ``{offset in audio latents: mean weight x window size}`` (1 = uniform).
    """

    layer: int
    by_offset: dict[int, float]

    def mean_over(self, lo: int, hi: int) -> float:
        """Mean of ``by_offset`` over ``lo <= |offset| <= hi`` (NaN if no key lies there)."""
        vals = [v for o, v in self.by_offset.items() if lo <= abs(o) <= hi]
        return sum(vals) / len(vals) if vals else math.nan


@torch.no_grad()
def a2v_attention_profile(
    model: torch.nn.Module,
    v_x: torch.Tensor,
    a_x: torch.Tensor,
    v_t: torch.Tensor,
    a_t: torch.Tensor,
    cond: HarmonyConditions,
) -> list[A2VProfile]:
    """The A2V attention profile of every layer of a ``HarmonyDiT`` on one batch (module docstring).

    Args:
        model: a ``HarmonyDiT`` with local interaction.
        v_x: ``[B, C_v, T_v, H, W]`` video latents at noise level ``v_t``.
        a_x: ``[B, C_a, T_a]`` audio latents at ``a_t`` (the A2V task: clean audio, ``a_t = 0``).
        v_t, a_t: ``[B]`` sigmas in [0, 1].
        cond: the batch's conditioning (reference audio, if any, is not part of the windows).

    Returns:
        One `A2VProfile` per layer, in block order.

    Raises:
        ValueError: the model has no local A2V attention.
    """
    cfg = model.config
    if not cfg.interaction.local:
        raise ValueError("the model has no local A2V attention (config.interaction.local is False): "
                         "nothing to profile.")
    inputs: dict[int, dict[str, torch.Tensor]] = {}
    hooks = []
    for i, block in enumerate(model.video_model.blocks):
        for part in ("norm_x", "norm_ctx"):
            def keep(_mod, args, _out, i=i, part=part):
                inputs.setdefault(i, {})[part] = args[0]

            hooks.append(getattr(block.a2v, part).register_forward_hook(keep))
    try:
        model(v_x, a_x, v_t, a_t, cond)
    finally:
        for h in hooks:
            h.remove()
    _, _, t_v, h, w = v_x.shape
    pt, ph, pw = cfg.video.patch_size
    frames, per_frame, t_a = t_v // pt, (h // ph) * (w // pw), a_x.shape[2]
    inter = cfg.interaction
    win = local_windows(cfg.timeline, frames, t_a, a2v_window=inter.a2v_window, v2a_window=inter.v2a_window,
                        rope_align=inter.rope_align, device=v_x.device)
    angles = local_rope_angles(cfg, win, per_frame)
    offsets = _offsets(cfg, win)  # [T_v, W] in audio latents
    valid = win.a2v_valid
    out = []
    for i, block in enumerate(model.video_model.blocks):
        mod = block.a2v
        q, k, _ = mod._qkv(inputs[i]["norm_x"], inputs[i]["norm_ctx"])
        b, _, n, hd = q.shape
        q = apply_rope(q, angles["a2v_q"]).view(b, frames, per_frame, n, hd).float()
        k = apply_rope(k, angles["a2v_k"])[:, win.a2v_index].float()  # [B, T_v, W, N, K]
        scores = torch.einsum("bfpnd,bfwnd->bfnpw", q, k) / math.sqrt(hd)
        scores = scores.masked_fill(~valid[None, :, None, None, :], float("-inf"))
        weight = scores.softmax(-1).mean(dim=(0, 2, 3)) * valid.sum(1, keepdim=True)  # [T_v, W], 1 = uniform
        sums: dict[int, list[float]] = {}
        for o, x in zip(offsets[valid].tolist(), weight[valid].tolist()):
            sums.setdefault(int(o), []).append(x)
        out.append(A2VProfile(i, {o: sum(v) / len(v) for o, v in sorted(sums.items())}))
    return out


def _offsets(cfg, win) -> torch.Tensor:
    """Offset (audio latents, rounded) of every A2V key from its query frame's centre: ``[T_v, W]``."""
    tl = cfg.timeline
    rate = tl.audio_latent_rate
    centres = torch.tensor([float(sum(tl.video_frame_span(f))) / 2 / tl.fps for f in range(win.a2v_index.shape[0])],
                           dtype=torch.float64)
    keys = (win.a2v_index.cpu().double() + 0.5) / rate
    return torch.round((keys - centres[:, None]) * rate).long().to(win.a2v_index.device)


def format_a2v_profile(profiles: Sequence[A2VProfile], near: int = 1, far: int = 6) -> str:
    """A markdown table: per layer, the profile near the frame's own time (``|offset| <= near``)
    and far from it (``|offset| >= far``)."""
    head = f"| layer | A2V weight at \\|offset\\| ≤ {near} | at \\|offset\\| ≥ {far} | near / far |"
    lines = [head, "|---|---|---|---|"]
    for p in profiles:
        a, z = p.mean_over(0, near), p.mean_over(far, 10**6)
        lines.append(f"| {p.layer} | {a:.2f} | {z:.2f} | {a / z:.2f} |")
    return "\n".join(lines)
