"""``flash``: a lamp that flashes with a beep; the light and the beep share one decay envelope.

Flash ``i`` starts at ``first + i * interval`` (plus a per-flash timing jitter for ``i >= 1``). The
lamp's brightness is ``sum_i exp(-(t - t_i) / tau)`` over started flashes (clipped to 1), the
beep's amplitude the same envelope with a 3 ms attack, so the brightest frame of each flash is
the first frame at or after its onset.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import sound
from ..captions import OBJECT_COLORS, level_word, number_word
from ..render import Canvas, box_alpha, circle_alpha, paint
from ._common import Geometry, Script, check_choice, check_range, color_rgb, pick, uniform

__all__ = ["brightness", "check", "flash_times", "render", "sample", "script"]

_TEMPLATES = (
    "a {shape} {color} lamp flashes {n} {times}{tempo}, each flash with a {length}{pitch}-pitched {tone} beep, "
    "{bg} background",
    "on a {bg} background a {color} {shape} light blinks {n} {times}{tempo} with {length}{pitch} {tone} beeps",
)
_MAX_FLASHES = 16


def sample(rng: np.random.Generator, seconds: float) -> dict[str, Any]:
    """Draw a lamp, a beep and a flash rhythm with at least one flash inside ``seconds``.

    Args:
        rng: parameter source.
        seconds: clip duration.

    Returns:
        JSON-serialisable parameters.
    """
    return {
        "color": pick(rng, tuple(OBJECT_COLORS)),
        "color_jitter": [uniform(rng, -0.04, 0.04) for _ in range(3)],
        "shape": pick(rng, ("round", "square")),
        "size": uniform(rng, 0.1, 0.2),
        "cx": uniform(rng, 0.35, 0.65),
        "cy": uniform(rng, 0.35, 0.55),
        "freq": round(float(np.exp(rng.uniform(np.log(300.0), np.log(2000.0)))), 2),
        "tau": uniform(rng, 0.05, 0.2),
        "tone": pick(rng, ("sine", "square")),
        "first": uniform(rng, 0.1, min(0.5, seconds - 0.2)),
        "interval": uniform(rng, 0.28, 0.9),
        "jitter": [uniform(rng, -0.15, 0.15) for _ in range(_MAX_FLASHES)],
        "template": int(rng.integers(len(_TEMPLATES))),
    }


def check(p: dict[str, Any]) -> None:
    """Raise ValueError for parameters the renderer cannot honour."""
    check_choice(p, "color", OBJECT_COLORS)
    check_choice(p, "shape", ("round", "square"))
    check_choice(p, "tone", ("sine", "square"))
    check_range(p, "size", 0.03, 0.4)
    check_range(p, "freq", 50.0, 7000.0)
    check_range(p, "tau", 0.01, 2.0)
    check_range(p, "first", 0.0, 100.0)
    check_range(p, "interval", 0.1, 100.0)
    check_range(p, "template", 0, len(_TEMPLATES) - 1)
    if any(abs(j) > 0.45 for j in p["jitter"]):
        raise ValueError(f"jitter={p['jitter']!r} is invalid: every entry must be within +-0.45 intervals.")


def flash_times(p: dict[str, Any], seconds: float) -> list[float]:
    """Onsets of the flashes that start at least 0.15 s before the end of the clip."""
    out = []
    for i in range(_MAX_FLASHES):
        jitter = p["jitter"][i] if 1 <= i < len(p["jitter"]) else 0.0
        t = p["first"] + (i + jitter) * p["interval"]
        if t >= seconds - 0.15:
            break
        out.append(t)
    return out


def brightness(p: dict[str, Any], times: np.ndarray, seconds: float) -> np.ndarray:
    """Lamp brightness in 0..1 at ``times`` ``[T]`` (instant rise, exponential decay)."""
    b = np.zeros_like(times)
    for t0 in flash_times(p, seconds):
        dt = times - t0
        b += np.where(dt >= 0, np.exp(-np.maximum(dt, 0.0) / p["tau"]), 0.0)
    return np.minimum(b, 1.0)


def script(p: dict[str, Any], seconds: float) -> Script:
    """Caption and flash events (duration: until the envelope falls under 5 %, i.e. 3 tau)."""
    onsets = flash_times(p, seconds)
    n = len(onsets)
    caption = _TEMPLATES[p["template"]].format(
        shape=p["shape"],
        color=p["color"],
        n=number_word(n),
        times="time" if n == 1 else "times",
        tempo=level_word(p["interval"], 0.4, 0.65, (" rapidly", "", " slowly")),
        length=level_word(p["tau"], 0.09, 0.15, ("short ", "", "long ")),
        pitch=level_word(p["freq"], 600.0, 1200.0, ("low", "medium", "high")),
        tone="pure" if p["tone"] == "sine" else "buzzy",
        bg=p["background"],
    )
    events = tuple((t, "flash", 3.0 * p["tau"]) for t in onsets)
    return Script(caption=caption, transcript="", events=events)


def render(
    p: dict[str, Any], geo: Geometry, rng: np.random.Generator, image: torch.Tensor
) -> tuple[torch.Tensor, np.ndarray]:
    """Draw the lamp lit by the flash envelope and synthesise the beeps.

    Returns:
        ``(frames [T, H, W, 3], mix [S] float64)``.
    """
    height, width = geo.height, geo.width
    canvas = Canvas(geo.num_frames, height, width)
    b = torch.from_numpy(brightness(p, geo.frame_times(), geo.seconds)).float().view(-1, 1)  # [T, 1]
    color = color_rgb(p, "color")
    bg = color_rgb(p, "background")
    image.add_(0.08 * b.view(-1, 1, 1, 1) * color)  # the room lights up a little
    r, cx, cy = p["size"] * height, p["cx"] * width, p["cy"] * height
    # Stand and base.
    paint(image, box_alpha(canvas, cx - 0.12 * r, cy, cx + 0.12 * r, 0.9 * height), torch.tensor([0.55, 0.55, 0.57]))
    paint(image, box_alpha(canvas, cx - 0.7 * r, 0.9 * height - 0.25 * r, cx + 0.7 * r, 0.9 * height), bg * 0.5 + 0.2)
    off = 0.3 * color + 0.08
    full = 0.85 * color / color.max().clamp_min(1e-3) + 0.15  # brightest shade of the same hue
    lit = off + b * (full - off)  # [T, 3]
    if p["shape"] == "round":
        # A soft halo: nested translucent discs approximate a radial fall-off (the bulb covers the centre).
        for k in (2.2, 1.8, 1.4):
            paint(image, circle_alpha(canvas, cx, cy, k * r).scaled(0.15 * b.view(-1)), color)
        paint(image, circle_alpha(canvas, cx, cy, r + 0.8), torch.tensor([0.3, 0.3, 0.32]))
        paint(image, circle_alpha(canvas, cx, cy, r), lit)
    else:
        for k in (1.9, 1.6, 1.3):
            halo = box_alpha(canvas, cx - k * r, cy - k * r, cx + k * r, cy + k * r)
            paint(image, halo.scaled(0.13 * b.view(-1)), color)
        frame = box_alpha(canvas, cx - r - 0.8, cy - r - 0.8, cx + r + 0.8, cy + r + 0.8)
        paint(image, frame, torch.tensor([0.3, 0.3, 0.32]))
        paint(image, box_alpha(canvas, cx - r, cy - r, cx + r, cy + r), lit)
    image.clamp_(0.0, 1.0)

    mix = np.zeros(geo.num_samples)
    snd = sound.beep(geo.sample_rate, freq=p["freq"], tau=p["tau"], tone=p["tone"])
    for t in flash_times(p, geo.seconds):
        sound.add_at(mix, t, snd, geo.sample_rate)
    return image, mix
