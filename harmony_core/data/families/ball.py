"""``ball``: a ball dropped onto a floor, bouncing with exact ballistic physics; a sound at each contact.

Lengths are in units of the frame height H (so the world is resolution-independent) except the
start position ``x0``, a fraction of the width. With the ball's bottom at height ``h`` above the
floor and upward speed ``v``, free flight is ``h(t) = h0 + v0 t - g t^2 / 2``; contacts are solved in
closed form per bounce (first contact ``t1 = (v0 + sqrt(v0^2 + 2 g h0)) / g``, then each flight lasts
``2 e v / g`` with ``v`` the impact speed and ``e`` the restitution), never by frame stepping. When a
flight would last less than ``REST_FLIGHT`` seconds the ball settles (its remaining hops would be
under a pixel) and rolls to a stop.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .. import sound
from ..captions import OBJECT_COLORS, level_word
from ..render import Canvas, box_alpha, circle_alpha, ellipse_alpha, paint
from ._common import Geometry, Script, check_choice, check_range, color_rgb, pick, uniform

__all__ = ["REST_FLIGHT", "bounces", "check", "render", "sample", "script", "trajectory"]

REST_FLIGHT = 0.12  # s: shorter hops are invisible (g * t^2 / 8 < 1 px), the ball settles instead
ROLL_TAU = 0.5  # s: rolling speed decays as exp(-t / ROLL_TAU) once the ball has settled
_TEMPLATES = (
    "a {adj}{size} {color} ball bounces {dir} in a {bg} room, with {sound} at every bounce",
    "a {size} {color} {adj}ball drops and bounces {dir}, making {sound} as it hits the floor, {bg} background",
    "{bg} background, a {size} {color} {adj}ball bouncing {dir} with {sound}",
)


def sample(rng: np.random.Generator, seconds: float) -> dict[str, Any]:
    """Draw ball parameters whose first contact happens inside a clip of ``seconds``.

    Args:
        rng: parameter source.
        seconds: clip duration.

    Returns:
        JSON-serialisable parameters.
    """
    p: dict[str, Any] = {
        "color": pick(rng, tuple(OBJECT_COLORS)),
        "color_jitter": [uniform(rng, -0.04, 0.04) for _ in range(3)],
        # At least 5 px at 64x64: a smaller ball spans less than one latent pixel of the /8 video VAE,
        # which then blurs it away (measured: round-trip DeSync 0.29 s on balls of radius 0.05-0.14).
        "radius": uniform(rng, 0.08, 0.16),
        "floor": uniform(rng, 0.78, 0.9),
        "gravity": uniform(rng, 2.0, 4.0),
        "restitution": uniform(rng, 0.5, 0.82),
        "vy0": uniform(rng, -0.2, 0.4),
        "template": int(rng.integers(len(_TEMPLATES))),
    }
    top_room = p["floor"] - 2 * p["radius"] - 0.04  # highest the bottom may go, ball stays in frame
    apex_extra = max(p["vy0"], 0.0) ** 2 / (2 * p["gravity"])
    lo, hi = 0.15, max(0.16, top_room - apex_extra)
    p["height"] = uniform(rng, lo, hi)
    # Guarantee the first contact well inside the clip.
    while _first_contact(p) > seconds - 0.15 and p["height"] > 0.02:
        p["height"] = round(p["height"] * 0.7, 4)
    speed = uniform(rng, 0.0, 0.25) * (1 if rng.random() < 0.5 else -1)
    settle = bounces(p, seconds)[1]
    travel = abs(speed) * (min(settle, seconds) + ROLL_TAU)
    room = 1.0 - 2 * p["radius"] - 0.1  # in H units, assuming a square frame for the sampler
    if travel > room:
        speed *= room / travel
        travel = room
    p["vx"] = round(speed, 4)
    start_lo = p["radius"] + 0.05 + (0.0 if speed >= 0 else travel)
    start_hi = 1.0 - p["radius"] - 0.05 - (travel if speed >= 0 else 0.0)
    p["x0"] = uniform(rng, start_lo, max(start_lo, start_hi))
    return p


def check(p: dict[str, Any]) -> None:
    """Raise ValueError for parameters the renderer cannot honour."""
    check_choice(p, "color", OBJECT_COLORS)
    check_range(p, "radius", 0.01, 0.3)
    check_range(p, "floor", 0.3, 1.0)
    check_range(p, "gravity", 0.1, 50.0)
    check_range(p, "restitution", 0.0, 0.95)
    check_range(p, "height", 0.0, 1.0)
    check_range(p, "vy0", -5.0, 5.0)
    check_range(p, "vx", -3.0, 3.0)
    check_range(p, "x0", 0.0, 1.0)
    check_range(p, "template", 0, len(_TEMPLATES) - 1)


def _first_contact(p: dict[str, Any]) -> float:
    v0, g, h0 = p["vy0"], p["gravity"], p["height"]
    return (v0 + math.sqrt(v0 * v0 + 2 * g * h0)) / g


def bounces(p: dict[str, Any], seconds: float) -> tuple[list[tuple[float, float]], float]:
    """Exact floor contacts.

    Args:
        p: ball parameters.
        seconds: clip duration; contacts after it are not listed.

    Returns:
        ``([(time, impact_speed), ...], settle_time)``; speeds in H/s; ``settle_time`` is when the ball
        comes to rest on the floor (``inf`` if it is still bouncing at the end of the clip).
    """
    g, e = p["gravity"], p["restitution"]
    t = _first_contact(p)
    v = math.sqrt(p["vy0"] ** 2 + 2 * g * p["height"])
    out: list[tuple[float, float]] = []
    while t < seconds and len(out) < 1000:
        out.append((t, v))
        flight = 2 * e * v / g
        if flight < REST_FLIGHT:
            return out, t
        t, v = t + flight, e * v
    return out, math.inf


def trajectory(p: dict[str, Any], times: np.ndarray, aspect: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Ball centre x (fraction of width) and bottom height above the floor (H units) at ``times``.

    Args:
        p: ball parameters.
        times: ``[T]`` seconds.
        aspect: width / height of the frame (horizontal speeds are in H units).

    Returns:
        ``(x [T], height [T])`` float64.
    """
    hits, settle = bounces(p, float(times.max(initial=0.0)) + 1.0)
    g, e = p["gravity"], p["restitution"]
    h = p["height"] + p["vy0"] * times - 0.5 * g * times**2
    for i, (t_i, v_i) in enumerate(hits):
        t_next = hits[i + 1][0] if i + 1 < len(hits) else math.inf
        seg = (times >= t_i) & (times < t_next)
        dt = times[seg] - t_i
        h[seg] = 0.0 if t_i >= settle else e * v_i * dt - 0.5 * g * dt**2
    h = np.maximum(h, 0.0)
    # Horizontal: constant speed while airborne, exponential roll-out after settling.
    tt = np.minimum(times, settle)
    u = p["x0"] * aspect + p["vx"] * tt
    after = times > settle
    u[after] += p["vx"] * ROLL_TAU * (1.0 - np.exp(-(times[after] - settle) / ROLL_TAU))
    # Walls (only reachable with hand-set parameters): reflect, silently.
    lo, hi = p["radius"], aspect - p["radius"]
    span = max(hi - lo, 1e-6)
    m = np.mod(u - lo, 2 * span)
    u = lo + np.where(m < span, m, 2 * span - m)
    return u / aspect, h


def script(p: dict[str, Any], seconds: float) -> Script:
    """Caption and exact impact events."""
    size = level_word(p["radius"], 0.107, 0.133, ("small", "medium-sized", "large"))
    noise = level_word(p["radius"], 0.107, 0.133, ("sharp taps", "knocks", "deep thuds"))
    direction = level_word(p["vx"], -0.05, 0.05, ("to the left", "in place", "to the right"))
    adj = "bouncy " if p["restitution"] >= 0.7 else ""
    caption = _TEMPLATES[p["template"]].format(
        adj=adj, size=size, color=p["color"], dir=direction, sound=noise, bg=p["background"]
    )
    events = tuple((t, "impact", 0.0) for t, _ in bounces(p, seconds)[0])
    return Script(caption=caption, transcript="", events=events)


def render(
    p: dict[str, Any], geo: Geometry, rng: np.random.Generator, image: torch.Tensor
) -> tuple[torch.Tensor, np.ndarray]:
    """Draw the clip onto ``image`` ``[T, H, W, 3]`` (background filled) and synthesise its sounds.

    Returns:
        ``(frames [T, H, W, 3], mix [S] float64)``.
    """
    height, width = geo.height, geo.width
    canvas = Canvas(geo.num_frames, height, width)
    x, h = trajectory(p, geo.frame_times(), aspect=width / height)
    r, floor_y = p["radius"] * height, p["floor"] * height
    cx = torch.from_numpy(x * width).float()
    cy = torch.from_numpy(floor_y - h * height - r).float()
    bg = color_rgb(p, "background")
    paint(image, box_alpha(canvas, 0.0, floor_y, float(width), float(height) + 1.0), bg * 0.6)
    # Contact shadow: darker and tighter as the ball nears the floor.
    closeness = torch.from_numpy(1.0 / (1.0 + 4.0 * h)).float()
    shadow = ellipse_alpha(canvas, cx, floor_y + 0.6, r * (0.6 + 0.4 * closeness), 0.9).scaled(0.5 * closeness)
    paint(image, shadow, bg * 0.25)
    color = color_rgb(p, "color")
    paint(image, circle_alpha(canvas, cx, cy, r), color)
    paint(image, circle_alpha(canvas, cx - 0.35 * r, cy - 0.35 * r, 0.3 * r).scaled(0.45), torch.ones(3))

    mix = np.zeros(geo.num_samples)
    hits, _ = bounces(p, geo.seconds)
    for t, v in hits:
        snd = sound.impact(
            rng,
            geo.sample_rate,
            amplitude=v,
            thump_hz=13.0 / p["radius"],
            tau=0.04 + 0.4 * p["radius"],
            cutoff_hz=min(300.0 / p["radius"], 0.45 * geo.sample_rate),
        )
        sound.add_at(mix, t, snd, geo.sample_rate)
    return image, mix
