"""SyncCFG anchors: the clean *silent audio* and clean *static video* latents (paper §3.4).

The anchors are real VAE encodings: digital silence of the clip's length through the audio VAE,
and one still frame repeated for every pixel frame through the video VAE. They are never zero
latents: an MMAudio-style VAE maps silence to a distinctly non-zero latent, and feeding zeros
would anchor against "some sound" rather than "no sound".

Silence depends only on the shape, so it is cached per shape. The static video depends on which
frame is held still: the reference image when there is one (image-to-AV), the given video's first
frame (V2A), otherwise the current estimate of the first frame (pure T2AV), which the guidance
orchestrator refreshes as denoising proceeds.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from typing import Protocol
from collections.abc import Callable

import torch

__all__ = ["AnchorSource", "VAEAnchors"]

log = logging.getLogger(__name__)


class AnchorSource(Protocol):
    """What the guidance orchestrator needs to build SyncCFG anchors."""

    def silent_audio(self, a_shape: tuple[int, ...], *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Latent ``[B, C_a, T_a]`` of silence."""
        ...

    def static_video(self, frame_latent: torch.Tensor, v_shape: tuple[int, ...]) -> torch.Tensor:
        """Latent ``[B, C_v, T_v, H, W]`` of a still clip whose every frame is the frame encoded in
        ``frame_latent`` ``[B, C_v, 1, H, W]`` (a first latent frame of a causal video VAE)."""
        ...


class VAEAnchors:
    """Anchors built with real VAEs.

    Args:
        encode_audio: waveform ``[B, S]`` -> latent ``[B, C_a, T_a]``.
        audio_samples_for: number of samples ``S`` whose latent has ``T_a`` frames.
        encode_video: pixels ``[B, 3, T, H, W]`` in [-1, 1] -> latent ``[B, C_v, T_v, h, w]``.
        decode_video: latent -> pixels (only frame 0 is decoded here).
        pixel_frames_for: pixel-frame count whose latent has ``T_v`` frames.
        max_cache: static-video latents kept (silence is keyed by shape, stills by content).
    """

    def __init__(
        self,
        *,
        encode_audio: Callable[[torch.Tensor], torch.Tensor],
        audio_samples_for: Callable[[int], int],
        encode_video: Callable[[torch.Tensor], torch.Tensor],
        decode_video: Callable[[torch.Tensor], torch.Tensor],
        pixel_frames_for: Callable[[int], int],
        max_cache: int = 8,
    ) -> None:
        self._encode_audio = encode_audio
        self._audio_samples_for = audio_samples_for
        self._encode_video = encode_video
        self._decode_video = decode_video
        self._pixel_frames_for = pixel_frames_for
        self._silence: dict[tuple, torch.Tensor] = {}
        self._stills: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._max_cache = max_cache
        self.encode_calls = 0  # for tests and benchmarks: how often a VAE actually ran

    @torch.no_grad()
    def silent_audio(self, a_shape: tuple[int, ...], *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        b, c, t_a = a_shape
        key = (c, t_a, str(device), dtype)
        if key not in self._silence:
            samples = self._audio_samples_for(t_a)
            lat = self._encode_audio(torch.zeros(1, samples))
            self.encode_calls += 1
            if lat.shape[1:] != (c, t_a):
                raise ValueError(
                    f"the audio VAE encoded {samples} samples of silence to {tuple(lat.shape[1:])}, "
                    f"but the sampled audio latent is {(c, t_a)}; the model and the audio VAE disagree."
                )
            self._silence[key] = lat.to(device=device, dtype=dtype)
            log.debug("encoded silence for %d audio latents", t_a)
        return self._silence[key].expand(b, c, t_a)

    @torch.no_grad()
    def static_video(self, frame_latent: torch.Tensor, v_shape: tuple[int, ...]) -> torch.Tensor:
        b, c, t_v, h, w = v_shape
        digest = hashlib.sha1(frame_latent.detach().float().cpu().numpy().tobytes()).hexdigest()
        key = f"{digest}:{t_v}"
        if key not in self._stills:
            pixels = self._decode_video(frame_latent)[:, :, :1]  # [B, 3, 1, H_px, W_px]
            frames = self._pixel_frames_for(t_v)
            lat = self._encode_video(pixels.expand(-1, -1, frames, -1, -1).contiguous())
            self.encode_calls += 1
            if lat.shape[1:] != (c, t_v, h, w):
                raise ValueError(
                    f"the video VAE encoded a still clip to {tuple(lat.shape[1:])}, expected "
                    f"{(c, t_v, h, w)}; the model and the video VAE disagree."
                )
            self._stills[key] = lat.to(device=frame_latent.device, dtype=frame_latent.dtype)
            while len(self._stills) > self._max_cache:
                self._stills.popitem(last=False)
        return self._stills[key]
