"""Feature detection of the ComfyUI we run in, with readable "needs ComfyUI >= X" errors.

Harmony samples both streams as one nested AV latent. ComfyUI packs nested latents inside
``CFGGuider.sample`` and unpacks them for the model through ``latent_shapes`` (PR #10456, first
released in 0.3.67); nested-aware ``VAEDecode``, the LTX AV nodes and per-stream timesteps through
``process_timestep`` arrived with "Support the LTXV 2 model" (#11632, first in 0.8.0). We require
0.8.0 and check the features themselves rather than the version string, so a patched or newer
ComfyUI is judged by what it can do.
"""

from __future__ import annotations

import importlib
import inspect
import logging

__all__ = ["MIN_COMFYUI", "TESTED_COMFYUI", "comfyui_version", "missing_features", "require_av_support",
           "nested_tensor"]

log = logging.getLogger(__name__)

MIN_COMFYUI = "0.8.0"
TESTED_COMFYUI = ("0.26.0",)


def comfyui_version() -> str:
    """The running ComfyUI's version string, or ``"unknown"``."""
    try:
        return str(importlib.import_module("comfyui_version").__version__)
    except Exception:  # not a ComfyUI checkout, or an old one without the file
        return "unknown"


def missing_features() -> list[str]:
    """Names of the ComfyUI features Harmony needs that this ComfyUI lacks (empty when all exist)."""
    missing = []
    try:
        importlib.import_module("comfy.nested_tensor")
    except ImportError:
        missing.append("comfy.nested_tensor.NestedTensor (nested AV latents)")
    try:
        utils = importlib.import_module("comfy.utils")
        if not (hasattr(utils, "pack_latents") and hasattr(utils, "unpack_latents")):
            missing.append("comfy.utils.pack_latents/unpack_latents")
    except ImportError:
        missing.append("comfy.utils")
    try:
        samplers = importlib.import_module("comfy.samplers")
        if "latent_shapes" not in inspect.signature(samplers.CFGGuider.outer_sample).parameters:
            missing.append("CFGGuider.outer_sample(latent_shapes=...) (packed AV sampling)")
    except (ImportError, AttributeError, TypeError, ValueError):
        missing.append("comfy.samplers.CFGGuider")
    return missing


def require_av_support(node: str) -> None:
    """Raise a readable error naming ``node`` when this ComfyUI cannot sample AV latents.

    Args:
        node: the display name of the node that needs the feature.

    Raises:
        RuntimeError: "needs ComfyUI >= 0.8.0", with the running version and the missing pieces.
    """
    missing = missing_features()
    if missing:
        raise RuntimeError(
            f"{node}: needs ComfyUI >= {MIN_COMFYUI} (nested audio+video latents); this ComfyUI "
            f"({comfyui_version()}) lacks {', '.join(missing)}. Update ComfyUI (git pull, or the "
            f"ComfyUI-Manager 'Update ComfyUI' button) and restart."
        )


def nested_tensor(node: str) -> type:
    """ComfyUI's ``NestedTensor`` class, or the readable "needs ComfyUI >= 0.8.0" error."""
    try:
        return importlib.import_module("comfy.nested_tensor").NestedTensor
    except (ImportError, AttributeError):
        require_av_support(node)
        raise
