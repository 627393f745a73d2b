"""Harmony Text Encode."""

from __future__ import annotations

from comfy_api.latest import io

from ._comfy.text import encode_conditioning
from ._common import node_errors, schema
from .types import HarmonyText

__all__ = ["HarmonyTextEncode"]


class HarmonyTextEncode(io.ComfyNode):
    """The "Harmony Text Encode" node (what it does: the schema's description)."""

    NAME = "Harmony Text Encode"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="HarmonyTextEncode",
            display_name=cls.NAME,
            category="Harmony/conditioning",
            description=(
                "Encodes what to see (video prompt), what to hear (audio caption) and the words spoken (transcript) "
                "into one CONDITIONING for Harmony. Use a second one with empty texts as the negative for text CFG."
            ),
            search_aliases=["harmony prompt", "audio caption", "speech transcript", "text to video with sound"],
            inputs=[
                io.String.Input("video_prompt", multiline=True, default="",
                                tooltip="What the video shows, e.g. 'a red ball bounces on a wooden floor'."),
                io.String.Input("audio_caption", multiline=True, default="",
                                tooltip="What the soundtrack sounds like, e.g. 'sharp knocks of a ball hitting wood'. "
                                        "Empty = use the video prompt."),
                io.String.Input("transcript", multiline=True, default="",
                                tooltip="The exact words someone says in the clip. Empty = nobody speaks."),
                HarmonyText.Input("text_encoders", optional=True,
                                  tooltip="The text_encoders output of Harmony Model Loader (the shipped model's own "
                                          "encoders)."),
                io.Clip.Input("clip", optional=True,
                              tooltip="A core text encoder for full-size models (umT5 from Load CLIP with type 'wan'); "
                                      "used for the prompt and caption when connected."),
            ],
            outputs=[io.Conditioning.Output(display_name="CONDITIONING",
                                            tooltip="Conditioning for the Harmony guiders and sampler.")],
        )

    @classmethod
    def execute(cls, video_prompt: str, audio_caption: str = "", transcript: str = "", text_encoders=None,
                clip=None) -> io.NodeOutput:
        with node_errors(cls.NAME):
            cond = encode_conditioning(video_prompt, audio_caption, transcript, text_encoders=text_encoders,
                                       clip=clip, node=cls.NAME)
        return io.NodeOutput(cond)
