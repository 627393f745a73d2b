"""A small random (untrained) bundle for tests of the engine, CLIs and nodes."""

from __future__ import annotations

import dataclasses

import torch

from harmony_core.config import get_preset
from harmony_core.io.bundle import HarmonyBundle
from harmony_core.model.dit import HarmonyDiT
from harmony_core.text.transcript import TranscriptEncoder
from harmony_core.vae.audio import AudioVAE
from harmony_core.vae.video import VideoVAE


def make_random_bundle(seed: int = 0) -> HarmonyBundle:
    """The ``synthetic`` architecture, shrunk, with random weights (heads perturbed off zero)."""
    torch.manual_seed(seed)  # tests only: the VAEs' and the encoder's default init use the global RNG
    video_vae, audio_vae = VideoVAE(), AudioVAE()
    transcript = TranscriptEncoder(
        vocab_size=50, dim=32, num_blocks=1, kernel_size=7, expansion=2, pos_embed=True, eps=1e-6
    )
    cfg = get_preset("synthetic")
    cfg = dataclasses.replace(
        cfg,
        video=dataclasses.replace(
            cfg.video, in_channels=video_vae.latent_channels, dim=32, ffn_dim=64, num_heads=2, num_layers=1
        ),
        audio=dataclasses.replace(
            cfg.audio,
            in_channels=audio_vae.latent_channels,
            dim=32,
            ffn_dim=64,
            num_heads=2,
            num_layers=1,
            patch_hidden=48,
        ),
        speech_dim=32,
    )
    g = torch.Generator().manual_seed(seed)
    dit = HarmonyDiT(cfg, generator=g)
    with torch.no_grad():
        for p in dit.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return HarmonyBundle(
        dit=dit.eval(),
        video_vae=video_vae.eval(),
        audio_vae=audio_vae.eval(),
        transcript=transcript.eval(),
        info={"resolution": [64, 64], "note": "random, for tests"},
    )
