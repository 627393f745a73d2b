"""Latent conventions of the pretrained autoencoders that Ovi (and a Harmony model fine-tuned from
Ovi) works in: MMAudio's 16 kHz mel VAE and the Wan2.2 video VAE, plus Ovi's clip lengths.

The numbers were read off the reference modules by instantiating them (see
``tests/fixtures/ovi/conventions.json`` and ``tests/core/test_convert.py``):

* MMAudio 16k: mel of 80 bins from a 1024-point STFT (Hann window 1024, hop 256, reflect padding of
  (n_fft - hop) / 2 on both sides, ``center=False``, log10), so ``samples // 256`` mel frames; the
  VAE halves the frame rate (``avg_pool1d`` stride 2: floor) into 20 latent channels. One latent is
  512 samples: 31.25 latents per second. The BigVGAN vocoder upsamples each mel frame by 256.
* Wan2.2 VAE: 48 latent channels, causal in time (first pixel frame alone, then groups of 4) and
  16x spatial downsampling.
* Ovi's engine does not compute latent lengths: they are fixed per checkpoint (5 s: 31 video / 157
  audio latents, 10 s: 61 / 314). Decoded, 157 latents are 80384 samples (5.024 s) against 121
  frames at 24 fps (5.042 s). The audio RoPE scale 0.19676 equals 31 / (121 / 24 * 31.25): video
  latents per audio latent over the exact video duration.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "MelAudioConvention",
    "VideoLatentConvention",
    "OviClip",
    "MMAUDIO_16K",
    "WAN22_VAE",
    "OVI_CLIPS",
    "OVI_FPS",
    "OVI_AUDIO_ROPE_SCALE",
]


@dataclass(frozen=True)
class MelAudioConvention:
    """A mel-spectrogram audio VAE's framing (MMAudio style)."""

    sample_rate: int
    n_fft: int
    win_length: int
    hop_length: int
    n_mels: int
    f_min: float
    f_max: float
    log: str  # "log10" of the clamped (>= 1e-5) mel magnitude
    latent_channels: int
    latent_downsample: int  # mel frames per latent

    @property
    def samples_per_latent(self) -> int:
        return self.hop_length * self.latent_downsample

    @property
    def latent_rate(self) -> float:
        """Latents per second (MMAudio-16k: 31.25)."""
        return self.sample_rate / self.samples_per_latent

    def mel_frames(self, samples: int) -> int:
        """Mel frames of ``samples`` audio samples (padding (n_fft - hop)/2 per side, no centring)."""
        pad = 2 * ((self.n_fft - self.hop_length) // 2)
        return max(0, (samples + pad - self.n_fft) // self.hop_length + 1)

    def latents_for_samples(self, samples: int) -> int:
        """Latents the VAE encoder produces for ``samples`` samples (stride-2 pooling floors)."""
        return self.mel_frames(samples) // self.latent_downsample

    def samples_for_latents(self, latents: int) -> int:
        """Samples the decoder + vocoder produce from ``latents`` latents."""
        return latents * self.samples_per_latent


@dataclass(frozen=True)
class VideoLatentConvention:
    """A causal video VAE's geometry (Wan2.2 style)."""

    latent_channels: int
    time_stride: int
    space_stride: int

    def latent_frames(self, pixel_frames: int) -> int:
        """Latent frames for ``pixel_frames`` (first frame alone, then groups of ``time_stride``)."""
        if pixel_frames < 1:
            raise ValueError(f"pixel_frames={pixel_frames} is invalid: expected >= 1.")
        return 1 + (pixel_frames - 1) // self.time_stride

    def pixel_frames(self, latent_frames: int) -> int:
        """Pixel frames the decoder produces from ``latent_frames`` latents."""
        if latent_frames < 1:
            raise ValueError(f"latent_frames={latent_frames} is invalid: expected >= 1.")
        return 1 + (latent_frames - 1) * self.time_stride

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        """Latent ``(H, W)`` of a ``height x width`` frame (sides must be multiples of the stride)."""
        s = self.space_stride
        if height % s or width % s:
            raise ValueError(f"frame size {height}x{width} is not a multiple of {s}; resize or crop it.")
        return height // s, width // s


@dataclass(frozen=True)
class OviClip:
    """One released Ovi checkpoint's fixed clip geometry (from Ovi's ``NAME_TO_MODEL_SPECS_MAP``)."""

    video_latents: int
    audio_latents: int
    area: int  # target pixel area (height * width)


MMAUDIO_16K = MelAudioConvention(
    sample_rate=16000,
    n_fft=1024,
    win_length=1024,
    hop_length=256,
    n_mels=80,
    f_min=0.0,
    f_max=8000.0,
    log="log10",
    latent_channels=20,
    latent_downsample=2,
)
WAN22_VAE = VideoLatentConvention(latent_channels=48, time_stride=4, space_stride=16)
OVI_FPS = 24
OVI_AUDIO_ROPE_SCALE = 0.19676
OVI_CLIPS: dict[str, OviClip] = {
    "720x720_5s": OviClip(video_latents=31, audio_latents=157, area=720 * 720),
    "960x960_5s": OviClip(video_latents=31, audio_latents=157, area=960 * 960),
    "960x960_10s": OviClip(video_latents=61, audio_latents=314, area=960 * 960),
}
