"""Harmony Model Loader."""

from __future__ import annotations

from comfy_api.latest import io

from ._comfy.loader import SHIPPED_MODEL, WEIGHT_DTYPES, ensure_model_folder, list_models, load_harmony
from ._comfy.text import HarmonyTextEncoders
from ._comfy.vae import HarmonyAudioVAE, HarmonyVideoVAE
from ._common import ADVANCED, node_errors, schema
from .types import HarmonyAudioVae, HarmonyText, HarmonyVideoVae

__all__ = ["HarmonyModelLoader"]


class HarmonyModelLoader(io.ComfyNode):
    """The "Harmony Model Loader" node (what it does: the schema's description)."""

    NAME = "Harmony Model Loader"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="HarmonyModelLoader",
            display_name=cls.NAME,
            category="Harmony/loaders",
            description=(
                "Loads a Harmony audio+video model as a native MODEL (ComfyUI manages its memory, offloading and "
                "interrupts), plus the text encoders and VAEs a Harmony bundle carries. The shipped tiny model "
                f"({SHIPPED_MODEL}) is always listed; other files come from models/harmony and "
                "models/diffusion_models. The architecture is read from the file, not its name."
            ),
            search_aliases=["harmony", "audio video model", "load harmony", "sound and video"],
            inputs=[
                io.Combo.Input("model_name", options=list_models(), default=SHIPPED_MODEL,
                               tooltip="The checkpoint: a Harmony bundle (DiT + VAEs + text encoders) or a Harmony "
                                       "DiT file. Put your files into models/harmony."),
                io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="default", **ADVANCED,
                               tooltip="How the DiT weights are stored. 'default' lets ComfyUI choose for your "
                                       "device; bf16/fp16/fp8 save memory and are computed in a wider type when "
                                       "the device needs it."),
            ],
            outputs=[
                io.Model.Output(display_name="MODEL", tooltip="The Harmony diffusion model (both streams)."),
                HarmonyText.Output(display_name="text_encoders",
                                   tooltip="The bundle's text encoders (caption and transcript), for Harmony Text "
                                           "Encode. Empty for DiT-only files."),
                HarmonyVideoVae.Output(display_name="video_vae",
                                       tooltip="The bundle's video VAE. Empty for DiT-only files."),
                HarmonyAudioVae.Output(display_name="audio_vae",
                                       tooltip="The bundle's audio VAE. Empty for DiT-only files."),
            ],
        )

    @classmethod
    def execute(cls, model_name: str, weight_dtype: str = "default") -> io.NodeOutput:
        with node_errors(cls.NAME):
            loaded = load_harmony(model_name, weight_dtype, node=cls.NAME)
        engine = loaded.engine
        if engine is None:
            return io.NodeOutput(loaded.patcher, None, None, None)
        return io.NodeOutput(loaded.patcher, HarmonyTextEncoders(engine, model_name),
                             HarmonyVideoVAE(engine, model_name), HarmonyAudioVAE(engine, model_name))


async def on_load() -> None:
    """Register the models/harmony folder when the pack loads."""
    ensure_model_folder()
