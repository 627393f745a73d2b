"""A deterministic synthetic audio-visual world with exact ground truth.

Four families of short clips (see :mod:`.families`): ``ball`` (a bouncing ball with an impact sound
at each floor contact), ``face`` (a cartoon face whose mouth follows its synthetic speech),
``flash`` (a lamp flashing with a beep) and ``drum`` (a mallet striking a drum). Every clip is a
pure function of ``(seed, family, seconds, config, params)``: the same inputs give bit-identical
frames and waveform. Captions and transcripts are generated from the sampled parameters (colour
names, size, pitch and tempo words, the spoken words), so a caption determines most of what is
seen and heard, and every audio-visual event carries its exact onset time (solved analytically,
not frame-quantised) for validating sync metrics.

Time geometry (the ratios of Harmony's latent spaces):

* Video: ``fps`` = 24 pixel frames per second. The Wan causal video VAE maps the first pixel frame
  to one latent frame and every further 4 pixel frames to one more, so a clip has ``1 + 4k``
  pixel frames (:func:`num_frames_for_seconds`) and 24 / 4 = 6 video latents per second.
* Audio: ``sample_rate`` = 16 kHz; the MMAudio-16k VAE works on mel frames with hop 256 and
  downsamples them 2x, i.e. 16000 / 256 / 2 = 31.25 audio latents per second.
* A clip of ``T`` pixel frames lasts exactly ``T / fps`` seconds and has
  ``S = round(T / fps * sample_rate)`` audio samples, so both streams cover the same span.
* Frame ``i`` shows the instant ``i / fps``; sample ``j`` is the instant ``j / sample_rate``.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from . import sound
from .captions import BACKGROUND_COLORS
from .clip import AVEvent, Clip
from .families import REGISTRY, Geometry
from .families._common import check_choice, color_rgb, pick, uniform

__all__ = [
    "FAMILIES",
    "SceneSpec",
    "WorldConfig",
    "describe",
    "generate_clip",
    "num_frames_for_seconds",
    "num_samples_for_frames",
]

log = logging.getLogger(__name__)

FAMILIES: tuple[str, ...] = ("ball", "face", "flash", "drum")
_META_KEYS = ("family", "seed", "seconds")
# Independent random streams per seed, so overriding parameters never shifts the noise.
_STREAM_CHOICE, _STREAM_PARAMS, _STREAM_SOUND, _STREAM_AMBIENT = 0, 1, 2, 3


# Time geometry ------------------------------------------------------------------------------------


def num_frames_for_seconds(seconds: float, fps: float) -> int:
    """The ``1 + 4k`` pixel-frame count (k >= 0) nearest to ``seconds * fps``; ties go to the longer clip.

    Args:
        seconds: duration in seconds, > 0.
        fps: frame rate, > 0.

    Returns:
        The frame count ``T``.

    Raises:
        ValueError: for a non-positive or non-finite duration or frame rate.
    """
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps={fps!r} is invalid: expected a finite number > 0. Pass the clip's frame rate.")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds={seconds!r} is invalid: expected a finite duration > 0. Pass e.g. seconds=2.0.")
    k = math.floor((seconds * fps - 1.0) / 4.0 + 0.5 + 1e-9)
    return 1 + 4 * max(k, 0)


def num_samples_for_frames(num_frames: int, fps: float, sample_rate: int) -> int:
    """Audio samples covering exactly the span of ``num_frames`` video frames: ``round(T / fps * rate)``.

    Args:
        num_frames: T.
        fps: video frame rate.
        sample_rate: audio rate in Hz.

    Returns:
        S.
    """
    return int(round(num_frames / fps * sample_rate))


# Configuration ------------------------------------------------------------------------------------


def _bad(field_name: str, value: Any, expected: str, fix: str) -> None:
    raise ValueError(f"WorldConfig.{field_name}={value!r} is invalid: expected {expected}. {fix}")


@dataclass(frozen=True)
class WorldConfig:
    """Rates, sizes and durations of the synthetic world.

    Attributes:
        fps: video frame rate (24 matches Harmony / Wan2.2).
        sample_rate: audio rate in Hz (16000 matches MMAudio-16k).
        height: H, frame height in pixels.
        width: W, frame width in pixels.
        min_seconds: shortest duration drawn when ``seconds`` is not given.
        max_seconds: longest duration drawn when ``seconds`` is not given.
        families: the families drawn when ``family`` is not given.
        ambient_noise: RMS of the faint room tone added under every clip (0 disables it).
        peak: the waveform's maximum absolute value after normalisation.
    """

    fps: float = 24.0
    sample_rate: int = 16000
    height: int = 64
    width: int = 64
    min_seconds: float = 1.0
    max_seconds: float = 4.0
    families: tuple[str, ...] = FAMILIES
    ambient_noise: float = 0.003
    peak: float = 0.9

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fps) and self.fps > 0):
            _bad("fps", self.fps, "a finite number > 0", "Use 24.0.")
        if not isinstance(self.sample_rate, int) or self.sample_rate < 4000:
            _bad("sample_rate", self.sample_rate, "an int >= 4000 Hz", "Use 16000.")
        for name in ("height", "width"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 16:
                _bad(name, v, "an int >= 16 pixels", "Use 64.")
        if not 0 < self.min_seconds <= self.max_seconds:
            _bad(
                "min_seconds",
                (self.min_seconds, self.max_seconds),
                "0 < min_seconds <= max_seconds",
                "Use min_seconds=1.0, max_seconds=4.0.",
            )
        if not self.families or any(f not in FAMILIES for f in self.families):
            _bad("families", self.families, f"a non-empty tuple drawn from {FAMILIES}", "Drop the unknown names.")
        if not 0.0 <= self.ambient_noise <= 0.1:
            _bad("ambient_noise", self.ambient_noise, "0 <= ambient_noise <= 0.1 (an RMS level)", "Use 0.003 or 0.")
        if not 0.0 < self.peak <= 1.0:
            _bad("peak", self.peak, "0 < peak <= 1", "Use 0.9.")


# Scene description --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneSpec:
    """Everything about a clip except its pixels and samples (cheap: nothing is rendered).

    Attributes:
        family: the generator family.
        seed: the clip's seed.
        num_frames: T (``1 + 4k``).
        num_samples: S.
        fps: video frame rate.
        sample_rate: audio rate in Hz.
        caption: the generated caption.
        transcript: the spoken words (``face`` only, else ``""``).
        events: the exact audio-visual events.
        params: JSON-serialisable parameters; ``generate_clip(seed, params=params)`` reproduces the clip.
    """

    family: str
    seed: int
    num_frames: int
    num_samples: int
    fps: float
    sample_rate: int
    caption: str
    transcript: str
    events: tuple[AVEvent, ...]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """Exact duration ``num_frames / fps`` (the audio covers the same span)."""
        return self.num_frames / self.fps


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def _resolve_meta(name: str, arg: Any, params: dict[str, Any]) -> Any:
    """An explicit argument, else the value stored in ``params``; both given must agree."""
    if name in params and arg is not None and params[name] != arg:
        raise ValueError(
            f"{name}={arg!r} conflicts with params[{name!r}]={params[name]!r}. "
            f"Pass it only once (as an argument or inside params)."
        )
    return arg if arg is not None else params.get(name)


def _check_list(key: str, value: list[Any], want: list[Any]) -> None:
    """A list override must hold the same kind of items as the sampled list (and as many, for vectors)."""
    numbers = all(isinstance(w, (int, float)) for w in want)
    for item in value:
        if numbers != (isinstance(item, (int, float)) and not isinstance(item, bool)):
            kind = "numbers" if numbers else "strings"
            raise TypeError(f"params[{key!r}]={value!r} must be a list of {kind}, like {want!r}.")
    if numbers and len(want) <= 3 and len(value) != len(want):
        raise ValueError(f"params[{key!r}]={value!r} must have {len(want)} items, like {want!r}.")


def _merge(family: str, defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Apply user overrides to sampled defaults, checking names and value types."""
    merged = dict(defaults)
    for key, value in overrides.items():
        if key in _META_KEYS:
            continue
        if key not in defaults:
            raise ValueError(
                f"params[{key!r}] is not a parameter of family {family!r}: expected one of "
                f"{sorted(defaults)} (or {list(_META_KEYS)}). Fix the name or drop it."
            )
        want = defaults[key]
        ok = (
            (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and isinstance(want, (int, float))
                and (isinstance(value, int) or not isinstance(want, int))
            )
            or (isinstance(value, str) and isinstance(want, str))
            or (isinstance(value, (list, tuple)) and isinstance(want, list))
        )
        if not ok:
            raise TypeError(
                f"params[{key!r}]={value!r} has type {type(value).__name__}: expected "
                f"{type(want).__name__} like the sampled value {want!r}."
            )
        if isinstance(want, list):
            _check_list(key, list(value), want)
        merged[key] = list(value) if isinstance(value, tuple) else value
    try:
        return json.loads(json.dumps(merged))  # a deep, JSON-clean copy
    except (TypeError, ValueError) as err:
        raise TypeError(f"params for family {family!r} must be JSON-serialisable: {err}") from err


def describe(
    seed: int,
    *,
    family: str | None = None,
    seconds: float | None = None,
    config: WorldConfig | None = None,
    params: dict[str, Any] | None = None,
) -> SceneSpec:
    """Sample (or take) a clip's parameters and derive its caption and exact events, without rendering.

    Args:
        seed: a non-negative int; fixes every random choice of the clip.
        family: one of :data:`FAMILIES`; ``None`` draws one of ``config.families`` from the seed
            (or takes ``params["family"]``).
        seconds: requested duration, rounded to the nearest ``1 + 4k`` frames; ``None`` draws it
            uniformly in ``[config.min_seconds, config.max_seconds]`` (or takes ``params["seconds"]``).
        config: the world configuration (default :class:`WorldConfig()`).
        params: explicit parameters overriding the sampled ones, e.g. ``{"color": "red",
            "radius": 0.12}``; unknown names raise. A clip's own ``params`` reproduce it exactly.

    Returns:
        The :class:`SceneSpec`.

    Raises:
        ValueError: for a bad seed, family, duration or parameter value.
        TypeError: for a parameter of the wrong type.
    """
    config = config or WorldConfig()
    params = dict(params or {})
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed={seed!r} is invalid: expected an int >= 0. Pass e.g. seed=0.")
    seed = int(seed)
    if "seed" in params and params["seed"] != seed:
        raise ValueError(
            f"params['seed']={params['seed']!r} differs from seed={seed}: the noise of the clip "
            f"depends on the seed. Call with seed={params['seed']!r} or drop params['seed']."
        )
    family = _resolve_meta("family", family, params)
    if (
        seconds is not None
        and "seconds" in params
        and num_frames_for_seconds(float(seconds), config.fps)
        != num_frames_for_seconds(float(params["seconds"]), config.fps)
    ):
        raise ValueError(
            f"seconds={seconds!r} conflicts with params['seconds']={params['seconds']!r}. "
            f"Pass the duration only once (as an argument or inside params)."
        )
    seconds = seconds if seconds is not None else params.get("seconds")

    choice = _rng(seed, _STREAM_CHOICE)
    drawn_family = pick(choice, config.families)
    drawn_seconds = float(choice.uniform(config.min_seconds, config.max_seconds))
    family = drawn_family if family is None else family
    if family not in REGISTRY:
        raise ValueError(f"family={family!r} is unknown: expected one of {FAMILIES}.")
    num_frames = num_frames_for_seconds(drawn_seconds if seconds is None else float(seconds), config.fps)
    duration = num_frames / config.fps

    module = REGISTRY[family]
    rng = _rng(seed, _STREAM_PARAMS, FAMILIES.index(family))
    defaults = {
        "background": pick(rng, tuple(BACKGROUND_COLORS)),
        "background_jitter": [uniform(rng, -0.03, 0.03) for _ in range(3)],
    }
    defaults.update(module.sample(rng, duration))
    merged = _merge(family, defaults, params)
    check_choice(merged, "background", BACKGROUND_COLORS)
    module.check(merged)
    script = module.script(merged, duration)
    events = tuple(AVEvent(time=float(t), kind=k, duration=float(d)) for t, k, d in script.events if 0 <= t < duration)
    if not events:
        log.debug("clip seed=%d family=%s has no events within %.3f s", seed, family, duration)
    out_params = {"family": family, "seed": seed, "seconds": duration, **merged}
    return SceneSpec(
        family=family,
        seed=seed,
        num_frames=num_frames,
        num_samples=num_samples_for_frames(num_frames, config.fps, config.sample_rate),
        fps=config.fps,
        sample_rate=config.sample_rate,
        caption=script.caption,
        transcript=script.transcript,
        events=events,
        params=out_params,
    )


# Rendering ----------------------------------------------------------------------------------------


def generate_clip(
    seed: int,
    *,
    family: str | None = None,
    seconds: float | None = None,
    config: WorldConfig | None = None,
    params: dict[str, Any] | None = None,
) -> Clip:
    """Render one synthetic clip: frames, waveform, caption, transcript and exact events.

    Args:
        seed: a non-negative int; same arguments give bit-identical outputs.
        family: see :func:`describe`.
        seconds: see :func:`describe`.
        config: see :func:`describe`.
        params: see :func:`describe`.

    Returns:
        A :class:`~harmony_core.data.clip.Clip` with ``frames [T, H, W, 3]`` float32 in 0..1 and
        ``waveform [S]`` float32 with ``|x| <= config.peak``.
    """
    config = config or WorldConfig()
    spec = describe(seed, family=family, seconds=seconds, config=config, params=params)
    geo = Geometry(
        fps=config.fps,
        sample_rate=config.sample_rate,
        height=config.height,
        width=config.width,
        num_frames=spec.num_frames,
        num_samples=spec.num_samples,
    )
    family_params = {k: v for k, v in spec.params.items() if k not in _META_KEYS}
    image = torch.empty(spec.num_frames, config.height, config.width, 3)
    image[:] = color_rgb(family_params, "background")
    frames, mix = REGISTRY[spec.family].render(family_params, geo, _rng(seed, _STREAM_SOUND), image)
    ambient = sound.ambient_noise(
        _rng(seed, _STREAM_AMBIENT), spec.num_samples, config.sample_rate, config.ambient_noise
    )
    waveform = torch.from_numpy(sound.finalize(mix, ambient, config.peak))
    return Clip(
        frames=frames.clamp_(0.0, 1.0).contiguous(),
        waveform=waveform,
        fps=config.fps,
        sample_rate=config.sample_rate,
        caption=spec.caption,
        transcript=spec.transcript,
        family=spec.family,
        events=spec.events,
        params=spec.params,
    )
