"""Vectorised sound synthesis for the synthetic world (numpy, float64 inside, float32 out).

Every sound starts exactly at its event's sample ``round(time * sample_rate)`` with a short
attack (1-5 ms), so the audio onset of an event is within a few milliseconds of its exact time.
Randomness (noise) comes only from an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

import numpy as np

from .captions import PHONEMES

__all__ = [
    "add_at",
    "ambient_noise",
    "band_noise",
    "beep",
    "drum_hit",
    "finalize",
    "frame_rms",
    "impact",
    "speech",
]


# Helpers ------------------------------------------------------------------------------------------


def add_at(buf: np.ndarray, time: float, sig: np.ndarray, sample_rate: int) -> None:
    """Add ``sig`` into ``buf`` starting at sample ``round(time * sample_rate)``, cutting at the end.

    Args:
        buf: ``[S]`` float64 mix buffer, modified in place.
        time: onset in seconds.
        sig: ``[n]`` float64 sound.
        sample_rate: Hz.
    """
    start = int(round(time * sample_rate))
    if start >= len(buf) or start + len(sig) <= 0:
        return
    lo = max(0, -start)
    end = min(len(buf), start + len(sig))
    buf[start + lo : end] += sig[lo : end - start]


def _attack_decay(n: int, sample_rate: int, attack: float, tau: float) -> np.ndarray:
    """Linear attack of ``attack`` seconds, then exponential decay with time constant ``tau``."""
    t = np.arange(n) / sample_rate
    ramp = np.clip(t / max(attack, 1.0 / sample_rate), 0.0, 1.0)
    return ramp * np.exp(-np.maximum(t - attack, 0.0) / tau)


def _raised_cosine(n: int, rise: int) -> np.ndarray:
    """0 -> 1 over ``rise`` samples (half a Hann window), then 1."""
    out = np.ones(n)
    rise = min(rise, n)
    if rise > 0:
        out[:rise] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(rise) + 0.5) / rise)
    return out


def band_noise(rng: np.random.Generator, n: int, sample_rate: int, low_hz: float, high_hz: float) -> np.ndarray:
    """White noise shaped to a smooth band (4th-order Butterworth-like magnitude), unit RMS.

    Filtering is done before any envelope is applied by the caller, so the zero-phase FFT filter
    cannot smear energy in front of an onset.

    Args:
        rng: noise source.
        n: number of samples.
        sample_rate: Hz.
        low_hz: high-pass corner (0 for none).
        high_hz: low-pass corner.

    Returns:
        ``[n]`` float64.
    """
    n_fft = 1 << max(1, (n - 1).bit_length())  # a power of two: fast FFT for any n
    white = rng.standard_normal(n_fft)
    spec = np.fft.rfft(white)
    f = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    gain = 1.0 / np.sqrt(1.0 + (f / high_hz) ** 8)
    if low_hz > 0:
        gain *= 1.0 / np.sqrt(1.0 + (low_hz / np.maximum(f, 1e-3)) ** 8)
    out = np.fft.irfft(spec * gain, n=n_fft)[:n]
    return out / max(float(np.sqrt(np.mean(out**2))), 1e-12)


# Sounds -------------------------------------------------------------------------------------------


def impact(
    rng: np.random.Generator, sample_rate: int, *, amplitude: float, thump_hz: float, tau: float, cutoff_hz: float
) -> np.ndarray:
    """A ball hitting the floor: low sine thump with a falling pitch plus a short filtered-noise burst.

    Args:
        rng: noise source.
        sample_rate: Hz.
        amplitude: overall gain (proportional to impact speed).
        thump_hz: thump pitch (lower for bigger balls).
        tau: thump decay time constant in seconds.
        cutoff_hz: low-pass corner of the noise burst (brighter for smaller balls).

    Returns:
        ``[n]`` float64 starting at the contact instant.
    """
    n = int((6.0 * tau + 0.01) * sample_rate)
    t = np.arange(n) / sample_rate
    # Pitch glides down from 1.5x to 1x in ~10 ms: integrate f(t) = f0 (1 + 0.5 exp(-t/0.01)).
    phase = 2 * np.pi * thump_hz * (t + 0.5 * 0.01 * (1.0 - np.exp(-t / 0.01)))
    thump = np.sin(phase) * _attack_decay(n, sample_rate, 0.001, tau)
    burst = band_noise(rng, n, sample_rate, 150.0, cutoff_hz) * _attack_decay(n, sample_rate, 0.0005, 0.25 * tau)
    return amplitude * (0.8 * thump + 0.35 * burst)


def beep(sample_rate: int, *, freq: float, tau: float, tone: str) -> np.ndarray:
    """An electronic beep: 3 ms attack, exponential decay; ``tone`` is ``"sine"`` or ``"square"``.

    The square tone is band-limited (odd harmonics below 0.45 * sample_rate) so it does not alias.

    Args:
        sample_rate: Hz.
        freq: pitch in Hz.
        tau: decay time constant in seconds.
        tone: ``"sine"`` (pure) or ``"square"`` (buzzy).

    Returns:
        ``[n]`` float64.
    """
    n = int((6.0 * tau + 0.01) * sample_rate)
    t = np.arange(n) / sample_rate
    if tone == "sine":
        wave = np.sin(2 * np.pi * freq * t)
    else:
        ks = np.arange(1, int(0.45 * sample_rate / freq) + 1, 2, dtype=np.float64)
        wave = (np.sin(2 * np.pi * freq * np.outer(ks, t)) / ks[:, None]).sum(0) * (4 / np.pi) * 0.6
    return wave * _attack_decay(n, sample_rate, 0.003, tau)


def drum_hit(rng: np.random.Generator, sample_rate: int, *, freq: float, tau: float, velocity: float) -> np.ndarray:
    """A struck membrane: three circular-membrane modes with a small pitch drop, plus a stick click.

    Args:
        rng: noise source for the click.
        sample_rate: Hz.
        freq: fundamental pitch in Hz.
        tau: decay of the fundamental in seconds (higher modes decay faster).
        velocity: strike strength in 0..1 (gain).

    Returns:
        ``[n]`` float64.
    """
    n = int((6.0 * tau + 0.01) * sample_rate)
    t = np.arange(n) / sample_rate
    # Tension rises on impact: pitch starts 20 % high and settles within ~40 ms.
    glide = t + 0.2 * 0.04 * (1.0 - np.exp(-t / 0.04))
    out = np.zeros(n)
    for ratio, gain, decay in ((1.0, 1.0, 1.0), (1.594, 0.45, 0.6), (2.136, 0.25, 0.4)):  # Bessel-zero ratios
        out += gain * np.sin(2 * np.pi * freq * ratio * glide) * _attack_decay(n, sample_rate, 0.001, tau * decay)
    click = band_noise(rng, n, sample_rate, 1500.0, 7000.0) * _attack_decay(n, sample_rate, 0.0005, 0.004)
    return velocity * (0.8 * out + 0.3 * click)


def _formant_gain(freqs: np.ndarray, formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """Magnitude of a cascade of two-pole resonators (Klatt 1980), 1 at 0 Hz: prod F^2 / |F^2 - f^2 + i B f|."""
    f = freqs[:, None]
    mag = formants**2 / np.sqrt((formants**2 - f**2) ** 2 + (bandwidths * f) ** 2)
    return mag.prod(axis=1)


def _fade_window(n: int, rise: int, fall: int) -> np.ndarray:
    """1 with a raised-cosine rise over ``rise`` samples and a raised-cosine fall over the last ``fall``."""
    w = _raised_cosine(n, rise)
    fall = min(fall, n)
    if fall > 0:
        w[n - fall :] *= _raised_cosine(fall, fall)[::-1]
    return w


def speech(rng: np.random.Generator, sample_rate: int, num_samples: int, syllables: list[dict]) -> np.ndarray:
    """Speech-like syllables: a harmonic voice through vowel formants, after a consonant onset.

    The voice is a sum of harmonics of a gliding pitch with a -6 dB/octave source tilt, filtered by
    a cascade of three formant resonators of the vowel. Consonants are a 20 ms noise burst
    (plosive), a 50 ms low-harmonic murmur (nasal/liquid) or 50 ms of breath noise, cross-faded
    into the vowel. Each syllable dict has ``onset`` and ``duration`` (s), ``consonant``, ``vowel``
    (keys of :data:`~harmony_core.data.captions.PHONEMES`), ``f0`` (Hz) and ``formant_scale``.

    Args:
        rng: noise source for plosive bursts and breath.
        sample_rate: Hz.
        num_samples: S, length of the output.
        syllables: the syllables to speak.

    Returns:
        ``[S]`` float64.
    """
    out = np.zeros(num_samples)
    ms = sample_rate // 1000
    for syl in syllables:
        n = int(round(syl["duration"] * sample_rate))
        if n <= 0:
            continue
        t = np.arange(n) / sample_rate
        # Rise-fall intonation within the syllable plus a 5 Hz, 1 % vibrato.
        f0 = syl["f0"] * (1.0 + 0.06 * np.sin(np.pi * t / syl["duration"]) + 0.01 * np.sin(2 * np.pi * 5.0 * t))
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        f0_mean = float(f0.mean())
        ks = np.arange(1, int(min(5500.0, 0.45 * sample_rate) / f0_mean) + 1, dtype=np.float64)
        formants = np.asarray(PHONEMES[syl["vowel"]]["formants"]) * syl["formant_scale"]
        gains = _formant_gain(ks * f0_mean, formants, np.array([80.0, 100.0, 140.0])) / ks
        harmonics = np.sin(np.outer(ks, phase))  # [K, n]
        vowel = gains @ harmonics / np.sqrt((gains**2).sum())

        kind = PHONEMES[syl["consonant"]]["kind"]
        c = min(int({"plosive": 0.02, "nasal": 0.05, "breath": 0.05}.get(kind, 0.0) * sample_rate), n // 3)
        env = np.zeros(n)
        env[c:] = _fade_window(n - c, 20 * ms, min(60 * ms, (n - c) // 2))
        sig = vowel * env
        tail = min(n, c + 10 * ms)  # consonants overlap the vowel's rise by 10 ms
        if kind == "plosive" and c > 0:
            burst = band_noise(rng, c, sample_rate, 1500.0, 6000.0) * _attack_decay(c, sample_rate, 0.001, 0.006)
            sig[:c] += 0.6 * burst
        elif kind == "nasal" and c > 0:
            murmur = np.array([1.0, 0.35, 0.12]) @ harmonics[:3] / 1.06  # mouth closed: low harmonics only
            sig[:tail] += 0.5 * murmur[:tail] * _fade_window(tail, 10 * ms, 20 * ms)
        elif kind == "breath" and c > 0:
            low = 2500.0 if syl["consonant"] == "s" else 500.0
            sig[:tail] += 0.3 * band_noise(rng, tail, sample_rate, low, 7000.0) * _fade_window(tail, 10 * ms, 20 * ms)
        add_at(out, syl["onset"], sig, sample_rate)
    return out


def ambient_noise(rng: np.random.Generator, num_samples: int, sample_rate: int, level: float) -> np.ndarray:
    """Faint room tone: low-passed noise at RMS ``level``.

    Args:
        rng: noise source.
        num_samples: S.
        sample_rate: Hz.
        level: RMS amplitude (0 disables).

    Returns:
        ``[S]`` float64.
    """
    if level <= 0:
        return np.zeros(num_samples)
    return level * band_noise(rng, num_samples, sample_rate, 40.0, 1200.0)


def finalize(mix: np.ndarray, ambient: np.ndarray, peak: float) -> np.ndarray:
    """Normalise the event sounds to ``peak``, add the ambient bed, and guarantee ``|x| <= peak``.

    Args:
        mix: ``[S]`` float64 event sounds.
        ambient: ``[S]`` float64 room tone (already at its absolute level).
        peak: target peak amplitude in (0, 1].

    Returns:
        ``[S]`` float32.
    """
    m = float(np.abs(mix).max()) if mix.size else 0.0
    out = (mix * (0.95 * peak / m) if m > 0 else mix) + ambient
    m2 = float(np.abs(out).max()) if out.size else 0.0
    if m2 > peak:
        out = out * (peak / m2)
    return out.astype(np.float32)


def frame_rms(x: np.ndarray, sample_rate: int, times: np.ndarray, window: float) -> np.ndarray:
    """Hann-weighted RMS of ``x`` in a window of ``window`` seconds centred on each time.

    Args:
        x: ``[S]`` signal.
        sample_rate: Hz.
        times: ``[T]`` centre times in seconds.
        window: window length in seconds.

    Returns:
        ``[T]`` float64 RMS values.
    """
    half = max(1, int(round(window * sample_rate / 2)))
    w = np.hanning(2 * half + 1)
    padded = np.pad(x, half)
    centres = np.clip(np.round(times * sample_rate).astype(np.int64), 0, len(x) - 1) + half
    idx = centres[:, None] + np.arange(-half, half + 1)[None, :]  # [T, 2*half+1]
    return np.sqrt((padded[idx] ** 2 * w).sum(1) / w.sum())
