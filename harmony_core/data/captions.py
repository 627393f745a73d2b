"""Words of the synthetic world: named colours, size/pitch/tempo words and the speech vocabulary.

Every caption in :mod:`harmony_core.data.synthetic` is built from these tables, from the sampled
numbers (a radius becomes "small"/"large", a frequency becomes "low"/"high"), so a caption pins
down most of what a clip looks and sounds like. The tables are the single source of truth: the
renderers look colours up here by name, and the words are derived from the same numbers the
renderers use.
"""

from __future__ import annotations

__all__ = [
    "BACKGROUND_COLORS",
    "OBJECT_COLORS",
    "PHONEMES",
    "VOCABULARY",
    "level_word",
    "number_word",
    "syllables_of",
]

# Saturated object colours, chosen so that each name sits in its own hue sector (a viewer, and a
# test, can tell them apart by hue alone). Values are linear 0..1 RGB.
OBJECT_COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.14, 0.12),
    "orange": (0.96, 0.52, 0.08),
    "yellow": (0.95, 0.86, 0.12),
    "green": (0.18, 0.76, 0.22),
    "teal": (0.08, 0.70, 0.66),
    "blue": (0.16, 0.34, 0.92),
    "purple": (0.56, 0.24, 0.86),
    "pink": (0.95, 0.42, 0.72),
}

# Muted, darkish backgrounds: every object colour stays clearly visible on every background.
BACKGROUND_COLORS: dict[str, tuple[float, float, float]] = {
    "black": (0.05, 0.05, 0.06),
    "dark grey": (0.20, 0.20, 0.22),
    "grey": (0.40, 0.40, 0.42),
    "navy": (0.10, 0.13, 0.28),
    "dark green": (0.12, 0.24, 0.15),
    "brown": (0.33, 0.24, 0.17),
    "maroon": (0.30, 0.10, 0.12),
    "dark purple": (0.22, 0.14, 0.28),
}

_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")

# Phoneme inventory of the toy speech synthesiser. Vowels carry formants (F1, F2, F3) in Hz of an
# adult voice (Peterson & Barney style averages); consonants carry a manner of articulation.
PHONEMES: dict[str, dict[str, object]] = {
    "a": {"kind": "vowel", "formants": (730.0, 1090.0, 2440.0)},
    "e": {"kind": "vowel", "formants": (530.0, 1840.0, 2480.0)},
    "i": {"kind": "vowel", "formants": (300.0, 2250.0, 3000.0)},
    "o": {"kind": "vowel", "formants": (570.0, 840.0, 2410.0)},
    "u": {"kind": "vowel", "formants": (320.0, 870.0, 2240.0)},
    "b": {"kind": "plosive"},
    "p": {"kind": "plosive"},
    "d": {"kind": "plosive"},
    "t": {"kind": "plosive"},
    "k": {"kind": "plosive"},
    "g": {"kind": "plosive"},
    "m": {"kind": "nasal"},
    "n": {"kind": "nasal"},
    "l": {"kind": "nasal"},
    "w": {"kind": "nasal"},
    "y": {"kind": "nasal"},
    "h": {"kind": "breath"},
    "s": {"kind": "breath"},
    "": {"kind": "none"},
}

# Simple English words and their syllables as (consonant, vowel) pairs.
VOCABULARY: dict[str, tuple[tuple[str, str], ...]] = {
    "hello": (("h", "e"), ("l", "o")),
    "mama": (("m", "a"), ("m", "a")),
    "papa": (("p", "a"), ("p", "a")),
    "banana": (("b", "a"), ("n", "a"), ("n", "a")),
    "baby": (("b", "e"), ("b", "i")),
    "yes": (("y", "e"),),
    "no": (("n", "o"),),
    "hi": (("h", "a"),),
    "go": (("g", "o"),),
    "oh": (("", "o"),),
    "moo": (("m", "u"),),
    "la": (("l", "a"),),
    "ba": (("b", "a"),),
    "today": (("t", "u"), ("d", "e")),
    "lemon": (("l", "e"), ("m", "o")),
    "tomato": (("t", "o"), ("m", "a"), ("t", "o")),
    "good": (("g", "u"),),
    "see": (("s", "i"),),
    "cookie": (("k", "u"), ("k", "i")),
    "hooray": (("h", "u"), ("l", "e")),
    "window": (("w", "i"), ("d", "o")),
    "okay": (("", "o"), ("k", "e")),
}


def syllables_of(word: str) -> tuple[tuple[str, str], ...]:
    """The (consonant, vowel) syllables of a vocabulary word.

    Args:
        word: a key of :data:`VOCABULARY`.

    Returns:
        The word's syllables in order.

    Raises:
        ValueError: if the word is not in the vocabulary.
    """
    if word not in VOCABULARY:
        raise ValueError(
            f"word={word!r} is not in the synthetic speech vocabulary: expected one of "
            f"{sorted(VOCABULARY)}. Pick words from VOCABULARY."
        )
    return VOCABULARY[word]


def level_word(value: float, low: float, high: float, words: tuple[str, str, str]) -> str:
    """Map a number onto three words: ``words[0]`` below ``low``, ``words[2]`` at or above ``high``.

    Args:
        value: the quantity (a radius, a frequency, a tempo...).
        low: lower threshold.
        high: upper threshold.
        words: the (below, between, above) words.

    Returns:
        One of ``words``.
    """
    if value < low:
        return words[0]
    if value >= high:
        return words[2]
    return words[1]


def number_word(n: int) -> str:
    """Spell small counts ("three"); larger counts stay digits."""
    return _NUMBERS[n] if 0 <= n < len(_NUMBERS) else str(n)
