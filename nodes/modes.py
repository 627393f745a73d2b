"""Generation modes: audio-driven video (A2V) and video-driven audio (V2A)."""

from __future__ import annotations

from comfy_api.latest import io

from ._comfy.latents import audio_samples, set_mode, video_samples
from ._common import node_errors, schema

__all__ = ["HarmonyAudioToVideo", "HarmonyVideoToAudio"]

_NOTE = (" The noise mask is always replaced, so the output of an earlier sampling (which still carries its "
         "mask) can be fed straight in: this is how a generated clip is re-voiced or re-animated.")


class HarmonyAudioToVideo(io.ComfyNode):
    """The "Harmony Audio To Video" node (what it does: the schema's description)."""

    NAME = "Harmony Audio To Video"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="HarmonyAudioToVideo",
            display_name=cls.NAME,
            category="Harmony/modes",
            description=("Audio-driven video (A2V): the audio stream is held clean at audio timestep 0 while the "
                         "video is drawn to match it. Without audio_latent the AV latent's own audio is kept "
                         "(re-animate a generated clip)." + _NOTE),
            search_aliases=["a2v", "audio to video", "animate to sound", "lip sync"],
            inputs=[
                io.Latent.Input("av_latent", tooltip="The AV latent to sample (sets size and length)."),
                io.Latent.Input("audio_latent", optional=True,
                                tooltip="The clean sound to keep, from Harmony VAE Encode Audio (with match_latent "
                                        "connected to the same AV latent). Empty = keep the AV latent's audio."),
            ],
            outputs=[io.Latent.Output(display_name="LATENT",
                                      tooltip="The AV latent with the audio fixed and the video to be generated.")],
        )

    @classmethod
    def execute(cls, av_latent, audio_latent=None) -> io.NodeOutput:
        with node_errors(cls.NAME):
            clean = None if audio_latent is None else audio_samples(audio_latent, cls.NAME)
            out = set_mode(av_latent, "a2v", cls.NAME, a_clean=clean)
        return io.NodeOutput(out)


class HarmonyVideoToAudio(io.ComfyNode):
    """The "Harmony Video To Audio" node (what it does: the schema's description)."""

    NAME = "Harmony Video To Audio"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="HarmonyVideoToAudio",
            display_name=cls.NAME,
            category="Harmony/modes",
            description=("Video-driven audio (V2A): the video stream is held clean at video timestep 0 while the "
                         "sound is drawn to match it. Without video_latent the AV latent's own video is kept "
                         "(re-voice a generated clip)." + _NOTE),
            search_aliases=["v2a", "video to audio", "foley", "add sound to video"],
            inputs=[
                io.Latent.Input("av_latent", tooltip="The AV latent to sample (sets size and length)."),
                io.Latent.Input("video_latent", optional=True,
                                tooltip="The clean video to keep, from Harmony VAE Encode Video (with match_latent "
                                        "connected to the same AV latent). Empty = keep the AV latent's video."),
            ],
            outputs=[io.Latent.Output(display_name="LATENT",
                                      tooltip="The AV latent with the video fixed and the sound to be generated.")],
        )

    @classmethod
    def execute(cls, av_latent, video_latent=None) -> io.NodeOutput:
        with node_errors(cls.NAME):
            clean = None if video_latent is None else video_samples(video_latent, cls.NAME)
            out = set_mode(av_latent, "v2a", cls.NAME, v_clean=clean)
        return io.NodeOutput(out)
