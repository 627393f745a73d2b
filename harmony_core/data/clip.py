"""The in-memory audio-visual clip shared by the synthetic world, datasets, metrics and I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["AVEvent", "Clip"]


@dataclass(frozen=True)
class AVEvent:
    """One audio-visual event with its exact onset time.

    Attributes:
        time: onset in seconds from the start of the clip (exact, not frame-quantised).
        kind: what happens, e.g. ``"impact"``, ``"flash"``, ``"syllable"``, ``"hit"``.
        duration: how long the event lasts in seconds (0 for an instantaneous impact).
    """

    time: float
    kind: str
    duration: float = 0.0


@dataclass
class Clip:
    """A short video with a mono soundtrack.

    Attributes:
        frames: ``[T, H, W, 3]`` float32 in 0..1 (ComfyUI's IMAGE layout, one row per pixel frame).
        waveform: ``[S]`` float32 mono in -1..1.
        fps: video frame rate in frames per second.
        sample_rate: audio sample rate in Hz.
        caption: what a viewer sees and hears, generated from the clip's parameters.
        transcript: the words spoken in the clip, or ``""`` when nobody speaks.
        family: which generator made the clip (``"ball"``, ``"face"``, ``"flash"``, ``"drum"``,
            or ``"real"`` for a file).
        events: every audio-visual event, in time order.
        params: the generator parameters (colours, sizes, pitches, tempo, ...), JSON-serialisable.
    """

    frames: torch.Tensor
    waveform: torch.Tensor
    fps: float
    sample_rate: int
    caption: str
    transcript: str = ""
    family: str = "real"
    events: tuple[AVEvent, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def seconds(self) -> float:
        return self.num_frames / self.fps
