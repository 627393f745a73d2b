"""``face``: a cartoon face speaking its transcript; the mouth opening follows the voice's loudness.

The transcript's words are split into (consonant, vowel) syllables (:data:`..captions.VOCABULARY`),
laid out at the speaker's syllable rate, and synthesised as a harmonic voice shaped by vowel
formants (:func:`..sound.speech`). The mouth's opening at frame ``i`` is the voice's RMS in a
Hann window of one frame period centred on ``i / fps``, divided by its maximum over the clip: a
lip-sync proxy that is exact by construction.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import sound
from ..captions import OBJECT_COLORS, VOCABULARY, level_word, syllables_of
from ..render import Canvas, circle_alpha, ellipse_alpha, paint
from ._common import Geometry, Script, check_choice, check_range, color_rgb, pick, uniform

__all__ = ["check", "render", "sample", "schedule", "script"]

_TEMPLATES = (
    'a {color} cartoon face with a {pitch} voice says "{text}" on a {bg} background',
    'a {size}{color} cartoon head speaking {rate}in a {pitch} voice on a {bg} background: "{text}"',
    '{bg} background, a smiling {color} face talks {rate}in a {pitch} voice, saying "{text}"',
)
_MIN_SYLLABLE = 0.06  # s: shorter syllables are not speech any more
_MOUTH_RGB = (0.22, 0.04, 0.06)


def sample(rng: np.random.Generator, seconds: float) -> dict[str, Any]:
    """Draw a speaker and words that fit in a clip of ``seconds``.

    Args:
        rng: parameter source.
        seconds: clip duration.

    Returns:
        JSON-serialisable parameters.
    """
    p: dict[str, Any] = {
        "color": pick(rng, tuple(OBJECT_COLORS)),
        "color_jitter": [uniform(rng, -0.04, 0.04) for _ in range(3)],
        "head_radius": uniform(rng, 0.27, 0.38),
        "cx": uniform(rng, 0.42, 0.58),
        "cy": uniform(rng, 0.44, 0.54),
        "f0": round(float(np.exp(rng.uniform(np.log(90.0), np.log(300.0)))), 2),
        "rate": uniform(rng, 2.5, 4.5),
        "start": uniform(rng, 0.1, 0.35),
        "word_gap": uniform(rng, 0.08, 0.22),
        "gaze": [uniform(rng, -0.5, 0.5), uniform(rng, -0.5, 0.5)],
        "template": int(rng.integers(len(_TEMPLATES))),
    }
    p["blink"] = uniform(rng, 0.0, seconds) if rng.random() < 0.5 else -1.0
    room = seconds - 0.1 - p["start"]
    words: list[str] = []
    used = 0.0
    for _ in range(int(rng.integers(1, 7))):
        gap = p["word_gap"] if words else 0.0
        fits = [w for w in VOCABULARY if used + gap + len(VOCABULARY[w]) / p["rate"] <= room]
        if not fits:
            break
        w = pick(rng, fits)
        words.append(w)
        used += gap + len(VOCABULARY[w]) / p["rate"]
    if not words:  # only possible for clips shorter than ~0.7 s: speak a quick one-syllable word
        words.append("oh")
    p["words"] = words
    return p


def check(p: dict[str, Any]) -> None:
    """Raise ValueError for parameters the renderer cannot honour."""
    check_choice(p, "color", OBJECT_COLORS)
    check_range(p, "head_radius", 0.1, 0.48)
    check_range(p, "f0", 60.0, 500.0)
    check_range(p, "rate", 1.0, 8.0)
    check_range(p, "start", 0.0, 10.0)
    check_range(p, "word_gap", 0.0, 2.0)
    check_range(p, "template", 0, len(_TEMPLATES) - 1)
    if not isinstance(p["words"], list) or not p["words"]:
        raise ValueError(f"words={p['words']!r} is invalid: expected a non-empty list of vocabulary words.")
    for w in p["words"]:
        syllables_of(w)


def schedule(p: dict[str, Any], seconds: float) -> list[dict[str, Any]]:
    """Syllable timing: onset, duration, phonemes and pitch of every syllable.

    Syllables follow each other every ``1 / rate`` seconds (voiced for 85 % of that), with
    ``word_gap`` of silence between words; stressed first syllables are 8 % higher and the voice
    declines 5 % over the clip. If the words do not fit before ``seconds - 0.1``, the whole
    utterance is sped up to fit.

    Returns:
        One dict per syllable with ``onset``, ``duration``, ``consonant``, ``vowel``, ``f0``,
        ``formant_scale``.

    Raises:
        ValueError: if fitting the words would need syllables shorter than 60 ms.
    """
    beat = 1.0 / p["rate"]
    items: list[list[Any]] = []
    t = p["start"]
    for word in p["words"]:
        for j, (cons, vowel) in enumerate(syllables_of(word)):
            items.append([t, 0.85 * beat, cons, vowel, 1.08 if j == 0 else 1.0])
            t += beat
        t += p["word_gap"]
    end = items[-1][0] + items[-1][1]
    room = seconds - 0.1 - p["start"]
    scale = min(1.0, room / max(end - p["start"], 1e-9))
    if 0.85 * beat * scale < _MIN_SYLLABLE:
        raise ValueError(
            f"words={p['words']!r} do not fit in {seconds:.2f} s at rate={p['rate']} "
            f"(syllables would last {0.85 * beat * scale * 1000:.0f} ms). "
            "Use fewer words or a longer clip."
        )
    formant_scale = 1.0 + 0.18 * (p["f0"] - 90.0) / 210.0  # smaller speakers, shorter vocal tracts
    out = []
    for onset, dur, cons, vowel, stress in items:
        onset = p["start"] + (onset - p["start"]) * scale
        out.append(
            {
                "onset": onset,
                "duration": dur * scale,
                "consonant": cons,
                "vowel": vowel,
                "f0": p["f0"] * stress * (1.0 - 0.05 * onset / seconds),
                "formant_scale": formant_scale,
            }
        )
    return out


def script(p: dict[str, Any], seconds: float) -> Script:
    """Caption, transcript and syllable events."""
    text = " ".join(p["words"])
    pitch = level_word(p["f0"], 140.0, 210.0, ("low", "medium", "high"))
    rate = level_word(p["rate"], 3.0, 4.0, ("slowly ", "", "quickly "))
    size = level_word(p["head_radius"], 0.31, 0.35, ("small ", "", "big "))
    caption = _TEMPLATES[p["template"]].format(
        color=p["color"], pitch=pitch, text=text, bg=p["background"], size=size, rate=rate
    )
    events = tuple((s["onset"], "syllable", s["duration"]) for s in schedule(p, seconds))
    return Script(caption=caption, transcript=text, events=events)


def render(
    p: dict[str, Any], geo: Geometry, rng: np.random.Generator, image: torch.Tensor
) -> tuple[torch.Tensor, np.ndarray]:
    """Synthesise the voice, then draw the face with the mouth following its loudness.

    Returns:
        ``(frames [T, H, W, 3], mix [S] float64)``.
    """
    height, width = geo.height, geo.width
    canvas = Canvas(geo.num_frames, height, width)
    times = geo.frame_times()
    voice = sound.speech(rng, geo.sample_rate, geo.num_samples, schedule(p, geo.seconds))
    loud = sound.frame_rms(voice, geo.sample_rate, times, 1.0 / geo.fps)
    opening = torch.from_numpy(loud / max(float(loud.max()), 1e-12)).float()  # [T] in 0..1

    r, cx, cy = p["head_radius"] * height, p["cx"] * width, p["cy"] * height
    color = color_rgb(p, "color")
    paint(image, circle_alpha(canvas, cx, cy, r + 0.8), color * 0.55)
    paint(image, circle_alpha(canvas, cx, cy, r), color)
    lid = 1.0 - np.exp(-(((times - p["blink"]) / 0.05) ** 2)) if p["blink"] >= 0 else np.ones_like(times)
    er = 0.2 * r
    # Static geometry stays scalar so its coverage is computed once for all frames.
    eye_ry = er * torch.from_numpy(np.maximum(lid, 0.08)).float() if p["blink"] >= 0 else er
    pupil_on = torch.from_numpy(lid).float() if p["blink"] >= 0 else 1.0
    for side in (-1.0, 1.0):
        ex, ey = cx + side * 0.38 * r, cy - 0.22 * r
        paint(image, ellipse_alpha(canvas, ex, ey, er, eye_ry), torch.tensor([0.97, 0.97, 0.95]))
        pupil = circle_alpha(canvas, ex + p["gaze"][0] * er, ey + p["gaze"][1] * er, 0.5 * er)
        paint(image, pupil.scaled(pupil_on), torch.tensor([0.05, 0.05, 0.08]))
    mouth = ellipse_alpha(canvas, cx, cy + 0.45 * r, 0.38 * r, 0.04 * r + 0.24 * r * opening)
    paint(image, mouth, torch.tensor(_MOUTH_RGB))
    return image, voice
