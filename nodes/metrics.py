"""Harmony Sync Score: measure audio-visual sync of any clip inside ComfyUI."""

from __future__ import annotations

import math

from comfy_api.latest import io, ui

from ._common import node_errors, schema

__all__ = ["HarmonySyncScore"]


class HarmonySyncScore(io.ComfyNode):
    """The "Harmony Sync Score" node (what it does: the schema's description)."""

    NAME = "Harmony Sync Score"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="HarmonySyncScore",
            display_name=cls.NAME,
            category="Harmony/metrics",
            description=(
                "Estimates the audio-visual offset of a clip (positive = the sound lags the picture) and how "
                "confident the match is, from visual motion and audio onsets (signal-processing analogues of "
                "SyncNet / Synchformer; compare clips with each other, not with paper numbers). Works on any "
                "frames and sound, generated or loaded."
            ),
            search_aliases=["sync score", "av offset", "lip sync check", "desync"],
            is_output_node=True,
            inputs=[
                io.Image.Input("images", tooltip="The frames [T, H, W, 3] (at least 8)."),
                io.Audio.Input("audio", tooltip="The soundtrack (any sample rate; channels are mixed down)."),
                io.Float.Input("fps", default=24.0, min=1.0, max=120.0, step=1.0, round=0.001,
                               tooltip="The frames' rate (connect Harmony VAE Decode Video's or Get Video "
                                       "Components' fps)."),
                io.Float.Input("max_offset", default=1.0, min=0.05, max=5.0, step=0.05, round=0.01,
                               tooltip="Largest offset searched in each direction, in seconds."),
            ],
            outputs=[
                io.Float.Output(display_name="offset_seconds",
                                tooltip="Estimated offset in seconds (0 when the clip has no measurable events)."),
                io.Float.Output(display_name="confidence",
                                tooltip="Sync confidence (peak minus median correlation; higher is better)."),
                io.String.Output(display_name="report", tooltip="A one-line summary."),
            ],
        )

    @classmethod
    def execute(cls, images, audio, fps: float = 24.0, max_offset: float = 1.0) -> io.NodeOutput:
        from ..harmony_core.metrics.sync import sync_report  # imported here: a metrics problem never hides the pack

        with node_errors(cls.NAME):
            if not isinstance(audio, dict) or audio.get("waveform") is None:
                raise ValueError("audio is empty (None): the source has no sound track.")
            wave = audio["waveform"]
            wave = wave[0] if wave.dim() == 3 else wave
            report = sync_report(images[..., :3], wave, fps=float(fps), sample_rate=float(audio["sample_rate"]),
                                 max_offset_s=float(max_offset))
        if report.valid and math.isfinite(report.offset_s):
            offset = float(report.offset_s)
            text = (f"offset {offset * 1000:+.0f} ms ({'sound lags picture' if offset > 0 else 'sound leads picture'}"
                    f"), confidence {report.confidence:.3f}, distance {report.distance:.3f}")
        else:
            offset = 0.0
            text = "no measurable events (silent audio or a still picture): offset undefined, confidence 0"
        return io.NodeOutput(offset, float(report.confidence), text, ui=ui.PreviewText(text))
