"""Harmony Sampler: one node for beginners, built on the SyncCFG guider."""

from __future__ import annotations

from comfy_api.latest import io

from ._comfy.sampling import SAMPLER_NAMES, SCHEDULER_NAMES, run_guider
from ._common import ADVANCED, node_errors, schema
from .guidance import build_sync_guider
from .types import audio_vae_input, video_vae_input

__all__ = ["HarmonySampler"]


class HarmonySampler(io.ComfyNode):
    """The "Harmony Sampler" node (what it does: the schema's description)."""

    NAME = "Harmony Sampler"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="HarmonySampler",
            display_name=cls.NAME,
            category="Harmony/sampling",
            description=(
                "Generates sound and picture in one node: SyncCFG guidance (the same guider as Harmony SyncCFG "
                "Guider) with a ComfyUI sampler and scheduler. Works for text-to-AV and, after Harmony Audio To "
                "Video / Video To Audio, for the conditioned modes."
            ),
            search_aliases=["harmony ksampler", "generate video with sound", "av sampler"],
            inputs=[
                io.Model.Input("model", tooltip="The Harmony MODEL."),
                io.Conditioning.Input("positive", tooltip="What to see, hear and say (Harmony Text Encode)."),
                io.Latent.Input("latent", tooltip="The AV latent (Harmony Empty AV Latent, or a mode node's output)."),
                video_vae_input("The video VAE (for the still-video anchor)."),
                audio_vae_input("The audio VAE (for the silent-audio anchor)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, step=1, control_after_generate=True,
                             tooltip="The noise seed."),
                io.Int.Input("steps", default=20, min=1, max=200, step=1, tooltip="Denoising steps (paper: 40)."),
                io.Combo.Input("sampler_name", options=SAMPLER_NAMES, default="euler",
                               tooltip="The ComfyUI sampler."),
                io.Combo.Input("scheduler", options=SCHEDULER_NAMES, default="simple",
                               tooltip="The ComfyUI scheduler (the model's shift of 5 applies)."),
                io.Float.Input("video_scale", default=3.0, min=0.0, max=30.0, step=0.1, round=0.01,
                               tooltip="SyncCFG scale of the video stream (paper: 3). 1 = off."),
                io.Float.Input("audio_scale", default=2.0, min=0.0, max=30.0, step=0.1, round=0.01,
                               tooltip="SyncCFG scale of the audio stream (paper: 2). 1 = off."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01, round=0.001, **ADVANCED,
                               tooltip="How much of the schedule to run; below 1 the latent's content is kept "
                                       "partly (e.g. re-voice a clip loosely)."),
            ],
            outputs=[io.Latent.Output(display_name="LATENT", tooltip="The generated AV latent.")],
        )

    @classmethod
    def execute(cls, model, positive, latent, video_vae, audio_vae, seed: int = 0, steps: int = 20,
                sampler_name: str = "euler", scheduler: str = "simple", video_scale: float = 3.0,
                audio_scale: float = 2.0, denoise: float = 1.0) -> io.NodeOutput:
        with node_errors(cls.NAME):
            if denoise <= 0:
                return io.NodeOutput(latent)
            guider = build_sync_guider(model, positive, None, video_vae, audio_vae, video_scale=video_scale,
                                       audio_scale=audio_scale, node=cls.NAME)
            out = run_guider(guider, latent, seed=seed, steps=steps, sampler_name=sampler_name,
                             scheduler=scheduler, denoise=denoise)
        return io.NodeOutput(out)
