"""A small random Harmony bundle for node and integration tests (seconds on a CPU).

Until the trained ``harmony_core/assets/harmony-tiny.safetensors`` ships, tests write one of these
into a temporary folder and point the loader at it. Its widths follow the real encoders (caption
width 384 of all-MiniLM-L6-v2), its VAEs are the project's own (smaller) and every weight is
random but seeded, with the zero-initialised outputs perturbed so every path contributes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from harmony_core.config import get_preset
from harmony_core.io.bundle import HarmonyBundle, save_bundle
from harmony_core.model.dit import HarmonyDiT
from harmony_core.text.transcript import TranscriptEncoder
from harmony_core.vae.audio import AudioVAE, AudioVAEConfig
from harmony_core.vae.video import VideoVAE, VideoVAEConfig

CAPTION_DIM = 384  # all-MiniLM-L6-v2
SPEECH_DIM = 16
V_LATENT, A_LATENT = 4, 6


def make_tiny_bundle(path: str | Path, seed: int = 0) -> Path:
    """Write a random bundle to ``path`` (video VAE stride 4, so frames are multiples of 8 pixels)."""
    g = torch.Generator().manual_seed(seed)
    base = get_preset("tiny")
    cfg = dataclasses.replace(
        base,
        video=dataclasses.replace(base.video, in_channels=V_LATENT, text_dim=CAPTION_DIM),
        audio=dataclasses.replace(base.audio, in_channels=A_LATENT, text_dim=CAPTION_DIM),
        speech_dim=SPEECH_DIM,
        name="test-tiny",
    )
    dit = HarmonyDiT(cfg, generator=g)
    with torch.random.fork_rng():  # the VAEs' default init draws from the global RNG: pin it (tests only)
        torch.manual_seed(seed)
        video_vae = VideoVAE(VideoVAEConfig(latent_channels=V_LATENT, channels=(8, 16), num_res_blocks=1))
        audio_vae = AudioVAE(AudioVAEConfig(latent_channels=A_LATENT, hidden=16, num_res_blocks=1))
        transcript = TranscriptEncoder(dim=SPEECH_DIM, num_blocks=1)
    with torch.no_grad():
        for module in (dit, video_vae, audio_vae, transcript):
            for p in module.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    bundle = HarmonyBundle(dit=dit.eval(), video_vae=video_vae.eval(), audio_vae=audio_vae.eval(),
                           transcript=transcript.eval(), info={"resolution": [32, 32], "purpose": "tests"})
    path = Path(path)
    save_bundle(path, bundle)
    return path
