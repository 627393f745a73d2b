"""``drum``: a mallet striking a drum at a tempo, with timing jitter and per-hit strength.

Hit ``i`` lands at ``first + (i + jitter_i) * 60 / tempo`` (no jitter on the first hit). Between
hits the mallet head follows ``A * sin(pi * u)`` above the membrane (``u`` the fraction of the
inter-hit interval, ``A`` proportional to the next hit's strength), so it touches the membrane
exactly at each hit. The membrane squashes and brightens with ``sum_i v_i exp(-(t - t_i) / 70 ms)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import sound
from ..captions import OBJECT_COLORS, level_word
from ..render import Canvas, box_alpha, circle_alpha, ellipse_alpha, paint
from ._common import Geometry, Script, check_choice, check_range, color_rgb, pick, uniform

__all__ = ["check", "hits", "mallet_height", "render", "sample", "script"]

_TEMPLATES = (
    "a mallet hits a {size}{color} drum at a {tempo} tempo, {pitch} drum beats, {bg} background",
    "{tempo} {pitch}-pitched drumming: a stick strikes a {size}{color} drum on a {bg} background",
    "a {size}{color} drum is struck at a {tempo} pace with a {pitch} boom, {bg} background",
)
_LIST = 32  # stored jitter / strength values; later hits use jitter 0 and strength 0.8
_LIFT = 0.28  # H units: mallet lift for a full-strength hit
_REACT_TAU = 0.07  # s: membrane reaction decay


def sample(rng: np.random.Generator, seconds: float) -> dict[str, Any]:
    """Draw a drum, a tempo and a hit pattern with at least one hit inside ``seconds``.

    Args:
        rng: parameter source.
        seconds: clip duration.

    Returns:
        JSON-serialisable parameters.
    """
    width = uniform(rng, 0.16, 0.26)
    return {
        "color": pick(rng, tuple(OBJECT_COLORS)),
        "color_jitter": [uniform(rng, -0.04, 0.04) for _ in range(3)],
        "width": width,
        "cx": uniform(rng, 0.4, 0.6),
        "top": uniform(rng, 0.5, 0.62),
        # Bigger drums sound lower: f ~ 30 / width (H units), times a random tuning factor.
        "freq": round(30.0 / width * float(rng.uniform(0.8, 1.25)), 2),
        "tau": uniform(rng, 0.1, 0.35),
        "tempo": uniform(rng, 60.0, 170.0, digits=2),
        "first": uniform(rng, 0.15, min(0.5, seconds - 0.15)),
        "jitter": [uniform(rng, -0.06, 0.06) for _ in range(_LIST)],
        "velocity": [uniform(rng, 0.55, 1.0) for _ in range(_LIST)],
        "side": pick(rng, ("left", "right")),
        "template": int(rng.integers(len(_TEMPLATES))),
    }


def check(p: dict[str, Any]) -> None:
    """Raise ValueError for parameters the renderer cannot honour."""
    check_choice(p, "color", OBJECT_COLORS)
    check_choice(p, "side", ("left", "right"))
    check_range(p, "width", 0.05, 0.4)
    check_range(p, "top", 0.2, 0.8)
    check_range(p, "freq", 30.0, 2000.0)
    check_range(p, "tau", 0.02, 2.0)
    check_range(p, "tempo", 20.0, 400.0)
    check_range(p, "first", 0.0, 100.0)
    check_range(p, "template", 0, len(_TEMPLATES) - 1)
    if any(abs(j) > 0.45 for j in p["jitter"]) or any(not 0.0 <= v <= 1.5 for v in p["velocity"]):
        raise ValueError(
            "drum jitter must stay within +-0.45 beats (hits keep their order) and velocity within 0..1.5; "
            f"got jitter={p['jitter']!r}, velocity={p['velocity']!r}."
        )


def hits(p: dict[str, Any], seconds: float) -> list[tuple[float, float]]:
    """``[(time, strength), ...]`` of the hits that land at least 0.1 s before the end."""
    beat = 60.0 / p["tempo"]
    out = []
    for i in range(100_000):
        jitter = p["jitter"][i] if 1 <= i < len(p["jitter"]) else 0.0
        t = p["first"] + (i + jitter) * beat
        if t >= seconds - 0.1:
            break
        out.append((t, p["velocity"][i] if i < len(p["velocity"]) else 0.8))
    return out


def mallet_height(p: dict[str, Any], times: np.ndarray, seconds: float) -> np.ndarray:
    """Height of the mallet head above the membrane (H units) at ``times`` ``[T]``; 0 exactly at hits."""
    beat = 60.0 / p["tempo"]
    hs = hits(p, seconds)
    if not hs:
        return np.full_like(times, _LIFT * 0.8)
    t0, v0 = hs[0]
    # Before the first hit: resting at the top, swinging down over the last half beat.
    h = _LIFT * v0 * np.sin(0.5 * np.pi * np.clip((t0 - times) / (0.5 * beat), 0.0, 1.0))
    for (ta, _), (tb, vb) in zip(hs[:-1], hs[1:], strict=True):
        seg = (times >= ta) & (times < tb)
        h[seg] = _LIFT * vb * np.sin(np.pi * (times[seg] - ta) / (tb - ta))
    tl = hs[-1][0]
    after = times >= tl
    h[after] = _LIFT * 0.8 * np.sin(0.5 * np.pi * np.clip((times[after] - tl) / (0.5 * beat), 0.0, 1.0))
    return h


def script(p: dict[str, Any], seconds: float) -> Script:
    """Caption and hit events."""
    caption = _TEMPLATES[p["template"]].format(
        size=level_word(p["width"], 0.19, 0.23, ("small ", "", "big ")),
        color=p["color"],
        tempo=level_word(p["tempo"], 90.0, 130.0, ("slow", "steady", "fast")),
        pitch=level_word(p["freq"], 120.0, 180.0, ("low", "medium", "high")),
        bg=p["background"],
    )
    events = tuple((t, "hit", 0.0) for t, _ in hits(p, seconds))
    return Script(caption=caption, transcript="", events=events)


def render(
    p: dict[str, Any], geo: Geometry, rng: np.random.Generator, image: torch.Tensor
) -> tuple[torch.Tensor, np.ndarray]:
    """Draw the drum and mallet and synthesise the hits.

    Returns:
        ``(frames [T, H, W, 3], mix [S] float64)``.
    """
    height, width = geo.height, geo.width
    canvas = Canvas(geo.num_frames, height, width)
    times = geo.frame_times()
    hs = hits(p, geo.seconds)
    react = np.zeros_like(times)
    for t, v in hs:
        react += np.where(times >= t, v * np.exp(-np.maximum(times - t, 0.0) / _REACT_TAU), 0.0)
    react_t = torch.from_numpy(np.minimum(react, 1.0)).float()  # [T]

    color, bg = color_rgb(p, "color"), color_rgb(p, "background")
    hw, cx, top = p["width"] * height, p["cx"] * width, p["top"] * height
    ry, body = 0.3 * hw, 0.55 * hw
    paint(image, box_alpha(canvas, 0.0, top + body + 0.5 * ry, float(width), float(height) + 1.0), bg * 0.65)
    paint(image, ellipse_alpha(canvas, cx, top + body, hw, ry), color * 0.45)
    paint(image, box_alpha(canvas, cx - hw, top, cx + hw, top + body), color * 0.75)
    paint(image, ellipse_alpha(canvas, cx, top, hw, ry), color * 0.45)  # rim
    base = 0.7 * color + 0.3
    skin = base.view(1, 3) + react_t.view(-1, 1) * (1.0 - base).view(1, 3) * 0.8  # [T, 3]: flashes white when hit
    squash = 1.0 - 0.35 * react_t  # [T]: the struck membrane dips and flattens
    paint(image, ellipse_alpha(canvas, cx, top + 0.25 * ry * react_t, 0.88 * hw, 0.8 * ry * squash), skin)

    lift = torch.from_numpy(mallet_height(p, times, geo.seconds)).float()
    mr = 0.045 * height
    mx = cx + (0.4 if p["side"] == "right" else -0.4) * hw
    my = top - mr - lift * height  # head centre; its bottom touches the membrane centre line at a hit
    stick = box_alpha(canvas, mx - 0.012 * height, my - 0.4 * height, mx + 0.012 * height, my)
    paint(image, stick, torch.tensor([0.72, 0.7, 0.66]))
    paint(image, circle_alpha(canvas, mx, my, mr), torch.tensor([0.93, 0.91, 0.88]))

    mix = np.zeros(geo.num_samples)
    choke = 1.0 - 0.7 * (1.0 - np.exp(-np.arange(geo.num_samples) / (0.003 * geo.sample_rate)))
    for t, v in hs:
        # The stick landing on a ringing membrane damps the old vibration: a clean new attack
        # instead of a phase-dependent beat between the old ring and the new one.
        start = int(round(t * geo.sample_rate))
        mix[start:] *= choke[: max(0, geo.num_samples - start)]
        hit = sound.drum_hit(rng, geo.sample_rate, freq=p["freq"], tau=p["tau"], velocity=v)
        sound.add_at(mix, t, hit, geo.sample_rate)
    return image, mix
