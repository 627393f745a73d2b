"""AV latents: empty latent, video / audio encode and decode, combine and split."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..harmony_core.config import TimelineConfig
from ..harmony_core.io.fit import fit_frames, fit_waveform
from ._comfy.latents import audio_samples, latent_fps, make_av_latent, split_av, video_samples
from ._comfy.vae import audio_codec, video_codec
from ._common import node_errors, schema
from .types import audio_vae_input, video_vae_input

__all__ = [
    "HarmonyEmptyAVLatent",
    "HarmonyVAEEncodeVideo",
    "HarmonyVAEDecodeVideo",
    "HarmonyVAEEncodeAudio",
    "HarmonyVAEDecodeAudio",
    "HarmonyAVLatentCombine",
    "HarmonyAVLatentSplit",
]

_LATENT_CATEGORY = "Harmony/latent"


class HarmonyEmptyAVLatent(io.ComfyNode):
    """The "Harmony Empty AV Latent" node (what it does: the schema's description)."""

    NAME = "Harmony Empty AV Latent"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="HarmonyEmptyAVLatent",
            display_name=cls.NAME,
            category=_LATENT_CATEGORY,
            description=(
                "An empty audio+video latent for a clip of the given size and length. The audio length is derived "
                "from the clip's duration (frames / fps), so sound and picture always cover the same time."
            ),
            search_aliases=["empty latent video audio", "av latent", "new clip"],
            inputs=[
                video_vae_input(),
                audio_vae_input(),
                io.Int.Input("width", default=64, min=16, max=4096, step=16,
                             tooltip="Frame width in pixels (a multiple of the VAE stride x 2; 16 for the tiny "
                                     "model, 32 for Wan2.2)."),
                io.Int.Input("height", default=64, min=16, max=4096, step=16,
                             tooltip="Frame height in pixels (same rule as width)."),
                io.Float.Input("seconds", default=2.0, min=0.0, max=60.0, step=0.05, round=0.01,
                               tooltip="Clip length in seconds; rounded to the nearest valid frame count "
                                       "(1 + 4k frames). Ignored when frames > 0."),
                io.Int.Input("frames", default=0, min=0, max=4097, step=1,
                             tooltip="Clip length in frames (1 + 4k, e.g. 49). 0 = use seconds."),
                io.Float.Input("fps", default=24.0, min=1.0, max=120.0, step=1.0, round=0.001,
                               tooltip="Frame rate of the clip. Harmony aligns sound and picture on the timeline "
                                       "it was trained with, so this must be the model's rate (24 for the shipped "
                                       "model)."),
                io.Int.Input("batch_size", default=1, min=1, max=16, step=1,
                             tooltip="How many clips to generate at once."),
            ],
            outputs=[io.Latent.Output(display_name="LATENT",
                                      tooltip="The empty AV latent (video and audio streams, fps, sample rate).")],
        )

    @classmethod
    def execute(cls, video_vae, audio_vae, width: int, height: int, seconds: float = 2.0, frames: int = 0,
                fps: float = 24.0, batch_size: int = 1) -> io.NodeOutput:
        with node_errors(cls.NAME):
            vc, ac = video_codec(video_vae, cls.NAME), audio_codec(audio_vae, cls.NAME)
            if vc.fps is not None and abs(float(fps) - vc.fps) > 1e-6:
                raise ValueError(f"fps={fps:g} does not match the model's timeline ({vc.fps:g} fps): Harmony aligns "
                                 f"sound and picture on the rate it was trained with. Set fps to {vc.fps:g}.")
            if frames <= 0:
                if seconds <= 0:
                    raise ValueError("seconds=0 and frames=0: give the clip a length (e.g. seconds=2).")
                timeline = TimelineConfig(fps=float(fps), vae_time_stride=vc.time_stride)
                frames = timeline.pixel_frames_for_seconds(seconds)
            c_v, t_v, h, w = vc.latent_shape(frames, height, width)
            t_a = ac.latents_for_clip(frames, fps)
            v = torch.zeros(batch_size, c_v, t_v, h, w)
            a = torch.zeros(batch_size, ac.latent_channels, t_a)
        return io.NodeOutput(make_av_latent(v, a, fps=fps, sample_rate=ac.output_rate))


class HarmonyVAEEncodeVideo(io.ComfyNode):
    """The "Harmony VAE Encode Video" node (what it does: the schema's description)."""

    NAME = "Harmony VAE Encode Video"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="HarmonyVAEEncodeVideo",
            display_name=cls.NAME,
            category=_LATENT_CATEGORY,
            description=(
                "Encodes frames into a video latent. With match_latent connected the frames are first fitted to "
                "that clip: resampled to its frame rate, resized and centre-cropped to its size, and trimmed or "
                "padded (last frame repeated) to its length."
            ),
            search_aliases=["encode video", "video to latent"],
            inputs=[
                io.Image.Input("images", tooltip="The frames [T, H, W, 3], e.g. from Get Video Components."),
                video_vae_input(),
                io.Float.Input("fps", default=24.0, min=1.0, max=120.0, step=1.0, round=0.001,
                               tooltip="The frame rate of the images (connect Get Video Components' fps)."),
                io.Latent.Input("match_latent", optional=True,
                                tooltip="An AV latent whose clip the frames are fitted to (size, length, fps)."),
            ],
            outputs=[
                io.Latent.Output(display_name="video_latent", tooltip="The video latent, for Harmony Video To Audio."),
                io.Image.Output(display_name="images",
                                tooltip="The frames actually encoded (after fitting); use them for Create Video."),
            ],
        )

    @classmethod
    def execute(cls, images, video_vae, fps: float = 24.0, match_latent=None) -> io.NodeOutput:
        with node_errors(cls.NAME):
            vc = video_codec(video_vae, cls.NAME)
            if images is None or images.dim() != 4 or images.shape[-1] < 3:
                shape = None if images is None else tuple(images.shape)
                raise ValueError(f"images have shape {shape}: expected frames [T, H, W, 3].")
            if match_latent is not None:
                frames, height, width = vc.pixel_size(video_samples(match_latent, cls.NAME))
                target_fps = latent_fps(match_latent, vc.fps or fps)
            else:
                frames, height, width = None, images.shape[1], images.shape[2]
                target_fps = vc.fps or fps
                vc.check_size(height, width)
            fitted = fit_frames(images[..., :3], fps, target_fps=target_fps, height=height, width=width,
                                time_stride=vc.time_stride, num_frames=frames)
            latent = vc.encode(fitted)
        return io.NodeOutput({"samples": latent, "fps": float(target_fps)}, fitted)


class HarmonyVAEDecodeVideo(io.ComfyNode):
    """The "Harmony VAE Decode Video" node (what it does: the schema's description)."""

    NAME = "Harmony VAE Decode Video"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="HarmonyVAEDecodeVideo",
            display_name=cls.NAME,
            category=_LATENT_CATEGORY,
            description="Decodes the video stream of an AV latent (or a video latent) into frames, plus the clip's "
                        "frame rate for Create Video.",
            search_aliases=["decode video", "latent to video"],
            inputs=[
                io.Latent.Input("samples", tooltip="An AV latent (its video stream is decoded) or a video latent."),
                video_vae_input(),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip="The frames [T, H, W, 3] in 0..1 (clips of a batch "
                                                               "follow one another)."),
                io.Float.Output(display_name="fps", tooltip="The clip's frame rate (connect to Create Video's fps)."),
            ],
        )

    @classmethod
    def execute(cls, samples, video_vae) -> io.NodeOutput:
        with node_errors(cls.NAME):
            vc = video_codec(video_vae, cls.NAME)
            frames = vc.decode(video_samples(samples, cls.NAME))  # [B, T, H, W, 3]
            fps = latent_fps(samples, vc.fps or 24.0)
        return io.NodeOutput(frames.reshape(-1, *frames.shape[2:]), float(fps))


class HarmonyVAEEncodeAudio(io.ComfyNode):
    """The "Harmony VAE Encode Audio" node (what it does: the schema's description)."""

    NAME = "Harmony VAE Encode Audio"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="HarmonyVAEEncodeAudio",
            display_name=cls.NAME,
            category=_LATENT_CATEGORY,
            description=(
                "Encodes a sound into an audio latent. Any sample rate and channel count is accepted: the audio is "
                "downmixed and resampled to the VAE's rate. With match_latent connected it is trimmed or padded "
                "with silence to that clip's length."
            ),
            search_aliases=["encode audio", "audio to latent"],
            inputs=[
                io.Audio.Input("audio", tooltip="The sound, e.g. from Load Audio."),
                audio_vae_input(),
                io.Latent.Input("match_latent", optional=True,
                                tooltip="An AV latent whose audio length the sound is fitted to."),
            ],
            outputs=[
                io.Latent.Output(display_name="audio_latent", tooltip="The audio latent, for Harmony Audio To Video."),
                io.Audio.Output(display_name="audio",
                                tooltip="The sound actually encoded (mono, resampled, fitted); use it for Create "
                                        "Video."),
            ],
        )

    @classmethod
    def execute(cls, audio, audio_vae, match_latent=None) -> io.NodeOutput:
        with node_errors(cls.NAME):
            ac = audio_codec(audio_vae, cls.NAME)
            if not isinstance(audio, dict) or audio.get("waveform") is None:
                raise ValueError("audio is empty (None): the source has no sound track. Connect Load Audio, or a "
                                 "video that has sound.")
            wave, rate = audio["waveform"], int(audio.get("sample_rate") or 0)
            if rate <= 0:
                raise ValueError(f"audio sample_rate={rate}: expected a positive rate in Hz.")
            if wave.shape[-1] < 1:
                raise ValueError("audio has no samples: expected at least one.")
            n = None
            if match_latent is not None:
                n = round(audio_samples(match_latent, cls.NAME).shape[2] * ac.samples_per_latent)
            fitted = fit_waveform(wave, rate, target_rate=ac.sample_rate, num_samples=n)
            latent = ac.encode(fitted)
        return io.NodeOutput({"samples": latent, "sample_rate": ac.output_rate},
                             {"waveform": fitted, "sample_rate": ac.sample_rate})


class HarmonyVAEDecodeAudio(io.ComfyNode):
    """The "Harmony VAE Decode Audio" node (what it does: the schema's description)."""

    NAME = "Harmony VAE Decode Audio"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="HarmonyVAEDecodeAudio",
            display_name=cls.NAME,
            category=_LATENT_CATEGORY,
            description="Decodes the audio stream of an AV latent (or an audio latent) into a waveform (float32, "
                        "finite, within -1..1), ready for Create Video, Save Audio or Preview Audio.",
            search_aliases=["decode audio", "latent to audio"],
            inputs=[
                io.Latent.Input("samples", tooltip="An AV latent (its audio stream is decoded) or an audio latent."),
                audio_vae_input(),
            ],
            outputs=[io.Audio.Output(display_name="audio", tooltip="The sound {waveform [B, C, S], sample_rate}.")],
        )

    @classmethod
    def execute(cls, samples, audio_vae) -> io.NodeOutput:
        with node_errors(cls.NAME):
            ac = audio_codec(audio_vae, cls.NAME)
            wave = ac.decode(audio_samples(samples, cls.NAME))
        return io.NodeOutput({"waveform": wave, "sample_rate": ac.output_rate})


class HarmonyAVLatentCombine(io.ComfyNode):
    """The "Harmony AV Latent Combine" node (what it does: the schema's description)."""

    NAME = "Harmony AV Latent Combine"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="HarmonyAVLatentCombine",
            display_name=cls.NAME,
            category=_LATENT_CATEGORY,
            description="Puts a video latent and an audio latent into one AV latent (noise masks are kept only when "
                        "an input carries one).",
            search_aliases=["concat av latent", "join audio video latent"],
            inputs=[
                io.Latent.Input("video_latent", tooltip="A video latent [B, C, T_v, H, W] (or an AV latent)."),
                io.Latent.Input("audio_latent", tooltip="An audio latent [B, C, T_a] (or an AV latent)."),
            ],
            outputs=[io.Latent.Output(display_name="av_latent", tooltip="The combined AV latent.")],
        )

    @classmethod
    def execute(cls, video_latent, audio_latent) -> io.NodeOutput:
        with node_errors(cls.NAME):
            v, a = video_samples(video_latent, cls.NAME), audio_samples(audio_latent, cls.NAME)
            if v.shape[0] != a.shape[0]:
                raise ValueError(f"the video latent has batch {v.shape[0]} but the audio latent {a.shape[0]}; "
                                 "use the same batch size for both.")
            v_mask = video_latent.get("noise_mask")
            a_mask = audio_latent.get("noise_mask")
            v_mask = v_mask.unbind()[0] if getattr(v_mask, "is_nested", False) else v_mask
            a_mask = a_mask.unbind()[-1] if getattr(a_mask, "is_nested", False) else a_mask
            out = make_av_latent(v, a, fps=latent_fps(video_latent, None),
                                 sample_rate=audio_latent.get("sample_rate"), v_mask=v_mask, a_mask=a_mask)
        return io.NodeOutput(out)


class HarmonyAVLatentSplit(io.ComfyNode):
    """The "Harmony AV Latent Split" node (what it does: the schema's description)."""

    NAME = "Harmony AV Latent Split"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="HarmonyAVLatentSplit",
            display_name=cls.NAME,
            category=_LATENT_CATEGORY,
            description="Splits an AV latent into its video latent and its audio latent (each keeps its part of "
                        "the noise mask).",
            search_aliases=["separate av latent", "split audio video latent"],
            inputs=[io.Latent.Input("av_latent", tooltip="An AV latent.")],
            outputs=[
                io.Latent.Output(display_name="video_latent", tooltip="The video stream [B, C, T_v, H, W]."),
                io.Latent.Output(display_name="audio_latent", tooltip="The audio stream [B, C, T_a]."),
            ],
        )

    @classmethod
    def execute(cls, av_latent) -> io.NodeOutput:
        with node_errors(cls.NAME):
            v, a, v_mask, a_mask = split_av(av_latent, cls.NAME)
        video = {"samples": v}
        audio = {"samples": a}
        if "fps" in av_latent:
            video["fps"] = av_latent["fps"]
        if "sample_rate" in av_latent:
            audio["sample_rate"] = av_latent["sample_rate"]
        if v_mask is not None:
            video["noise_mask"] = v_mask
        if a_mask is not None:
            audio["noise_mask"] = a_mask
        return io.NodeOutput(video, audio)
