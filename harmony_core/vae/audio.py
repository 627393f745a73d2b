"""A small mel-spectrogram audio VAE with the MMAudio-16k time geometry (the embedded default).

Pipeline: mono 16 kHz waveform ``[B, S]`` → log10-mel ``[B, 80, 2*T_a]`` (62.5 frames/s, see
:mod:`.mel`) → Conv1d encoder with one stride-2 step → latents ``[B, C_a, T_a]`` at 31.25 per
second → Conv1d decoder → log-mel → Griffin-Lim → waveform.

Length rule: ``S`` samples give ``T_a = max(1, S // samples_per_latent)`` latents (MMAudio's floor)
(the same rounding as ``TimelineConfig.audio_latent_frames``); the waveform is zero-padded or
trimmed at the end to ``T_a * samples_per_latent`` (512) samples before the mel transform.
``decode`` returns exactly ``T_a * 512`` samples; to get a target length ``S`` back, keep
``wave[..., :S]`` and zero-pad when ``S`` is longer (it is never more than 256 samples off).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .common import ChannelRMSNorm, LatentVAE, init_posterior_logvar_
from .mel import LogMel, MelConfig

__all__ = ["AudioVAEConfig", "AudioVAE"]


@dataclass(frozen=True)
class AudioVAEConfig:
    """Architecture of :class:`AudioVAE`.

    Attributes:
        latent_channels: C_a of the latent ``[B, C_a, T_a]``.
        hidden: Conv1d width of encoder and decoder.
        num_res_blocks: residual blocks before and after the ×2 time resampling (each side).
        kernel: Conv1d kernel size (odd).
        mel: STFT / mel front end (MMAudio-16k defaults).
        mel_center: log-mel value mapped to 0 at the network input (silence is -5).
        mel_scale: log-mel units per network unit.
    """

    latent_channels: int = 8
    hidden: int = 128
    num_res_blocks: int = 2
    kernel: int = 3
    mel: MelConfig = dataclasses.field(default_factory=MelConfig)
    mel_center: float = -2.5
    mel_scale: float = 2.5

    def __post_init__(self) -> None:
        if isinstance(self.mel, dict):
            object.__setattr__(self, "mel", MelConfig(**self.mel))

        def bad(name: str, expected: str, fix: str) -> None:
            raise ValueError(f"AudioVAEConfig.{name}={getattr(self, name)!r} is invalid: expected {expected}. {fix}")

        for name in ("latent_channels", "hidden", "num_res_blocks", "kernel"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                bad(name, "an int >= 1", "Use the defaults (8, 128, 2, 3).")
        if self.kernel % 2 == 0:
            bad("kernel", "an odd kernel size", "Use 3.")
        if not isinstance(self.mel, MelConfig):
            bad("mel", "a MelConfig", "Pass MelConfig() or its to_dict().")
        if not self.mel_scale > 0:
            bad("mel_scale", "> 0", "Use 2.5.")

    @property
    def time_downsample(self) -> int:
        """Mel frames per latent frame (2)."""
        return 2

    @property
    def samples_per_latent(self) -> int:
        """Waveform samples per latent frame (``hop * 2`` = 512)."""
        return self.mel.hop * self.time_downsample

    @property
    def latent_rate(self) -> float:
        """Latent frames per second (16000 / 512 = 31.25)."""
        return self.mel.sample_rate / self.samples_per_latent

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AudioVAEConfig:
        """Rebuild from :meth:`to_dict` output (e.g. checkpoint metadata)."""
        d = dict(d)
        try:
            mel = MelConfig(**d.pop("mel", {}))
            return cls(mel=mel, **d)
        except TypeError as e:
            raise ValueError(f"stored AudioVAEConfig does not match this version of harmony_core: {e}") from e


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------


class _ResBlock1d(nn.Module):
    def __init__(self, channels: int, kernel: int, dilation: int) -> None:
        super().__init__()
        pad = dilation * (kernel // 2)
        self.norm1 = ChannelRMSNorm(channels)
        self.conv1 = nn.Conv1d(channels, channels, kernel, padding=pad, dilation=dilation)
        self.norm2 = ChannelRMSNorm(channels)
        self.conv2 = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        nn.init.zeros_(self.conv2.weight)  # residual branch starts at zero (block = identity)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


def _blocks(cfg: AudioVAEConfig) -> nn.Sequential:
    # Dilations 1, 2, 4, ... widen the receptive field cheaply.
    return nn.Sequential(*[_ResBlock1d(cfg.hidden, cfg.kernel, 2**i) for i in range(cfg.num_res_blocks)])


class _Encoder(nn.Module):
    def __init__(self, cfg: AudioVAEConfig) -> None:
        super().__init__()
        k = cfg.kernel
        self.conv_in = nn.Conv1d(cfg.mel.n_mels, cfg.hidden, k, padding=k // 2)
        self.blocks_hi = _blocks(cfg)
        self.down = nn.Conv1d(cfg.hidden, cfg.hidden, 4, stride=2, padding=1)  # 2N → N
        self.blocks_lo = _blocks(cfg)
        self.norm_out = ChannelRMSNorm(cfg.hidden)
        self.conv_out = nn.Conv1d(cfg.hidden, 2 * cfg.latent_channels, k, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, n_mels, 2*T_a] normalised log-mel → [B, 2C, T_a]
        x = self.blocks_lo(self.down(self.blocks_hi(self.conv_in(x))))
        return self.conv_out(F.silu(self.norm_out(x)))


class _Decoder(nn.Module):
    def __init__(self, cfg: AudioVAEConfig) -> None:
        super().__init__()
        k = cfg.kernel
        self.conv_in = nn.Conv1d(cfg.latent_channels, cfg.hidden, k, padding=k // 2)
        self.blocks_lo = _blocks(cfg)
        self.up = nn.Conv1d(cfg.hidden, cfg.hidden, k, padding=k // 2)  # after nearest ×2
        self.blocks_hi = _blocks(cfg)
        self.norm_out = ChannelRMSNorm(cfg.hidden)
        self.conv_out = nn.Conv1d(cfg.hidden, cfg.mel.n_mels, k, padding=k // 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # z: [B, C, T_a] raw latent → [B, n_mels, 2*T_a] normalised log-mel
        x = self.blocks_lo(self.conv_in(z))
        x = self.blocks_hi(self.up(F.interpolate(x, scale_factor=2.0, mode="nearest")))
        return self.conv_out(F.silu(self.norm_out(x)))


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


class AudioVAE(LatentVAE):
    """Mel VAE: mono waveform ``[B, S]`` ↔ normalised latents ``[B, C_a, T_a]`` (31.25 per second).

    ``encode`` takes a waveform; ``encode_mel`` / ``decode_mel`` work on log-mel directly;
    ``decode`` runs Griffin-Lim and returns ``[B, T_a * 512]`` samples. The waveform must already
    be at ``sample_rate``; multichannel audio must be downmixed by the caller (``[B, 1, S]`` is
    accepted as mono). ``griffin_lim_iters`` (default 32) sets the Griffin-Lim iterations of
    ``decode``.

    Args:
        config: architecture; ``None`` means the defaults.
    """

    KIND = "audio_vae"
    latent_dims = 3

    def __init__(self, config: AudioVAEConfig | None = None) -> None:
        config = config or AudioVAEConfig()
        super().__init__(config.latent_channels)
        self.config = config
        self.mel = LogMel(config.mel)
        self.encoder = _Encoder(config)
        self.decoder = _Decoder(config)
        init_posterior_logvar_(self.encoder.conv_out, config.latent_channels)
        self.griffin_lim_iters = 32

    # --- geometry --------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        """Waveform sample rate in Hz."""
        return self.config.mel.sample_rate

    @property
    def hop(self) -> int:
        """Samples between mel frames (256)."""
        return self.config.mel.hop

    @property
    def samples_per_latent(self) -> int:
        """Samples per latent frame (512)."""
        return self.config.samples_per_latent

    @property
    def latent_rate(self) -> float:
        """Latent frames per second (31.25)."""
        return self.config.latent_rate

    def latent_frames(self, num_samples: int) -> int:
        """``T_a = max(1, S // samples_per_latent)`` for ``S`` samples (MMAudio floors too)."""
        return max(1, num_samples // self.samples_per_latent)

    def fit_length(self, waveform: torch.Tensor) -> torch.Tensor:
        """Zero-pad or trim ``[B, S]`` at the end to ``latent_frames(S) * 512`` samples."""
        wave = self._check_waveform(waveform)
        target = self.latent_frames(wave.shape[-1]) * self.samples_per_latent
        return F.pad(wave, (0, target - wave.shape[-1])) if target >= wave.shape[-1] else wave[:, :target]

    def _check_waveform(self, waveform: torch.Tensor) -> torch.Tensor:
        if not isinstance(waveform, torch.Tensor):
            raise TypeError(f"waveform must be a torch.Tensor [B, S], got {type(waveform).__name__}.")
        if waveform.dim() == 3 and waveform.shape[1] == 1:
            waveform = waveform[:, 0]  # ComfyUI mono AUDIO [B, 1, S]
        elif waveform.dim() == 1:
            waveform = waveform[None]
        if waveform.dim() != 2:
            raise ValueError(
                f"waveform has shape {tuple(waveform.shape)}: the audio VAE expects mono [B, S] at "
                f"{self.sample_rate} Hz. Downmix first, e.g. waveform.mean(dim=1) for [B, channels, S]."
            )
        if not waveform.is_floating_point():
            raise TypeError(f"waveform has dtype {waveform.dtype}: expected floating point in [-1, 1].")
        if waveform.shape[-1] < 1:
            raise ValueError("waveform is empty (S=0): expected at least one sample.")
        return waveform.float()

    # --- mel <-> latent --------------------------------------------------------------------------
    def waveform_to_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """``[B, S]`` → log10-mel ``[B, n_mels, 2*T_a]`` after :meth:`fit_length`."""
        return self.mel(self.fit_length(waveform).to(self.mel.window.device))

    def posterior_mel(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw posterior of log-mel ``[B, n_mels, N]`` (N even) → ``(mean, logvar)``, ``[B, C_a, N/2]`` each."""
        n_mels = self.config.mel.n_mels
        if log_mel.dim() != 3 or log_mel.shape[1] != n_mels or log_mel.shape[-1] % 2 or log_mel.shape[-1] < 2:
            raise ValueError(
                f"log-mel has shape {tuple(log_mel.shape)}: expected [B, {n_mels}, N] with N even and >= 2. "
                "Use waveform_to_mel, which pads the waveform to whole latent frames."
            )
        x = (log_mel.to(self.encoder.conv_in.weight.dtype) - self.config.mel_center) / self.config.mel_scale
        return self.split_moments(self.encoder(x))

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw posterior of a waveform ``[B, S]`` → ``(mean, logvar)``, ``[B, C_a, T_a]`` each."""
        return self.posterior_mel(self.waveform_to_mel(x))

    def encode_mel(
        self, log_mel: torch.Tensor, *, generator: torch.Generator | None = None, sample: bool = False
    ) -> torch.Tensor:
        """Like :meth:`encode` but from log-mel ``[B, n_mels, 2*T_a]``; returns ``[B, C_a, T_a]``."""
        if sample and generator is None:
            raise ValueError("encode_mel(sample=True) needs an explicit torch.Generator.")
        mean, logvar = self.posterior_mel(log_mel)
        return self.normalize(self.draw(mean, logvar, generator) if sample else mean)

    def decode_mel_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latent ``[B, C_a, T_a]`` → log10-mel ``[B, n_mels, 2*T_a]`` (not clamped; for training)."""
        out = self.decoder(z.to(self.decoder.conv_in.weight.dtype))
        return out * self.config.mel_scale + self.config.mel_center

    def decode_mel(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalised latent ``[B, C_a, T_a]`` → log10-mel ``[B, n_mels, 2*T_a]``, clamped to the log floor."""
        if latent.dim() != 3 or latent.shape[1] != self.latent_channels:
            raise ValueError(
                f"audio latent has shape {tuple(latent.shape)}: expected [B, {self.latent_channels}, T_a]. "
                "Use the VAE that produced the latent."
            )
        return self.decode_mel_raw(self.denormalize(latent)).clamp_min(self.config.mel.log_min)

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latent ``[B, C_a, T_a]`` → waveform ``[B, T_a * 512]`` via Griffin-Lim (fp32)."""
        log_mel = self.decode_mel_raw(z).float().clamp_min(self.config.mel.log_min)
        return self.mel.griffin_lim(log_mel, n_iter=self.griffin_lim_iters).clamp(-1.0, 1.0)

    def _config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()
