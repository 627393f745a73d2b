"""Helpers shared by the test files (import as ``from tests._helpers import ...``)."""

from __future__ import annotations

import torch

from harmony_core.config import get_preset
from harmony_core.model.conditions import HarmonyConditions
from harmony_core.model.dit import HarmonyDiT


def make_tiny_model(config=None, seed: int = 0, perturb: float = 0.05) -> HarmonyDiT:
    """A tiny model whose zero-initialised heads and interaction outputs are perturbed, so every
    path contributes to the output (a freshly initialised Wan model outputs exactly zero)."""
    config = config or get_preset("tiny")
    g = torch.Generator().manual_seed(seed)
    model = HarmonyDiT(config, generator=g)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * perturb)
    return model.eval()


def make_conditions(config, batch: int = 1, seed: int = 1, ref: int = 0) -> HarmonyConditions:
    """Random text / transcript / reference-audio conditioning of the right widths."""
    g = torch.Generator().manual_seed(seed)
    return HarmonyConditions(
        v_context=torch.randn(batch, 3, config.video.text_dim, generator=g),
        a_context=torch.randn(batch, 4, config.audio.text_dim, generator=g),
        speech=torch.randn(batch, 5, config.speech_dim, generator=g) if config.speech_dim else None,
        a_ref=torch.randn(batch, config.audio.in_channels, ref, generator=g) if ref else None,
    )


def make_latents(config, batch: int = 1, frames: int = 4, size: int = 4, seed: int = 2):
    """Random video ``[B, C_v, T_v, H, W]`` and time-matched audio ``[B, C_a, T_a]`` latents."""
    g = torch.Generator().manual_seed(seed)
    t_a = config.timeline.audio_latents_for_video(frames)
    return (
        torch.randn(batch, config.video.in_channels, frames, size, size, generator=g),
        torch.randn(batch, config.audio.in_channels, t_a, generator=g),
    )
