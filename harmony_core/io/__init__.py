"""Checkpoint I/O: Harmony's own files and bundles, Ovi / Wan2.2 conversion, architecture detection,
and the latent conventions of the pretrained autoencoders."""

from __future__ import annotations

from .bundle import HarmonyBundle, is_bundle, load_bundle, save_bundle
from .checkpoints import KeyReport, load_dit, load_state_strict, load_tensors, read_metadata, save_dit
from .conventions import MMAUDIO_16K, OVI_CLIPS, WAN22_VAE
from .convert import (
    ConversionReport,
    harmony_to_ovi_state,
    harmony_to_wan_state,
    load_ovi_checkpoint,
    ovi_to_harmony_state,
    read_checkpoint_shapes,
    wan_to_harmony_state,
)
from .detect import DetectedArchitecture, detect_architecture, detect_layout

__all__ = [
    "HarmonyBundle",
    "is_bundle",
    "load_bundle",
    "save_bundle",
    "KeyReport",
    "load_dit",
    "load_state_strict",
    "load_tensors",
    "read_metadata",
    "save_dit",
    "MMAUDIO_16K",
    "OVI_CLIPS",
    "WAN22_VAE",
    "ConversionReport",
    "harmony_to_ovi_state",
    "harmony_to_wan_state",
    "load_ovi_checkpoint",
    "ovi_to_harmony_state",
    "read_checkpoint_shapes",
    "wan_to_harmony_state",
    "DetectedArchitecture",
    "detect_architecture",
    "detect_layout",
]
