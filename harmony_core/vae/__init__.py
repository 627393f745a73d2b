"""The project's small VAEs (the embedded default's stand-ins for the Wan2.2 video VAE and the
MMAudio-16k audio VAE): causal video VAE, log-mel audio VAE with Griffin-Lim, and their training."""

from .audio import AudioVAE, AudioVAEConfig
from .common import LatentVAE, load_vae, save_vae
from .mel import LogMel, MelConfig
from .video import VideoVAE, VideoVAEConfig

__all__ = [
    "AudioVAE",
    "AudioVAEConfig",
    "VideoVAE",
    "VideoVAEConfig",
    "LatentVAE",
    "LogMel",
    "MelConfig",
    "load_vae",
    "save_vae",
]
