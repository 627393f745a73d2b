"""Recognise a DiT checkpoint from its key names and tensor shapes alone.

Three layouts are understood (see ``harmony_core.io.convert`` for the key tables):

* ``"harmony"``: this package's own ``HarmonyDiT`` state dict (towers ``video_model.`` /
  ``audio_model.``, AdaLN tables at ``blocks.N.modulation``).
* ``"ovi"``: character-ai/Ovi's ``FusionModel`` (same tower names; the block AdaLN table sits one
  level deeper, ``blocks.N.modulation.modulation``, because Ovi wraps it in ``ModulationAdd``).
* ``"wan"``: a stock single-tower Wan2.2 checkpoint (e.g. TI2V-5B): no tower prefix,
  ``blocks.N.modulation``, no audio tower and no fusion layers.
* ``"ovi-split"``: Ovi split in two files, as ComfyUI-WanVideoWrapper distributes it: the video
  tower under Wan names (with the fusion layers) and the audio tower under ``audio_model.``.

Wrapper prefixes (``model.diffusion_model.`` as ComfyUI saves, ``module.``, ``_orig_mod.``) and
quantisation side keys (``*.scale_weight``, ``*.weight_scale``, ``*.input_scale``, ``*.comfy_quant``,
the ``scaled_fp8`` marker) are recognised and set aside. Only shapes are read, so detection works on
a safetensors header, a state dict, or a ``{key: shape}`` mapping.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..config import PRESETS, HarmonyConfig, TowerConfig, get_preset

__all__ = [
    "LAYOUTS",
    "QUANT_SUFFIXES",
    "MARKER_KEYS",
    "TowerShape",
    "DetectedArchitecture",
    "is_quant_key",
    "wrapper_prefix",
    "detect_layout",
    "detect_architecture",
]

LAYOUTS = ("harmony", "ovi", "wan", "ovi-split")
# Side tensors of quantised checkpoints: ComfyUI's legacy scaled fp8 (``scale_weight``/``scale_input``
# plus a ``scaled_fp8`` marker), its newer mixed-precision format (``weight_scale``/``input_scale``/
# ``comfy_quant``) and NVFP4's second-level scale.
QUANT_SUFFIXES = (".scale_weight", ".weight_scale", ".weight_scale_2", ".scale_input", ".input_scale", ".comfy_quant")
MARKER_KEYS = ("scaled_fp8",)
_WRAPPERS = ("model.diffusion_model.", "diffusion_model.", "module.", "_orig_mod.")
_BLOCK = re.compile(r"^(?:(video_model|audio_model)\.)?blocks\.(\d+)\.")


def _shape(v: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in (v.shape if hasattr(v, "shape") else v))


def is_quant_key(key: str) -> bool:
    """True for quantisation side keys (scales, markers) that are not model parameters."""
    return key.endswith(QUANT_SUFFIXES) or key.rsplit(".", 1)[-1] in MARKER_KEYS


def wrapper_prefix(keys: Iterable[str]) -> str:
    """The wrapper prefix every parameter key shares (``"model.diffusion_model."`` ...) or ``""``."""
    params = [k for k in keys if not is_quant_key(k)]
    if not params:
        return ""
    for p in _WRAPPERS:
        if all(k.startswith(p) for k in params):
            return p + wrapper_prefix(k[len(p) :] for k in params)
    return ""


def detect_layout(keys: Iterable[str]) -> str:
    """Which key layout a checkpoint uses (keys without wrapper prefix): ``"harmony"``, ``"ovi"``,
    ``"wan"`` or ``"ovi-split"`` (the parts of a split Ovi checkpoint merged: an untowered video tower
    with fusion layers plus ``audio_model.*``).

    Raises:
        ValueError: for diffusers-format Wan files and for anything unrecognised, naming a few keys.
    """
    keys = [k for k in keys if not is_quant_key(k)]
    ks = set(keys)
    if "patch_embedding.weight" in ks and any(k.startswith("audio_model.") for k in keys):
        return "ovi-split"
    if "video_model.blocks.0.modulation.modulation" in ks or "audio_model.blocks.0.modulation.modulation" in ks:
        return "ovi"
    if "video_model.blocks.0.modulation" in ks or "audio_model.blocks.0.modulation" in ks:
        return "harmony"
    if "blocks.0.modulation" in ks and "patch_embedding.weight" in ks:
        return "wan"
    if any(k.startswith(("condition_embedder.", "blocks.0.attn1.")) for k in keys):
        raise ValueError(
            "this is a diffusers-format Wan checkpoint (keys like 'condition_embedder.*', 'blocks.N.attn1.*'); "
            "only the original Wan2.2 layout ('blocks.N.self_attn.q.weight', 'blocks.N.modulation') is supported. "
            "Use the original Wan2.2-TI2V-5B release files."
        )
    sample = ", ".join(sorted(keys)[:6]) or "(no keys)"
    raise ValueError(
        f"unrecognised DiT checkpoint layout (first keys: {sample}); expected an Ovi fusion checkpoint "
        "('video_model.blocks.0.modulation.modulation'), a Harmony DiT ('video_model.blocks.0.modulation') or a "
        "stock Wan2.2 DiT ('blocks.0.modulation'). Check that this is a DiT file, not a VAE or text encoder."
    )


@dataclass(frozen=True)
class TowerShape:
    """Shape facts of one tower read from its weights (heads are not observable from shapes)."""

    in_channels: int
    patch_size: tuple[int, ...]
    dim: int
    ffn_dim: int
    num_layers: int
    text_dim: int
    freq_dim: int
    patch_kernel: int = 7
    conv_mlp_hidden: int = 0  # audio only: ConvMLP width after Ovi's 2/3 rule


@dataclass(frozen=True)
class DetectedArchitecture:
    """What a checkpoint contains; ``to_config`` turns it into a ``HarmonyConfig``.

    Attributes:
        layout: ``"harmony"``, ``"ovi"`` or ``"wan"``.
        prefix: wrapper prefix found on every key (stripped before conversion).
        video, audio: tower shapes (``audio`` is None for a single-tower Wan file).
        global_fusion, local, global_style: which interaction modules have weights.
        speech_dim: transcript embedding input width (0 = none).
        preset: name of the preset whose every shape and module matches, or None.
    """

    layout: str
    prefix: str
    video: TowerShape
    audio: TowerShape | None
    global_fusion: bool
    local: bool
    global_style: bool
    speech_dim: int
    preset: str | None

    def to_config(self, template: HarmonyConfig | str | None = None) -> HarmonyConfig:
        """A config with this checkpoint's shapes; fields shapes cannot show (heads, text_len, RoPE
        scale, eps, windows, timeline) come from ``template`` (default: the matching preset, else "ovi").

        A tower missing from the file (stock Wan has no audio tower) is taken from the template.

        Raises:
            ValueError: when the template's head count does not divide a detected width.
        """
        if isinstance(template, str) or template is None:
            template = get_preset(template or self.preset or "ovi")
        video = _tower_config(self.video, template.video)
        audio = template.audio if self.audio is None else _tower_config(self.audio, template.audio)
        inter = dataclasses.replace(
            template.interaction, global_fusion=self.global_fusion, local=self.local, global_style=self.global_style
        )
        if self.layout == "wan":  # a Wan file says nothing about interaction: keep the template's
            inter = template.interaction
        speech = template.speech_dim if self.layout == "wan" else self.speech_dim
        name = self.preset or f"detected-{self.layout}"
        return dataclasses.replace(template, video=video, audio=audio, interaction=inter, speech_dim=speech, name=name)


def _tower_config(shape: TowerShape, base: TowerConfig) -> TowerConfig:
    heads = base.num_heads if shape.dim == base.dim else (shape.dim // 128 if shape.dim % 128 == 0 else 0)
    if not heads:
        raise ValueError(
            f"cannot infer the head count of a tower of width {shape.dim} (the template has dim={base.dim}, "
            f"and {shape.dim} is not a multiple of Wan's head width 128). Pass an explicit HarmonyConfig."
        )
    hidden = base.patch_hidden
    if shape.conv_mlp_hidden:  # keep the template's ConvMLP rule when it gives the observed width
        probe = dataclasses.replace(base, dim=shape.dim, num_heads=heads)
        hidden = hidden if probe.conv_mlp_hidden == shape.conv_mlp_hidden else shape.conv_mlp_hidden * 3 // 2
    return dataclasses.replace(
        base,
        in_channels=shape.in_channels,
        patch_size=shape.patch_size,
        dim=shape.dim,
        ffn_dim=shape.ffn_dim,
        num_heads=heads,
        num_layers=shape.num_layers,
        text_dim=shape.text_dim,
        freq_dim=shape.freq_dim,
        patch_kernel=shape.patch_kernel,
        patch_hidden=hidden,
    )


def _tower_shape(shapes: Mapping[str, tuple[int, ...]], p: str, *, is_video: bool) -> TowerShape:
    def need(key: str) -> tuple[int, ...]:
        if p + key not in shapes:
            raise ValueError(f"checkpoint has no '{p + key}'; the file is incomplete or not a Wan/Ovi-style DiT.")
        return shapes[p + key]

    tower = p[:-1] or None  # "video_model." -> "video_model"; "" (untowered video) -> None
    depth = 1 + max((int(m.group(2)) for k in shapes if (m := _BLOCK.match(k)) and m.group(1) == tower), default=-1)
    if depth == 0:
        raise ValueError(f"checkpoint has no '{p}blocks.N.*' keys; the tower is missing.")
    text = need("text_embedding.0.weight")
    time = need("time_embedding.0.weight")
    ffn = need("blocks.0.ffn.0.weight")
    if is_video:
        w = need("patch_embedding.weight")  # [D, C, pt, ph, pw]
        if len(w) != 5:
            raise ValueError(f"'{p}patch_embedding.weight' has shape {w}: expected a Conv3d [D, C, pt, ph, pw].")
        return TowerShape(w[1], tuple(w[2:]), w[0], ffn[0], depth, text[1], time[1])
    w = need("patch_embedding.0.weight")  # [D, C, k]
    hidden = need("patch_embedding.2.w1.weight")[0]
    return TowerShape(w[1], (1,), w[0], ffn[0], depth, text[1], time[1], patch_kernel=w[2], conv_mlp_hidden=hidden)


def detect_architecture(state: Mapping[str, Any]) -> DetectedArchitecture:
    """Read the architecture of a DiT checkpoint.

    Args:
        state: ``{key: tensor}`` or ``{key: shape}`` (e.g. from a safetensors header), with or
            without a wrapper prefix; quantisation side keys are ignored.

    Returns:
        The detected layout, tower shapes, interaction modules and matching preset (if any).

    Raises:
        ValueError: for an unrecognised layout or a file missing core tensors.
    """
    prefix = wrapper_prefix(state.keys())
    shapes = {k[len(prefix) :]: _shape(v) for k, v in state.items() if not is_quant_key(k)}
    layout = detect_layout(shapes)
    if layout == "wan":
        video, audio = _tower_shape(shapes, "", is_video=True), None
    elif layout == "ovi-split":
        video, audio = _tower_shape(shapes, "", is_video=True), _tower_shape(shapes, "audio_model.", is_video=False)
    else:
        video = _tower_shape(shapes, "video_model.", is_video=True)
        has_audio = any(k.startswith("audio_model.") for k in shapes)
        audio = _tower_shape(shapes, "audio_model.", is_video=False) if has_audio else None
    keys = list(shapes)
    speech = shapes.get("audio_model.speech_embedding.0.weight", (0, 0))[1]
    found = DetectedArchitecture(
        layout=layout,
        prefix=prefix,
        video=video,
        audio=audio,
        global_fusion=any(".cross_attn.k_fusion." in k for k in keys),
        local=any(re.search(r"\.blocks\.\d+\.(a2v|v2a)\.", k) for k in keys),
        global_style=any(re.search(r"\.blocks\.\d+\.style\.", k) for k in keys),
        speech_dim=speech,
        preset=None,
    )
    return dataclasses.replace(found, preset=_matching_preset(found))


def _matching_preset(found: DetectedArchitecture) -> str | None:
    """The preset with exactly these tower shapes and modules (Wan files match on the video tower,
    preferring "ovi", the architecture a Wan2.2 video tower was first paired in)."""
    for name in sorted(PRESETS, key=lambda n: n != "ovi"):
        cfg = get_preset(name)
        try:
            mine = found.to_config(cfg)
        except ValueError:
            continue
        same_towers = mine.video == cfg.video and mine.audio == cfg.audio
        if found.layout == "wan":
            if same_towers:
                return name
            continue
        inter = (cfg.interaction.global_fusion, cfg.interaction.local, cfg.interaction.global_style)
        if (
            same_towers
            and inter == (found.global_fusion, found.local, found.global_style)
            and (cfg.speech_dim == found.speech_dim)
        ):
            return name
    return None
