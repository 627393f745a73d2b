"""Shared pieces of the synthetic families: clip geometry, colour lookup, sampling and checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..captions import BACKGROUND_COLORS, OBJECT_COLORS

__all__ = ["Geometry", "Script", "check_choice", "check_range", "color_rgb", "pick", "uniform"]


@dataclass(frozen=True)
class Geometry:
    """Sizes and rates of one clip.

    Attributes:
        fps: video frame rate.
        sample_rate: audio sample rate in Hz.
        height: H in pixels.
        width: W in pixels.
        num_frames: T, a 1 + 4k count.
        num_samples: S = round(T / fps * sample_rate).
    """

    fps: float
    sample_rate: int
    height: int
    width: int
    num_frames: int
    num_samples: int

    @property
    def seconds(self) -> float:
        """Exact duration ``num_frames / fps``."""
        return self.num_frames / self.fps

    def frame_times(self) -> np.ndarray:
        """``[T]`` float64 time of each pixel frame (frame i is the instant i / fps)."""
        return np.arange(self.num_frames, dtype=np.float64) / self.fps


@dataclass(frozen=True)
class Script:
    """What a family's parameters say will happen, before any pixel or sample is made.

    Attributes:
        caption: the description generated from the parameters.
        transcript: the spoken words, ``""`` when nobody speaks.
        events: ``(time, kind, duration)`` triples in time order.
    """

    caption: str
    transcript: str
    events: tuple[tuple[float, str, float], ...]


def uniform(rng: np.random.Generator, low: float, high: float, digits: int = 4) -> float:
    """A uniform float rounded to ``digits`` decimals (short, exactly JSON-round-trippable params)."""
    return round(float(rng.uniform(low, high)), digits)


def pick(rng: np.random.Generator, options: list[str] | tuple[str, ...]) -> str:
    """One of ``options`` as a plain ``str``."""
    return str(options[int(rng.integers(len(options)))])


def color_rgb(params: dict[str, Any], key: str) -> torch.Tensor:
    """The jittered RGB of the named colour ``params[key]`` (object or background table).

    Args:
        params: family parameters holding ``key`` (a colour name) and ``key + "_jitter"`` ([3] floats).
        key: e.g. ``"color"`` or ``"background"``.

    Returns:
        ``[3]`` float32 in 0..1.
    """
    table = BACKGROUND_COLORS if key == "background" else OBJECT_COLORS
    base = torch.tensor(table[params[key]], dtype=torch.float32)
    return (base + torch.tensor(params[key + "_jitter"], dtype=torch.float32)).clamp(0.0, 1.0)


def check_choice(params: dict[str, Any], key: str, options: Any) -> None:
    """Raise ValueError unless ``params[key]`` is one of ``options``."""
    if params[key] not in options:
        raise ValueError(
            f"{key}={params[key]!r} is not valid: expected one of {sorted(options)}. Use one of those names."
        )


def check_range(params: dict[str, Any], key: str, low: float, high: float) -> None:
    """Raise ValueError unless ``low <= params[key] <= high``."""
    v = params[key]
    if not low <= v <= high:
        raise ValueError(
            f"{key}={v!r} is out of range: expected {low} <= {key} <= {high}. Pass a value inside that range."
        )
