"""Frozen configuration dataclasses and named presets for the Harmony dual-stream DiT.

Every config is immutable (change one with ``dataclasses.replace``), validates itself in
``__post_init__`` with messages that name the field and the fix, and round-trips through
``to_dict`` / ``from_dict`` so it can be stored as JSON in every checkpoint's metadata.

Choices the Harmony paper (arXiv 2511.21579) leaves open are config fields here; each field's
comment says what the default is and why. The README lists them in one table.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

__all__ = [
    "TowerConfig",
    "InteractionConfig",
    "TimelineConfig",
    "HarmonyConfig",
    "PRESETS",
    "get_preset",
]


def _fail(cls: str, name: str, value: Any, expected: str, fix: str) -> None:
    raise ValueError(f"{cls}.{name}={value!r} is invalid: expected {expected}. {fix}")


@dataclass(frozen=True)
class TowerConfig:
    """One stream's transformer tower (Wan2.2 block layout; parameter names follow Wan/Ovi).

    The video tower patchifies ``[B, C, T_v, H, W]`` latents with a Conv3d of kernel=stride
    ``patch_size``; the audio tower (``patch_size == (1,)``) embeds ``[B, C, T_a]`` latents with
    Ovi's channel-last Conv1d + SiLU + gated ConvMLP.
    """

    in_channels: int
    patch_size: tuple[int, ...]
    dim: int
    ffn_dim: int
    num_heads: int
    num_layers: int
    text_dim: int
    freq_dim: int = 256
    # Contexts are zero-padded to this many tokens before the text MLP, as Wan/Ovi do (512);
    # the padded rows take part in attention exactly as in the reference. 0 = no padding.
    text_len: int = 0
    qk_norm: bool = True
    cross_attn_norm: bool = True
    eps: float = 1e-6
    rope_theta: float = 10000.0
    # Multiplies this tower's own temporal RoPE positions. Ovi's audio tower uses 0.19676
    # (~31 video latents / 157 audio latents), which lines audio time up with video time
    # inside its global fusion attention.
    rope_time_scale: float = 1.0
    # Audio patch embedding (Ovi/MMAudio): Conv1d kernel and the ConvMLP hidden width before
    # the SwiGLU 2/3 rule; 0 means 4 * dim, Ovi's choice.
    patch_kernel: int = 7
    patch_hidden: int = 0

    def __post_init__(self) -> None:
        name = type(self).__name__
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        for f in ("in_channels", "dim", "ffn_dim", "num_heads", "num_layers", "text_dim", "freq_dim"):
            v = getattr(self, f)
            if not isinstance(v, int) or v <= 0:
                _fail(name, f, v, "a positive int", "Use a preset from harmony_core.config.PRESETS as a template.")
        if len(self.patch_size) not in (1, 3) or any(p <= 0 for p in self.patch_size):
            _fail(
                name, "patch_size", self.patch_size, "(t, h, w) for video or (1,) for audio", "Use (1, 2, 2) or (1,)."
            )
        if len(self.patch_size) == 1 and self.patch_size != (1,):
            _fail(name, "patch_size", self.patch_size, "(1,) for the audio tower", "Audio tokens are not patchified.")
        if self.dim % self.num_heads:
            _fail(name, "dim", self.dim, f"a multiple of num_heads={self.num_heads}", "Change dim or num_heads.")
        if self.head_dim % 2 or self.head_dim < 6:
            _fail(
                name,
                "dim",
                self.dim,
                "dim/num_heads even and >= 6 (RoPE splits it into t/h/w slices)",
                "Change dim or num_heads.",
            )
        if self.freq_dim % 2:
            _fail(name, "freq_dim", self.freq_dim, "an even number", "Use 256.")
        if self.text_len < 0:
            _fail(name, "text_len", self.text_len, ">= 0", "Use 0 (no padding) or 512 (Wan/Ovi).")
        if self.patch_kernel % 2 == 0:
            _fail(name, "patch_kernel", self.patch_kernel, "an odd kernel size", "Use 7 (Ovi).")

    @property
    def is_video(self) -> bool:
        return len(self.patch_size) == 3

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def rope_time_dims(self) -> int:
        """Head dims carrying the temporal RoPE (Wan's split: d - 4*(d//6), e.g. 44 of 128)."""
        d = self.head_dim
        return d - 4 * (d // 6)

    @property
    def rope_space_dims(self) -> int:
        """Head dims carrying each of the height / width RoPE (2*(d//6), e.g. 42 of 128)."""
        return 2 * (self.head_dim // 6)

    @property
    def out_features(self) -> int:
        return self.in_channels * math.prod(self.patch_size)

    @property
    def conv_mlp_hidden(self) -> int:
        """ConvMLP width after the SwiGLU 2/3 rule, rounded up to a multiple of 256 (Ovi)."""
        h = self.patch_hidden or 4 * self.dim
        h = int(2 * h / 3)
        return 256 * ((h + 255) // 256)


@dataclass(frozen=True)
class InteractionConfig:
    """How the two towers talk to each other in every block (paper §3.3, GLDI).

    ``local`` is the frame-wise RoPE-aligned cross-attention (A2V and V2A); ``global_style`` lets
    reference-audio tokens attend to every video token; ``global_fusion`` is Ovi's full
    bidirectional cross-attention, the paper's baseline and what Ovi checkpoints contain. A
    Harmony model fine-tuned from Ovi keeps ``global_fusion`` and adds the GLDI modules, whose
    output projections start at zero so the pretrained pair is unchanged at step 0.
    """

    local: bool = True
    global_style: bool = True
    global_fusion: bool = False
    # A2V window: each video latent frame sees the audio tokens overlapping its own time span
    # widened by this many latent-frame durations on each side (paper leaves it open; ±1).
    a2v_window: int = 1
    # V2A window: each audio token sees the video latent frames overlapping its span widened
    # by this many latent-frame durations on each side.
    v2a_window: int = 1
    # Rescale the other modality's temporal RoPE positions onto the query's timeline
    # (paper §3.3.1). False gives the unaligned ablation (raw indices of each stream).
    rope_align: bool = True
    # New interaction output projections start at zero (keeps pretrained towers intact).
    zero_init: bool = True
    # Unit of the shared timeline in the local attentions' time RoPE: both the query and the key
    # positions of a direction are multiplied by its factor (1 = the query stream's own latent
    # index: video latent frames for A2V, audio latents for V2A). The paper leaves the unit open.
    # RoPE's fastest time frequency turns 1 rad per unit, so in video-frame units (4 pixel frames)
    # a head with few time frequencies barely tells where in its frame's window a sound falls;
    # ``a2v_time_scale = audio_latent_rate * vae_time_stride / fps`` (31.25 * 4 / 24 = 5.21) measures
    # A2V time in audio latents, as V2A already does.
    a2v_time_scale: float = 1.0
    v2a_time_scale: float = 1.0

    def __post_init__(self) -> None:
        for f in ("a2v_window", "v2a_window"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 0:
                _fail("InteractionConfig", f, v, "an int >= 0 (latent frames on each side)", "Use 1.")
        for f in ("a2v_time_scale", "v2a_time_scale"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                _fail("InteractionConfig", f, v, "a finite number > 0 (RoPE time unit factor)", "Use 1.0.")


@dataclass(frozen=True)
class TimelineConfig:
    """Time geometry shared by both streams: how latent indices map to seconds.

    Video: Wan2.2-style causal VAE, latent frame 0 covers one pixel frame and every later latent
    frame covers ``vae_time_stride`` pixel frames. Audio: ``audio_latent_rate`` latents per
    second (MMAudio-16k: 16000 / 256 / 2 = 31.25).
    """

    fps: float = 24.0
    vae_time_stride: int = 4
    causal_first_frame: bool = True
    audio_latent_rate: float = 31.25

    def __post_init__(self) -> None:
        if not self.fps > 0:
            _fail("TimelineConfig", "fps", self.fps, "> 0", "Use 24.")
        if self.vae_time_stride < 1:
            _fail("TimelineConfig", "vae_time_stride", self.vae_time_stride, ">= 1", "Use 4 (Wan2.2).")
        if not self.audio_latent_rate > 0:
            _fail("TimelineConfig", "audio_latent_rate", self.audio_latent_rate, "> 0", "Use 31.25 (MMAudio-16k).")

    # --- pixel frames <-> latent frames -------------------------------------------------------
    def video_latent_frames(self, pixel_frames: int) -> int:
        """Latent frames for ``pixel_frames`` (which must be 1 + k*stride for a causal VAE)."""
        s = self.vae_time_stride
        if self.causal_first_frame:
            if pixel_frames < 1 or (pixel_frames - 1) % s:
                raise ValueError(
                    f"pixel_frames={pixel_frames} does not fit the causal video VAE: expected 1 + k*{s} "
                    f"(e.g. {1 + s * max(1, (pixel_frames - 1) // s)}). Trim or pad the clip to that length."
                )
            return 1 + (pixel_frames - 1) // s
        if pixel_frames < s or pixel_frames % s:
            raise ValueError(f"pixel_frames={pixel_frames} must be a positive multiple of {s}.")
        return pixel_frames // s

    def video_pixel_frames(self, latent_frames: int) -> int:
        s = self.vae_time_stride
        return 1 + (latent_frames - 1) * s if self.causal_first_frame else latent_frames * s

    def pixel_frames_for_seconds(self, seconds: float) -> int:
        """Nearest valid pixel-frame count to ``seconds * fps`` (ties go to the longer clip),
        at least two latent frames' worth."""
        s = self.vae_time_stride
        frames = seconds * self.fps
        if self.causal_first_frame:
            return 1 + s * max(1, math.floor((frames - 1) / s + 0.5))
        return s * max(1, math.floor(frames / s + 0.5))

    def seconds_for_pixel_frames(self, pixel_frames: int) -> float:
        return pixel_frames / self.fps

    def audio_latent_frames(self, seconds: float) -> int:
        """Audio latents of a ``seconds``-long clip: whole latents only, at least 1 (MMAudio encodes
        ``S`` samples to ``S // 256`` mel frames and those to ``// 2`` latents, i.e. it floors)."""
        return max(1, math.floor(seconds * self.audio_latent_rate + 1e-9))

    def audio_latents_for_video(self, latent_frames: int) -> int:
        """Audio latent count matching a clip of ``latent_frames`` video latents."""
        return self.audio_latent_frames(self.seconds_for_pixel_frames(self.video_pixel_frames(latent_frames)))

    # --- exact time spans ---------------------------------------------------------------------
    def video_frame_span(self, i: int) -> tuple[Fraction, Fraction]:
        """Pixel-frame span [start, end) covered by video latent frame ``i``, as exact fractions."""
        s = self.vae_time_stride
        if self.causal_first_frame:
            return (Fraction(0), Fraction(1)) if i == 0 else (Fraction(s * i - s + 1), Fraction(s * i + 1))
        return Fraction(s * i), Fraction(s * i + s)


@dataclass(frozen=True)
class HarmonyConfig:
    """The whole dual-stream model: two towers, their interaction, and the shared timeline."""

    video: TowerConfig
    audio: TowerConfig
    interaction: InteractionConfig = field(default_factory=InteractionConfig)
    timeline: TimelineConfig = field(default_factory=TimelineConfig)
    # Width of the speech-transcript encoder output fed to the audio tower's text
    # cross-attention next to the caption (0 = no transcript path, as in Ovi).
    speech_dim: int = 0
    # Model time t = sigma * timestep_scale feeds the sinusoidal embedding (Wan: 1000).
    timestep_scale: float = 1000.0
    name: str = "custom"

    def __post_init__(self) -> None:
        if not self.video.is_video:
            _fail("HarmonyConfig", "video.patch_size", self.video.patch_size, "3 entries", "Use (1, 2, 2).")
        if self.audio.is_video:
            _fail("HarmonyConfig", "audio.patch_size", self.audio.patch_size, "(1,)", "Use (1,).")
        if self.video.num_layers != self.audio.num_layers:
            _fail(
                "HarmonyConfig",
                "audio.num_layers",
                self.audio.num_layers,
                f"equal to video.num_layers={self.video.num_layers} (blocks pair 1:1)",
                "Make the depths equal.",
            )
        if (self.interaction.global_fusion or self.interaction.local or self.interaction.global_style) and (
            self.video.dim != self.audio.dim or self.video.num_heads != self.audio.num_heads
        ):
            _fail(
                "HarmonyConfig",
                "audio.dim",
                self.audio.dim,
                f"equal to video.dim={self.video.dim} with equal heads while the towers interact",
                "Use towers of one width (as Ovi and Harmony do).",
            )
        if self.speech_dim < 0:
            _fail("HarmonyConfig", "speech_dim", self.speech_dim, ">= 0", "Use 0 for no transcript encoder.")

    # --- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HarmonyConfig:
        """Rebuild a config stored by ``to_dict`` (e.g. from checkpoint metadata)."""
        d = dict(d)
        try:
            video = TowerConfig(**_tower(d.pop("video", None), "video"))
            audio = TowerConfig(**_tower(d.pop("audio", None), "audio"))
            inter = InteractionConfig(**d.pop("interaction", {}))
            timeline = TimelineConfig(**d.pop("timeline", {}))
            return cls(video=video, audio=audio, interaction=inter, timeline=timeline, **d)
        except TypeError as e:  # unknown or missing keys in a stored config
            raise ValueError(f"stored HarmonyConfig does not match this version of harmony_core: {e}") from e

    @classmethod
    def from_json(cls, s: str) -> HarmonyConfig:
        return cls.from_dict(json.loads(s))


def _tower(t: dict[str, Any] | None, key: str) -> dict[str, Any]:
    if t is None:
        raise ValueError(f"stored HarmonyConfig has no '{key}' section; the checkpoint metadata is incomplete.")
    t = dict(t)
    t["patch_size"] = tuple(t["patch_size"])
    return t


# ---------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------


def _tiny() -> HarmonyConfig:
    """Seconds on a CPU: for tests and smoke runs."""
    video = TowerConfig(in_channels=4, patch_size=(1, 2, 2), dim=48, ffn_dim=96, num_heads=4, num_layers=2, text_dim=16)
    audio = TowerConfig(
        in_channels=6,
        patch_size=(1,),
        dim=48,
        ffn_dim=96,
        num_heads=4,
        num_layers=2,
        text_dim=16,
        patch_kernel=3,
        patch_hidden=96,
    )
    return HarmonyConfig(video=video, audio=audio, speech_dim=12, name="tiny")


def _synthetic() -> HarmonyConfig:
    """The shipped CPU model: 64x64 px at 24 fps over the tiny VAEs (12-channel video latents at
    /8, 8-channel audio latents at 31.25/s), MiniLM captions (384) and a 128-wide transcript encoder."""
    video = TowerConfig(
        in_channels=12,
        patch_size=(1, 2, 2),
        dim=128,
        ffn_dim=384,
        num_heads=4,
        num_layers=4,
        text_dim=384,
        patch_kernel=3,
    )
    audio = TowerConfig(
        in_channels=8,
        patch_size=(1,),
        dim=128,
        ffn_dim=384,
        num_heads=4,
        num_layers=4,
        text_dim=384,
        patch_kernel=3,
        patch_hidden=256,
    )
    # A2V time in audio latents (see InteractionConfig.a2v_time_scale): with 32-wide heads (6 RoPE time
    # frequencies) the first models' A2V attention was flat over its window in video-frame units.
    t = TimelineConfig()
    interaction = InteractionConfig(a2v_time_scale=t.audio_latent_rate * t.vae_time_stride / t.fps)
    return HarmonyConfig(video=video, audio=audio, interaction=interaction, speech_dim=128, name="synthetic")


def _mid() -> HarmonyConfig:
    """A mid-size model for benchmarks (~0.1 B parameters)."""
    video = TowerConfig(
        in_channels=16, patch_size=(1, 2, 2), dim=512, ffn_dim=2048, num_heads=8, num_layers=8, text_dim=384
    )
    audio = TowerConfig(in_channels=20, patch_size=(1,), dim=512, ffn_dim=2048, num_heads=8, num_layers=8, text_dim=384)
    return HarmonyConfig(video=video, audio=audio, speech_dim=256, name="mid")


def _full_towers(text_len: int = 512) -> tuple[TowerConfig, TowerConfig]:
    # Wan2.2-TI2V-5B video tower; Ovi's audio tower mirrors it over MMAudio-16k latents.
    video = TowerConfig(
        in_channels=48,
        patch_size=(1, 2, 2),
        dim=3072,
        ffn_dim=14336,
        num_heads=24,
        num_layers=30,
        text_dim=4096,
        text_len=text_len,
    )
    audio = TowerConfig(
        in_channels=20,
        patch_size=(1,),
        dim=3072,
        ffn_dim=14336,
        num_heads=24,
        num_layers=30,
        text_dim=4096,
        text_len=text_len,
        rope_time_scale=0.19676,
    )
    return video, audio


def _harmony_full() -> HarmonyConfig:
    """Full size: Ovi-shaped towers + Ovi's global fusion + GLDI + reference audio + transcript path."""
    video, audio = _full_towers()
    return HarmonyConfig(
        video=video,
        audio=audio,
        interaction=InteractionConfig(local=True, global_style=True, global_fusion=True),
        speech_dim=512,
        name="harmony-full",
    )


def _ovi() -> HarmonyConfig:
    """Exactly Ovi's architecture (global fusion only): loads character-ai/Ovi checkpoints."""
    video, audio = _full_towers()
    return HarmonyConfig(
        video=video,
        audio=audio,
        interaction=InteractionConfig(local=False, global_style=False, global_fusion=True),
        speech_dim=0,
        name="ovi",
    )


PRESETS: dict[str, Any] = {
    "tiny": _tiny,
    "synthetic": _synthetic,
    "mid": _mid,
    "harmony-full": _harmony_full,
    "ovi": _ovi,
}


def get_preset(name: str) -> HarmonyConfig:
    """Return the named preset (see ``PRESETS``)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}.") from None
