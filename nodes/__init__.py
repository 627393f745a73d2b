"""ComfyUI nodes of the Harmony pack (V3 schema). Imported only by the pack's root ``__init__.py``;
never imported by ``harmony_core``.

Node modules are thin: they convert ComfyUI types and call ``harmony_core`` (maths) or the adapters
in ``nodes/_comfy`` (the only code that touches ComfyUI internals).
"""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import loaders
from .conditioning import HarmonyTextEncode
from .guidance import HarmonyCFGGuider, HarmonySyncCFGGuider
from .latents import (
    HarmonyAVLatentCombine,
    HarmonyAVLatentSplit,
    HarmonyEmptyAVLatent,
    HarmonyVAEDecodeAudio,
    HarmonyVAEDecodeVideo,
    HarmonyVAEEncodeAudio,
    HarmonyVAEEncodeVideo,
)
from .loaders import HarmonyModelLoader
from .metrics import HarmonySyncScore
from .modes import HarmonyAudioToVideo, HarmonyVideoToAudio
from .sampling import HarmonySampler

__all__ = ["NODES", "HarmonyExtension"]

NODES: list[type[io.ComfyNode]] = [
    HarmonyModelLoader,
    HarmonyTextEncode,
    HarmonyEmptyAVLatent,
    HarmonyVAEEncodeVideo,
    HarmonyVAEDecodeVideo,
    HarmonyVAEEncodeAudio,
    HarmonyVAEDecodeAudio,
    HarmonyAVLatentCombine,
    HarmonyAVLatentSplit,
    HarmonyAudioToVideo,
    HarmonyVideoToAudio,
    HarmonySyncCFGGuider,
    HarmonyCFGGuider,
    HarmonySampler,
    HarmonySyncScore,
]


class HarmonyExtension(ComfyExtension):
    """The pack's V3 extension: registers the model folder on load and lists the nodes."""

    async def on_load(self) -> None:
        from ._comfy.compat import missing_features

        await loaders.on_load()
        missing = missing_features()
        if missing:  # the nodes still register (so workflows open); sampling explains the problem
            import logging

            logging.getLogger(__name__).warning("Harmony needs ComfyUI >= 0.8.0; missing: %s", ", ".join(missing))

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)
