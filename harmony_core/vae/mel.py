"""Log-mel front end and Griffin-Lim back end for the small audio VAE (pure PyTorch).

The settings mirror MMAudio-16k's mel converter: 16 kHz mono, ``n_fft = win = 1024``, hop 256,
80 Slaney-scale mel bins with Slaney area normalisation over 0..8 kHz, magnitude (not power)
spectrogram, ``log10(clamp(mel, 1e-5))``.

Framing: the waveform is reflect-padded by ``(n_fft - hop) / 2`` samples on each side and framed
without centring (the BigVGAN / MMAudio convention), so ``S`` samples give exactly ``S // hop``
mel frames and mel frame ``j`` is centred on sample ``j * hop + hop / 2``. Griffin-Lim works on the
same padded signal and returns exactly ``frames * hop`` samples, so encode/decode lengths stay
exact multiples of the hop.

Only ``torch.stft`` / ``torch.fft`` are used (no torchaudio), because newer ComfyUI builds drop
torchaudio; the tests check the filterbank and spectrogram against torchaudio when it exists.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MelConfig",
    "hz_to_mel",
    "mel_to_hz",
    "mel_filterbank",
    "LogMel",
]


@dataclass(frozen=True)
class MelConfig:
    """STFT and mel settings (defaults: MMAudio-16k, 62.5 mel frames per second).

    Attributes:
        sample_rate: waveform rate in Hz.
        n_fft: FFT size; the Hann window has the same length.
        hop: samples between frames.
        n_mels: number of mel bins.
        f_min: lowest filter edge in Hz.
        f_max: highest filter edge in Hz (at most ``sample_rate / 2``).
        log_floor: magnitudes are clamped to this before ``log10`` (MMAudio: 1e-5).
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 256
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float = 8000.0
    log_floor: float = 1e-5

    def __post_init__(self) -> None:
        def bad(name: str, expected: str, fix: str) -> None:
            raise ValueError(f"MelConfig.{name}={getattr(self, name)!r} is invalid: expected {expected}. {fix}")

        for name in ("sample_rate", "n_fft", "hop", "n_mels"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                bad(name, "a positive int", "Use the MMAudio-16k defaults (16000, 1024, 256, 80).")
        if self.n_fft % 2 or (self.n_fft - self.hop) % 2 or self.hop > self.n_fft:
            bad("hop", f"<= n_fft={self.n_fft} with n_fft and n_fft - hop even", "Use n_fft=1024, hop=256.")
        if not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            nyquist = self.sample_rate / 2
            bad("f_max", f"f_min={self.f_min} < f_max <= sample_rate/2={nyquist}", "Use f_min=0, f_max=8000.")
        if not self.log_floor > 0:
            bad("log_floor", "> 0", "Use 1e-5.")

    @property
    def n_freqs(self) -> int:
        """One-sided STFT bins, ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    @property
    def frame_rate(self) -> float:
        """Mel frames per second (``sample_rate / hop``, 62.5 by default)."""
        return self.sample_rate / self.hop

    @property
    def pad(self) -> int:
        """Reflect padding on each side of the waveform, ``(n_fft - hop) / 2``."""
        return (self.n_fft - self.hop) // 2

    @property
    def log_min(self) -> float:
        """The log-mel value of silence, ``log10(log_floor)``."""
        return math.log10(self.log_floor)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Mel scale (Slaney / librosa default: linear below 1 kHz, logarithmic above)
# ---------------------------------------------------------------------------------------------

_F_SP = 200.0 / 3.0  # Hz per mel in the linear region
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # 15 mel
_LOGSTEP = math.log(6.4) / 27.0  # 6.4x in frequency spans 27 mel


def hz_to_mel(freq: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale of frequencies in Hz (any shape, float64 recommended)."""
    freq = torch.as_tensor(freq, dtype=torch.float64)
    linear = freq / _F_SP
    log = _MIN_LOG_MEL + torch.log(freq.clamp_min(_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(freq >= _MIN_LOG_HZ, log, linear)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hz_to_mel` (any shape)."""
    mel = torch.as_tensor(mel, dtype=torch.float64)
    linear = mel * _F_SP
    log = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (mel.clamp_min(_MIN_LOG_MEL) - _MIN_LOG_MEL))
    return torch.where(mel >= _MIN_LOG_MEL, log, linear)


def mel_filterbank(config: MelConfig) -> torch.Tensor:
    """Triangular Slaney-normalised mel filters, ``[n_mels, n_freqs]`` float32.

    Filter ``m`` rises linearly from mel point ``m`` to ``m + 1`` and falls to ``m + 2`` (points
    equally spaced in mel between ``f_min`` and ``f_max``); each row is scaled by
    ``2 / (f_{m+2} - f_m)`` so every filter has the same area (Slaney's "constant energy" norm).
    """
    c = config
    bins_hz = torch.linspace(0.0, c.sample_rate / 2, c.n_freqs, dtype=torch.float64)  # [F]
    m_lo, m_hi = hz_to_mel(torch.tensor(c.f_min)), hz_to_mel(torch.tensor(c.f_max))
    edges = mel_to_hz(torch.linspace(float(m_lo), float(m_hi), c.n_mels + 2, dtype=torch.float64))  # [M+2]
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # [M, 1] each
    rising = (bins_hz[None] - lo) / (mid - lo)
    falling = (hi - bins_hz[None]) / (hi - mid)
    fb = torch.clamp(torch.minimum(rising, falling), min=0.0)  # [M, F]
    fb = fb * (2.0 / (hi - lo))
    return fb.to(torch.float32)


# ---------------------------------------------------------------------------------------------
# STFT / log-mel / Griffin-Lim
# ---------------------------------------------------------------------------------------------


def _check_wave(waveform: torch.Tensor, min_len: int) -> torch.Tensor:
    if not isinstance(waveform, torch.Tensor):
        raise TypeError(f"waveform must be a torch.Tensor [B, S], got {type(waveform).__name__}.")
    if waveform.dim() == 1:
        waveform = waveform[None]
    if waveform.dim() != 2:
        raise ValueError(
            f"waveform has shape {tuple(waveform.shape)}: expected mono [B, S] or [S]. "
            "Downmix multichannel audio first, e.g. waveform.mean(dim=1)."
        )
    if waveform.shape[-1] < min_len:
        raise ValueError(
            f"waveform has {waveform.shape[-1]} samples: expected at least {min_len} for the STFT framing. "
            "Pad the audio with silence."
        )
    return waveform.float()


class LogMel(nn.Module):
    """Waveform → log10-mel spectrogram, plus Griffin-Lim for the way back.

    Buffers (window, filterbank, its pseudo-inverse) are derived from the config and not saved
    in checkpoints.

    Args:
        config: STFT / mel settings; ``None`` means the MMAudio-16k defaults.
    """

    def __init__(self, config: MelConfig | None = None) -> None:
        super().__init__()
        self.config = config or MelConfig()
        fb = mel_filterbank(self.config)
        self.register_buffer("window", torch.hann_window(self.config.n_fft, dtype=torch.float32), persistent=False)
        self.register_buffer("filterbank", fb, persistent=False)  # [M, F]
        # Moore-Penrose inverse of the full-row-rank filterbank, Fᵀ (F Fᵀ)⁻¹, via an 80×80 solve
        # (torch.linalg.pinv's SVD is needlessly slow here on a busy multi-threaded CPU).
        fb64 = fb.double()
        try:
            pinv = torch.linalg.solve(fb64 @ fb64.t(), fb64).t()
        except torch.linalg.LinAlgError:  # empty filters (many mels, small n_fft): rank deficient
            pinv = torch.linalg.pinv(fb64)
        self.register_buffer("filterbank_pinv", pinv.float(), persistent=False)  # [F, M]

    def frames_for(self, num_samples: int) -> int:
        """Mel frames produced from ``num_samples`` samples (``num_samples // hop``)."""
        return num_samples // self.config.hop

    def stft_magnitude(self, waveform: torch.Tensor) -> torch.Tensor:
        """Linear STFT magnitude, ``[B, S]`` → ``[B, n_freqs, S // hop]``."""
        c = self.config
        wave = _check_wave(waveform, c.pad + 1)
        return self._stft(F.pad(wave[:, None], (c.pad, c.pad), mode="reflect")[:, 0]).abs()

    def mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """Linear mel magnitude, ``[B, S]`` (or ``[S]``) → ``[B, n_mels, S // hop]``."""
        return torch.matmul(self.filterbank, self.stft_magnitude(waveform))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Log10-mel spectrogram, ``[B, S]`` (or ``[S]``) → ``[B, n_mels, S // hop]``.

        Values lie in ``[log10(log_floor), ~2]``; silence maps to ``log10(log_floor)`` (-5).
        """
        return torch.log10(self.mel(waveform).clamp_min(self.config.log_floor))

    # --- inverse -------------------------------------------------------------------------------
    def mel_to_magnitude(self, log_mel: torch.Tensor, *, refine_steps: int = 8) -> torch.Tensor:
        """Non-negative linear magnitude whose mel projection approximates ``log_mel``.

        Starts from the clamped pseudo-inverse and refines with multiplicative NMF-style updates
        (``X ← X · Fᵀ M / Fᵀ F X``), which keep X ≥ 0 and reduce ``‖F X − M‖²``.

        Args:
            log_mel: ``[B, n_mels, N]`` log10 mel.
            refine_steps: multiplicative updates after the pseudo-inverse.

        Returns:
            ``[B, n_freqs, N]`` magnitude.
        """
        mel = torch.pow(10.0, log_mel.float())
        fb = self.filterbank
        mag = torch.matmul(self.filterbank_pinv, mel).clamp_min(1e-8)
        numer = torch.matmul(fb.t(), mel)
        gram = torch.matmul(fb.t(), fb)  # [F, F]
        for _ in range(refine_steps):
            mag = mag * numer / torch.matmul(gram, mag).clamp_min(1e-12)
        return mag

    def griffin_lim(
        self,
        log_mel: torch.Tensor,
        *,
        n_iter: int = 32,
        momentum: float = 0.99,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Waveform from a log-mel spectrogram by fast Griffin-Lim (Perraudin et al. 2013).

        Each iteration projects onto consistent spectrograms (inverse STFT then STFT) and keeps the
        target magnitude; the momentum term ``t_n = c_n + α (c_n − c_{n−1})`` speeds convergence.

        Args:
            log_mel: ``[B, n_mels, N]`` (or ``[n_mels, N]``) log10 mel.
            n_iter: Griffin-Lim iterations (32-64 is plenty for tones and clicks).
            momentum: α of fast Griffin-Lim, in ``[0, 1)``; 0 gives plain Griffin-Lim.
            generator: seeds random initial phases; ``None`` starts from zero phase (deterministic).

        Returns:
            ``[B, N * hop]`` float32 waveform.
        """
        c = self.config
        if log_mel.dim() == 2:
            log_mel = log_mel[None]
        if log_mel.dim() != 3 or log_mel.shape[1] != c.n_mels:
            raise ValueError(f"log_mel has shape {tuple(log_mel.shape)}: expected [B, {c.n_mels}, N].")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum={momentum} is invalid: expected 0 <= momentum < 1. Use 0.99.")
        mag = self.mel_to_magnitude(log_mel)  # [B, F, N]
        n = mag.shape[-1]
        length = (n - 1) * c.hop + c.n_fft  # padded-signal length covered exactly by N frames
        if generator is None:
            phase = torch.ones_like(mag, dtype=torch.complex64)
        else:
            rnd = torch.rand(mag.shape, generator=generator, device=generator.device).to(mag.device)
            phase = torch.polar(torch.ones_like(mag), 2 * math.pi * rnd)
        prev = torch.zeros_like(phase)
        for _ in range(n_iter):
            rebuilt = self._stft(self._istft(mag * phase, length))
            accel = rebuilt + momentum * (rebuilt - prev) if momentum else rebuilt
            prev = rebuilt
            phase = accel / accel.abs().clamp_min(1e-8)
        wave = self._istft(mag * phase, length)
        return wave[:, c.pad : c.pad + n * c.hop]

    # --- helpers --------------------------------------------------------------------------------
    def _stft(self, padded: torch.Tensor) -> torch.Tensor:
        # [B, L] → [B, F, N] complex, frames at 0, hop, 2*hop, ... of the already padded signal
        c = self.config
        return torch.stft(
            padded, c.n_fft, hop_length=c.hop, win_length=c.n_fft, window=self.window,
            center=False, return_complex=True,
        )

    def _istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        # Weighted overlap-add with window-squared normalisation; written out (instead of
        # torch.istft) because torch.istft rejects center=False framing whose first sample has a
        # zero window envelope. The edge samples with a tiny envelope lie inside the padding.
        c = self.config
        n = spec.shape[-1]
        frames = torch.fft.irfft(spec, n=c.n_fft, dim=1) * self.window[:, None]  # [B, n_fft, N]
        out = F.fold(frames, output_size=(1, length), kernel_size=(1, c.n_fft), stride=(1, c.hop))
        env = F.fold(
            (self.window**2)[None, :, None].expand(1, c.n_fft, n), output_size=(1, length),
            kernel_size=(1, c.n_fft), stride=(1, c.hop),
        )
        return (out / env.clamp_min(1e-3)).flatten(1)  # [B, length]
