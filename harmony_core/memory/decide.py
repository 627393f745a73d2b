"""Decisions built on the estimate: batched or sequential guidance passes, and failing early.

``choose_batching`` picks batched guidance passes when their estimate fits the free memory and
sequential ones otherwise; ``check_fits`` raises ``InsufficientMemoryError`` (a ``MemoryError``)
before a run that would not fit, with a message naming the need, the usable free memory and what
each fix (sequential passes, offload, fp8, block streaming, a shorter clip, a smaller frame) would
need. Both keep ``margin`` (10%) of the free memory for what the estimate does not model:
allocator fragmentation and kernels' scratch space.
"""

from __future__ import annotations

import logging
from typing import Any

from ..config import HarmonyConfig
from .estimate import MemoryEstimate, format_gib, estimate_memory

__all__ = ["InsufficientMemoryError", "choose_batching", "check_fits"]

log = logging.getLogger(__name__)


class InsufficientMemoryError(MemoryError):
    """Raised before a run that would not fit; the message lists the fixes that would.

    Attributes:
        need, free: bytes; what: the operation; estimate: the estimate that did not fit.
    """

    def __init__(self, message: str, *, need: int, free: int, what: str, estimate: MemoryEstimate) -> None:
        super().__init__(message)
        self.need, self.free, self.what, self.estimate = need, free, what, estimate


def _usable(free_bytes: int, margin: float) -> int:
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin={margin!r} is invalid: expected a fraction in [0, 1).")
    return int(free_bytes * (1.0 - margin))


def choose_batching(
    config: HarmonyConfig, *, free_bytes: int, margin: float = 0.1, weights_loaded: bool = False, **kwargs: Any
) -> tuple[bool, MemoryEstimate]:
    """Batch the guidance passes when that fits, else run them one at a time.

    Args:
        config: the model.
        free_bytes: free device memory (e.g. ``torch.cuda.mem_get_info()[0]``).
        margin: fraction of ``free_bytes`` kept for what the estimate does not model
            (fragmentation, kernel scratch space); 0.1 by default.
        weights_loaded: the models sampling uses (the DiT and, with SyncCFG, the video VAE) are
            already on the device, so only ``sampling_extra`` must fit (what a sampler sees);
            otherwise the whole ``peak`` must (what a loader sees).
        **kwargs: everything else ``estimate_memory`` takes except ``batched``.

    Returns:
        ``(batched, estimate)``: the estimate of the chosen mode. It may still not fit; pass it
        to ``check_fits`` to fail with a clear message.
    """
    kwargs.pop("batched", None)
    usable = _usable(free_bytes, margin)
    est = estimate_memory(config, batched=True, **kwargs)
    need = est.sampling_extra if weights_loaded else est.peak
    if need <= usable or est.passes == 1:
        return True, est
    seq = estimate_memory(config, batched=False, **kwargs)
    log.info(
        "guidance passes run one at a time: batched they need %s, %s is usable", format_gib(need), format_gib(usable)
    )
    return False, seq


_FIXES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("run the guidance passes one at a time (batched=False)", {"batched": False}),
    ("offload the text encoder and VAEs between phases (offload='model')", {"offload": "model"}),
    ("store the DiT weights in fp8 (weight_dtype='fp8')", {"weight_dtype": "fp8"}),
    ("stream the DiT block by block (offload='blocks')", {"offload": "blocks", "batched": False}),
    ("fp8 weights and block streaming", {"weight_dtype": "fp8", "offload": "blocks", "batched": False}),
)


def check_fits(
    estimate: MemoryEstimate, free_bytes: int, *, what: str, margin: float = 0.1, weights_loaded: bool = False
) -> None:
    """Raise ``InsufficientMemoryError`` before a run that would run out of memory.

    Args:
        estimate: from ``estimate_memory`` / ``choose_batching``.
        free_bytes: free device memory.
        what: the operation, for the message (e.g. ``"HarmonySampler (5 s at 704x704)"``).
        margin, weights_loaded: as in ``choose_batching``.

    Raises:
        InsufficientMemoryError: the message names the need, the usable free memory and, when the
            estimate carries its request, the fixes (offload, fp8, sequential passes, a shorter clip,
            a smaller frame) with what each would need.
    """
    usable = _usable(free_bytes, margin)
    need = estimate.sampling_extra if weights_loaded else estimate.peak
    if need <= usable:
        return
    lines = [
        f"{what} needs about {format_gib(need)} of device memory but only {format_gib(usable)} is usable "
        f"({format_gib(free_bytes)} free, {margin:.0%} kept in reserve).",
        estimate.describe(),
    ]
    fixes = _fixes(estimate, usable, weights_loaded) if estimate.config is not None else []
    if fixes:
        lines.append("Fixes (estimated need; * = fits):")
        lines += [f"  {'*' if fits else '-'} {text}: {format_gib(n)}" for text, n, fits in fixes]
    else:
        lines.append(
            "Fixes: run the guidance passes one at a time, offload models (offload='model' or 'blocks'), "
            "store weights in fp8, or generate fewer seconds or a smaller frame."
        )
    raise InsufficientMemoryError("\n".join(lines), need=need, free=free_bytes, what=what, estimate=estimate)


def _fixes(est: MemoryEstimate, usable: int, weights_loaded: bool) -> list[tuple[str, int, bool]]:
    req = dict(est.request)
    out = []

    def need_of(**change: Any) -> int:
        e = estimate_memory(est.config, **{**req, **change})
        return e.sampling_extra if weights_loaded else e.peak

    for text, change in _FIXES:
        if all(req.get(k) == v for k, v in change.items()):
            continue
        if req.get("offload") == "blocks" and change.get("offload") == "model":
            continue
        out.append((text, need_of(**change), False))
    frames = est.frame[2]
    shorter = dict(num_frames=None, seconds=max(1.0 / est.config.timeline.fps, frames / est.config.timeline.fps / 2))
    out.append((f"half the length ({shorter['seconds']:.1f} s)", need_of(**shorter), False))
    w, h = est.frame[0], est.frame[1]
    step = req["space_stride"] * 2
    smaller = dict(width=max(step, round(w * 0.75 / step) * step), height=max(step, round(h * 0.75 / step) * step))
    out.append((f"a smaller frame ({smaller['width']}x{smaller['height']})", need_of(**smaller), False))
    return [(t, n, n <= usable) for t, n, _ in out]
