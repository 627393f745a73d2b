"""Harmony Model Loader."""

from __future__ import annotations

from comfy_api.latest import io

from ._comfy.loader import (
    ARCHITECTURES,
    NO_FILE,
    SHIPPED_MODEL,
    WEIGHT_DTYPES,
    ensure_model_folder,
    list_models,
    load_harmony,
)
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
        models = list_models()
        return schema(
            node_id="HarmonyModelLoader",
            display_name=cls.NAME,
            category="Harmony/loaders",
            description=(
                "Loads a Harmony audio+video model as a native MODEL (ComfyUI manages its memory, offloading and "
                "interrupts): a Harmony bundle (with its own text encoders and VAEs), a full-size Harmony DiT, or an "
                "Ovi checkpoint (fused model.safetensors, or a split one as two files). The architecture is read "
                "from the file's keys and shapes, not its name. Full-size models take their text encoder from Load "
                f"CLIP (umT5, type wan) and their VAEs from Load VAE. The shipped tiny model ({SHIPPED_MODEL}) is "
                "always listed; other files come from models/harmony and models/diffusion_models."
            ),
            search_aliases=["harmony", "audio video model", "load harmony", "sound and video", "ovi", "load ovi"],
            inputs=[
                io.Combo.Input("model_name", options=models, default=SHIPPED_MODEL,
                               tooltip="The checkpoint: a Harmony bundle or DiT, or an Ovi checkpoint (e.g. Ovi's "
                                       "model.safetensors). Put files into models/harmony or models/diffusion_models."),
                io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="default", **ADVANCED,
                               tooltip="How the DiT weights are stored. 'default' lets ComfyUI choose for your "
                                       "device (float32 on a CPU: ~47 GB for Ovi); bf16 halves that, fp8_e4m3fn "
                                       "quarters the weight matrices (scaled fp8 files are dequantised exactly). "
                                       "They are computed in a wider type when the device needs it."),
                io.Combo.Input("extra_file", options=[NO_FILE] + [m for m in models if m != SHIPPED_MODEL],
                               default=NO_FILE, optional=True, **ADVANCED,
                               tooltip="Only for a split Ovi checkpoint: its second file (video file as model_name, "
                                       "audio_model.* file here). Leave at (none) otherwise."),
                io.Combo.Input("architecture", options=list(ARCHITECTURES), default=ARCHITECTURES[0], optional=True,
                               **ADVANCED,
                               tooltip="'from file': exactly what the file holds (an Ovi file runs as Ovi). "
                                       "'harmony': add the Harmony-only modules (GLDI, transcript path) the file "
                                       "lacks, zero-initialised, so the output is unchanged (for fine-tuned "
                                       "weights later); costs their memory."),
            ],
            outputs=[
                io.Model.Output(display_name="MODEL", tooltip="The Harmony diffusion model (both streams)."),
                HarmonyText.Output(display_name="text_encoders",
                                   tooltip="The bundle's text encoders (caption and transcript), for Harmony Text "
                                           "Encode. Empty for DiT-only and Ovi files (use Load CLIP)."),
                HarmonyVideoVae.Output(display_name="video_vae",
                                       tooltip="The bundle's video VAE. Empty for DiT-only and Ovi files (use Load "
                                               "VAE with the Wan2.2 VAE)."),
                HarmonyAudioVae.Output(display_name="audio_vae",
                                       tooltip="The bundle's audio VAE. Empty for DiT-only and Ovi files (use Load "
                                               "VAE with the MMAudio VAE)."),
            ],
        )

    @classmethod
    def execute(cls, model_name: str, weight_dtype: str = "default", extra_file: str = NO_FILE,
                architecture: str = ARCHITECTURES[0]) -> io.NodeOutput:
        with node_errors(cls.NAME):
            loaded = load_harmony(model_name, weight_dtype, node=cls.NAME, extra_file=extra_file,
                                  architecture=architecture)
        engine = loaded.engine
        # The report (layout, architecture, dtypes, size, converted / initialised modules) goes to the
        # console log and to the prompt's history as this node's "text" output.
        ui = {"text": [loaded.report]}
        if engine is None:
            return io.NodeOutput(loaded.patcher, None, None, None, ui=ui)
        return io.NodeOutput(loaded.patcher, HarmonyTextEncoders(engine, model_name),
                             HarmonyVideoVAE(engine, model_name), HarmonyAudioVAE(engine, model_name), ui=ui)


async def on_load() -> None:
    """Register the models/harmony folder when the pack loads."""
    ensure_model_folder()
