"""Guiders for core SamplerCustomAdvanced: SyncCFG and plain per-stream CFG."""

from __future__ import annotations

from comfy_api.latest import io

from ..harmony_core.sampling.guidance import GuidanceConfig
from ._comfy.guider import HarmonyGuider
from ._comfy.vae import audio_codec, make_anchors, video_codec
from ._common import ADVANCED, node_errors, schema
from .types import audio_vae_input, video_vae_input

__all__ = ["HarmonySyncCFGGuider", "HarmonyCFGGuider", "build_sync_guider"]


def _scale(name: str, default: float, tooltip: str, advanced: bool = False) -> io.Float.Input:
    return io.Float.Input(name, default=default, min=0.0, max=30.0, step=0.1, round=0.01, tooltip=tooltip,
                          **(ADVANCED if advanced else {}))


def build_sync_guider(model, positive, negative, video_vae, audio_vae, *, video_scale: float, audio_scale: float,
                      video_text_scale: float = 1.0, audio_text_scale: float = 1.0, anchor_text: str = "positive",
                      start_percent: float = 0.0, end_percent: float = 1.0, node: str) -> HarmonyGuider:
    """A ``HarmonyGuider`` running SyncCFG (and text CFG when a text scale is not 1)."""
    if not 0.0 <= start_percent <= end_percent <= 1.0:
        raise ValueError(f"start_percent={start_percent} and end_percent={end_percent}: expected 0 <= start <= end "
                         "<= 1 (0 = first step, 1 = last).")
    guidance = GuidanceConfig.sync(video=video_scale, audio=audio_scale, video_text_scale=video_text_scale,
                                   audio_text_scale=audio_text_scale, anchor_text=anchor_text)
    if guidance.uses_negative and negative is None:
        raise ValueError("a text scale is not 1 (or anchor_text is 'negative') but no negative conditioning is "
                         "connected; connect one (Harmony Text Encode with empty texts) or set the text scales to 1.")
    anchors = None
    if guidance.video_sync_scale != 1.0 or guidance.audio_sync_scale != 1.0:
        anchors = make_anchors(video_codec(video_vae, node), audio_codec(audio_vae, node))
    guider = HarmonyGuider(model, guidance=guidance, anchors=anchors, percent=(start_percent, end_percent), node=node)
    guider.set_conds(positive, negative)
    return guider


class HarmonySyncCFGGuider(io.ComfyNode):
    """The "Harmony SyncCFG Guider" node (what it does: the schema's description)."""

    NAME = "Harmony SyncCFG Guider"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="HarmonySyncCFGGuider",
            display_name=cls.NAME,
            category="Harmony/sampling",
            description=(
                "SyncCFG (Harmony paper, Eq. 9-10) for Sampler Custom Advanced: video is guided against a pass with "
                "clean silent audio, audio against a pass with a clean still video, so guidance amplifies what ties "
                "sound and picture together. Optional text CFG against a negative prompt and a guidance interval. "
                "The passes of a step run as one batched forward when they fit the free memory, else one at a time."
            ),
            search_aliases=["sync cfg", "synccfg", "audio video guidance", "harmony guider"],
            inputs=[
                io.Model.Input("model", tooltip="The Harmony MODEL."),
                io.Conditioning.Input("positive", tooltip="What to see, hear and say (Harmony Text Encode)."),
                video_vae_input("The video VAE, used to build the still-video anchor."),
                audio_vae_input("The audio VAE, used to build the silent-audio anchor."),
                _scale("video_scale", 3.0, "SyncCFG scale of the video stream against silent audio (paper: 3). "
                                           "1 = off."),
                _scale("audio_scale", 2.0, "SyncCFG scale of the audio stream against a still video (paper: 2). "
                                           "1 = off."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="Negative prompt for the optional text CFG (and for anchor_text = "
                                              "negative)."),
                _scale("video_text_scale", 1.0, "Extra text CFG on video against the negative. 1 = off (paper).", True),
                _scale("audio_text_scale", 1.0, "Extra text CFG on audio against the negative. 1 = off (paper).", True),
                io.Combo.Input("anchor_text", options=["positive", "negative"], default="positive", **ADVANCED,
                               tooltip="Text of the anchor passes: the positive prompt (paper) or the negative."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01, round=0.001, **ADVANCED,
                               tooltip="Guidance runs from this point of the schedule (0 = first step)."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01, round=0.001, **ADVANCED,
                               tooltip="... up to this point (1 = last step); outside, only the joint pass runs."),
            ],
            outputs=[io.Guider.Output(display_name="GUIDER", tooltip="For Sampler Custom Advanced.")],
        )

    @classmethod
    def execute(cls, model, positive, video_vae, audio_vae, video_scale: float = 3.0, audio_scale: float = 2.0,
                negative=None, video_text_scale: float = 1.0, audio_text_scale: float = 1.0,
                anchor_text: str = "positive", start_percent: float = 0.0, end_percent: float = 1.0) -> io.NodeOutput:
        with node_errors(cls.NAME):
            guider = build_sync_guider(model, positive, negative, video_vae, audio_vae, video_scale=video_scale,
                                       audio_scale=audio_scale, video_text_scale=video_text_scale,
                                       audio_text_scale=audio_text_scale, anchor_text=anchor_text,
                                       start_percent=start_percent, end_percent=end_percent, node=cls.NAME)
        return io.NodeOutput(guider)


class HarmonyCFGGuider(io.ComfyNode):
    """The "Harmony CFG Guider" node (what it does: the schema's description)."""

    NAME = "Harmony CFG Guider"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="HarmonyCFGGuider",
            display_name=cls.NAME,
            category="Harmony/sampling",
            description=(
                "Plain classifier-free guidance with one scale per stream (Ovi-style), for comparison with SyncCFG: "
                "each stream is guided against the negative prompt."
            ),
            search_aliases=["per stream cfg", "audio video cfg", "dual cfg"],
            inputs=[
                io.Model.Input("model", tooltip="The Harmony MODEL."),
                io.Conditioning.Input("positive", tooltip="What to see, hear and say (Harmony Text Encode)."),
                io.Conditioning.Input("negative", tooltip="The negative prompt (Harmony Text Encode, e.g. empty)."),
                _scale("video_cfg", 5.0, "CFG scale of the video stream. 1 = no guidance."),
                _scale("audio_cfg", 4.0, "CFG scale of the audio stream. 1 = no guidance."),
            ],
            outputs=[io.Guider.Output(display_name="GUIDER", tooltip="For Sampler Custom Advanced.")],
        )

    @classmethod
    def execute(cls, model, positive, negative, video_cfg: float = 5.0, audio_cfg: float = 4.0) -> io.NodeOutput:
        with node_errors(cls.NAME):
            guidance = GuidanceConfig.text_cfg(video=video_cfg, audio=audio_cfg)
            guider = HarmonyGuider(model, guidance=guidance, anchors=None, node=cls.NAME)
            guider.set_conds(positive, negative)
        return io.NodeOutput(guider)
