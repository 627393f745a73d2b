"""One interface over the two kinds of VAE a Harmony graph can use.

* The VAEs inside a Harmony bundle (the shipped tiny model) travel as the custom types
  ``HARMONY_VIDEO_VAE`` / ``HARMONY_AUDIO_VAE`` (``HarmonyVideoVAE`` / ``HarmonyAudioVAE`` objects
  holding the bundle's ``HarmonyEngine``).
* ComfyUI's core ``VAE`` (``comfy.sd.VAE`` from ``VAELoader``) where one fits a full-size model:
  the Wan2.2 video VAE and the MMAudio audio VAE. Their raw latents are normalised with ComfyUI's
  own latent formats (Wan2.2's per-channel statistics) because Harmony's packed latent format is
  the identity. This path is written against ComfyUI's VAE API but could not be run here (no
  full-size weights): treat it as experimental.

``video_codec`` / ``audio_codec`` return an object with the same methods for both kinds; nodes and
the guider use only those. Layout conversions (IMAGE ``[B, T, H, W, 3]`` in 0..1 <-> the pixel
convention ``[B, 3, T, H, W]`` in [-1, 1]) are the only arithmetic here.
"""

from __future__ import annotations

from typing import Any

import torch

from ...harmony_core.engine import HarmonyEngine
from ...harmony_core.io.fit import clip_samples
from ...harmony_core.sampling.anchors import VAEAnchors

__all__ = ["HarmonyVideoVAE", "HarmonyAudioVAE", "VideoCodec", "AudioCodec", "video_codec", "audio_codec",
           "make_anchors"]


class HarmonyVideoVAE:
    """``HARMONY_VIDEO_VAE``: the video VAE of a Harmony bundle."""

    def __init__(self, engine: HarmonyEngine, name: str) -> None:
        self.engine, self.name = engine, name

    def __repr__(self) -> str:
        return f"HarmonyVideoVAE({self.name})"


class HarmonyAudioVAE:
    """``HARMONY_AUDIO_VAE``: the audio VAE of a Harmony bundle."""

    def __init__(self, engine: HarmonyEngine, name: str) -> None:
        self.engine, self.name = engine, name

    def __repr__(self) -> str:
        return f"HarmonyAudioVAE({self.name})"


def _image_to_pixels(frames: torch.Tensor) -> torch.Tensor:
    """``[B, T, H, W, 3]`` in 0..1 -> ``[B, 3, T, H, W]`` in [-1, 1]."""
    return frames.permute(0, 4, 1, 2, 3) * 2 - 1


def _pixels_to_image(pixels: torch.Tensor) -> torch.Tensor:
    """``[B, 3, T, H, W]`` in [-1, 1] -> ``[B, T, H, W, 3]`` in 0..1."""
    return ((pixels.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 4, 1)


class VideoCodec:
    """Video encode / decode / geometry for either kind of video VAE.

    Attributes:
        latent_channels: C_v; spatial_stride: pixels per latent cell; time_stride: pixel frames
        per latent frame after the first; size_multiple: what width / height must divide by
        (stride x the DiT's 2x2 patch); fps: the model's frame rate when known.
    """

    def __init__(self, vae: Any, node: str) -> None:
        self.vae, self.node = vae, node
        if isinstance(vae, HarmonyVideoVAE):
            v = vae.engine.bundle.video_vae
            self.kind, self.latent_channels = "harmony", v.latent_channels
            self.spatial_stride, self.time_stride = v.spatial_stride, v.time_stride
            patch = vae.engine.config.video.patch_size
            self.size_multiple = self.spatial_stride * max(patch[1], patch[2])
            self.fps: float | None = vae.engine.fps
        elif getattr(vae, "latent_dim", None) == 3 and hasattr(vae, "encode"):
            self.kind, self.latent_channels = "core", int(vae.latent_channels)
            self.spatial_stride = int(vae.spacial_compression_encode())
            # ComfyUI's VAE reports its temporal ratio for decoding only (Wan2.2: 4); encoding mirrors it
            self.time_stride = int(getattr(vae, "temporal_compression_decode", lambda: None)() or 4)
            self.size_multiple, self.fps = self.spatial_stride * 2, None
            self._format = None
            if self.latent_channels == 48:  # Wan2.2 VAE: ComfyUI's statistics for its latents
                import comfy.latent_formats

                self._format = comfy.latent_formats.Wan22()
        else:
            raise TypeError(f"{node}: the video_vae input is not a video VAE ({type(vae).__name__}). Connect the "
                            "video_vae output of 'Harmony Model Loader', or a Wan2.2 VAE from 'Load VAE'.")

    def check_size(self, height: int, width: int) -> None:
        """Raise a readable error unless width and height fit the VAE and the DiT patches."""
        m = self.size_multiple
        if height % m or width % m or height < m or width < m:
            raise ValueError(
                f"{self.node}: {width}x{height} (width x height) does not fit: both must be multiples of {m} "
                f"(VAE stride {self.spatial_stride} x DiT patch). Use e.g. {max(m, width // m * m)}x"
                f"{max(m, height // m * m)}."
            )

    def check_frames(self, frames: int) -> None:
        s = self.time_stride
        if frames < 1 or (frames - 1) % s:
            k = max(1, round((frames - 1) / s))
            raise ValueError(f"{self.node}: frames={frames} does not fit the causal video VAE: expected 1 + {s}*k "
                             f"(e.g. {1 + s * k}).")

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(C_v, T_v, h, w)`` of a clip (validated)."""
        self.check_size(height, width)
        self.check_frames(frames)
        return (self.latent_channels, 1 + (frames - 1) // self.time_stride,
                height // self.spatial_stride, width // self.spatial_stride)

    def pixel_frames(self, latent_frames: int) -> int:
        return 1 + self.time_stride * (latent_frames - 1)

    def pixel_size(self, latent: torch.Tensor) -> tuple[int, int, int]:
        """``(frames, height, width)`` in pixels of a video latent ``[B, C, T_v, h, w]``."""
        s = self.spatial_stride
        return self.pixel_frames(latent.shape[2]), latent.shape[3] * s, latent.shape[4] * s

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """``[T, H, W, 3]`` in 0..1 -> latent ``[1, C_v, T_v, h, w]`` (float32, CPU)."""
        self.check_size(frames.shape[1], frames.shape[2])
        self.check_frames(frames.shape[0])
        if self.kind == "harmony":
            return self.vae.engine.encode_video(frames[None]).float().cpu()
        z = self.vae.encode(frames[..., :3])
        z = self._format.process_in(z) if self._format is not None else z
        return z.float().cpu()

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, C_v, T_v, h, w]`` -> frames ``[B, T, H, W, 3]`` in 0..1 (float32, CPU)."""
        self._check_latent(latent)
        if self.kind == "harmony":
            return self.vae.engine.decode_video(latent).float().cpu()
        z = self._format.process_out(latent) if self._format is not None else latent
        out = self.vae.decode(z)
        out = out.reshape(latent.shape[0], -1, *out.shape[-3:])
        return out.float().nan_to_num(0.0).clamp(0, 1).cpu()

    def _check_latent(self, latent: torch.Tensor) -> None:
        if latent.dim() != 5 or latent.shape[1] != self.latent_channels:
            raise ValueError(f"{self.node}: the video latent has shape {tuple(latent.shape)} but this video VAE "
                             f"makes [B, {self.latent_channels}, T_v, h, w] latents. Use the VAE that matches the "
                             "model (the video_vae output of 'Harmony Model Loader' for Harmony bundles).")

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Anchor helper: ``[B, 3, T, H, W]`` in [-1, 1] -> latent."""
        if self.kind == "harmony":
            return self.vae.engine.bundle.video_vae.encode(pixels)
        return torch.cat([self.encode(_pixels_to_image(p[None])[0]) for p in pixels]).to(pixels.device)

    def decode_pixels(self, latent: torch.Tensor) -> torch.Tensor:
        """Anchor helper: latent -> ``[B, 3, T, H, W]`` in [-1, 1]."""
        if self.kind == "harmony":
            return self.vae.engine.bundle.video_vae.decode(latent)
        return _image_to_pixels(self.decode(latent)).to(latent.device)


class AudioCodec:
    """Audio encode / decode / geometry for either kind of audio VAE.

    Attributes:
        sample_rate: the VAE's waveform rate; latent_channels: C_a; samples_per_latent: samples
        (at ``sample_rate``) per latent frame.
    """

    def __init__(self, vae: Any, node: str) -> None:
        self.vae, self.node = vae, node
        if isinstance(vae, HarmonyAudioVAE):
            a = vae.engine.bundle.audio_vae
            self.kind, self.sample_rate, self.latent_channels = "harmony", int(a.sample_rate), a.latent_channels
            self.samples_per_latent: float = float(a.samples_per_latent)
        elif getattr(vae, "latent_dim", None) == 1 and hasattr(vae, "encode"):
            self.kind, self.latent_channels = "core", int(vae.latent_channels)
            self.sample_rate = int(getattr(vae, "audio_sample_rate", 44100))
            self.samples_per_latent = float(vae.downscale_ratio)
        else:
            raise TypeError(f"{node}: the audio_vae input is not an audio VAE ({type(vae).__name__}). Connect the "
                            "audio_vae output of 'Harmony Model Loader', or an MMAudio VAE from 'Load VAE'.")

    @property
    def output_rate(self) -> int:
        return int(getattr(self.vae, "audio_sample_rate_output", None) or self.sample_rate)

    def latent_frames(self, num_samples: int) -> int:
        """Audio latents covering ``num_samples`` samples at ``sample_rate``."""
        if self.kind == "harmony":
            return self.vae.engine.bundle.audio_vae.latent_frames(num_samples)
        return max(1, int(num_samples // self.samples_per_latent))  # whole latents only, as MMAudio

    def latents_for_clip(self, pixel_frames: int, fps: float) -> int:
        """Audio latents spanning a clip of ``pixel_frames`` frames at ``fps``."""
        return self.latent_frames(clip_samples(pixel_frames, fps, self.sample_rate))

    @torch.no_grad()
    def encode(self, waveform: torch.Tensor) -> torch.Tensor:
        """Mono waveform ``[B, 1, S]`` already at ``sample_rate`` -> latent ``[B, C_a, T_a]``."""
        if self.kind == "harmony":
            return self.vae.engine.bundle.audio_vae.encode(waveform[:, 0]).float().cpu()
        return self.vae.encode(waveform.movedim(1, -1)).float().cpu()

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, C_a, T_a]`` -> waveform ``[B, C, S]`` at ``output_rate`` (finite, in [-1, 1])."""
        if latent.dim() != 3 or latent.shape[1] != self.latent_channels:
            raise ValueError(f"{self.node}: the audio latent has shape {tuple(latent.shape)} but this audio VAE makes "
                             f"[B, {self.latent_channels}, T_a] latents. Use the VAE that matches the model.")
        if self.kind == "harmony":
            return self.vae.engine.decode_audio(latent).float().cpu()
        out = self.vae.decode(latent).movedim(-1, 1)
        return out.float().nan_to_num(0.0).clamp(-1, 1).cpu()

    def encode_samples(self, wave: torch.Tensor) -> torch.Tensor:
        """Anchor helper: ``[B, S]`` at ``sample_rate`` -> latent."""
        return self.encode(wave[:, None]).to(wave.device)


def video_codec(vae: Any, node: str) -> VideoCodec:
    """The ``VideoCodec`` of a video VAE input (raises a readable TypeError for anything else)."""
    return VideoCodec(vae, node)


def audio_codec(vae: Any, node: str) -> AudioCodec:
    """The ``AudioCodec`` of an audio VAE input (raises a readable TypeError for anything else)."""
    return AudioCodec(vae, node)


def make_anchors(video: VideoCodec, audio: AudioCodec) -> VAEAnchors:
    """SyncCFG anchor builder (clean silence, clean still video) through the given VAEs."""
    if video.kind == "harmony" and audio.kind == "harmony" and video.vae.engine is audio.vae.engine:
        return video.vae.engine.anchors()
    return VAEAnchors(
        encode_audio=audio.encode_samples,
        audio_samples_for=lambda t_a: round(t_a * audio.samples_per_latent),
        encode_video=video.encode_pixels,
        decode_video=video.decode_pixels,
        pixel_frames_for=video.pixel_frames,
    )
