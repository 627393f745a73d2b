"""Custom socket types of the Harmony pack (core types are used everywhere else)."""

from __future__ import annotations

from comfy_api.latest import io

__all__ = ["HarmonyText", "HarmonyVideoVae", "HarmonyAudioVae", "video_vae_input", "audio_vae_input"]

HarmonyText = io.Custom("HARMONY_TEXT")  # a bundle's caption + transcript encoders
HarmonyVideoVae = io.Custom("HARMONY_VIDEO_VAE")  # a bundle's video VAE
HarmonyAudioVae = io.Custom("HARMONY_AUDIO_VAE")  # a bundle's audio VAE


def video_vae_input(tooltip: str = "The video VAE: the video_vae output of Harmony Model Loader, or a Wan2.2 VAE "
                    "from Load VAE for full-size models.") -> io.MultiType.Input:
    """A socket accepting a Harmony video VAE or a core VAE."""
    return io.MultiType.Input("video_vae", types=[HarmonyVideoVae, io.Vae], tooltip=tooltip)


def audio_vae_input(tooltip: str = "The audio VAE: the audio_vae output of Harmony Model Loader, or an MMAudio VAE "
                    "from Load VAE for full-size models.") -> io.MultiType.Input:
    """A socket accepting a Harmony audio VAE or a core VAE."""
    return io.MultiType.Input("audio_vae", types=[HarmonyAudioVae, io.Vae], tooltip=tooltip)
