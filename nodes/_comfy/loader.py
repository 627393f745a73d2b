"""Finding and loading Harmony checkpoints the ComfyUI way.

Files are listed from ``models/harmony`` (registered as the ``harmony`` folder, keeping any paths
the user added in ``extra_model_paths.yaml``, created if missing) and ``models/diffusion_models``;
the model shipped with the pack (``harmony_core/assets/harmony-tiny.safetensors``) is always
listed first. The architecture is read from the file, never from its name: ``DETECTORS`` is an
ordered list of functions ``(path, metadata) -> Detected | None``:

* a Harmony bundle (DiT + VAEs + text encoders, from its metadata);
* a Harmony DiT written by ``save_dit`` (config in its metadata);
* a DiT recognised from its keys and shapes (``harmony_core.io.detect``): Ovi's fused checkpoint
  (``video_model.*`` / ``audio_model.*``), a split Ovi checkpoint (its two files selected
  together) or a Harmony DiT without metadata.

The DiT becomes a native ``MODEL``: ``HarmonyModelConfig`` -> ``HarmonyAVModel`` built with
``comfy.ops`` layers (``pick_operations`` for the chosen weight dtype) and ComfyUI's attention,
wrapped in ``comfy.model_patcher.CoreModelPatcher`` (so memory management, offloading, LoRA
patching and interrupts apply). Full-size files (everything but bundles) are read through
``harmony_core.io.convert.load_ovi_checkpoint`` (key renames, fp32 / bf16 / fp16 / fp8 storage,
scaled-fp8 dequantisation, modules the file lacks initialised and reported) and the converted
tensors are assigned into a model built on the ``meta`` device, so host memory holds one copy of
the weights. A bundle's small VAEs and text encoders stay plain PyTorch modules on the CPU,
reached through a ``HarmonyEngine`` that shares the DiT module with the patcher.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import comfy.model_management as mm
import comfy.model_patcher
import comfy.utils
import folder_paths
import torch

from ...harmony_core.config import HarmonyConfig
from ...harmony_core.engine import HarmonyEngine
from ...harmony_core.io.bundle import BUNDLE_FORMAT, HarmonyBundle
from ...harmony_core.io.checkpoints import DIT_FORMAT, key_report, load_state_strict, read_metadata
from .full_size import WEIGHT_DTYPES, build_converted, read_header
from .model import HarmonyModelConfig

__all__ = [
    "FOLDER",
    "SHIPPED_MODEL",
    "WEIGHT_DTYPES",
    "ARCHITECTURES",
    "NO_FILE",
    "Detected",
    "DETECTORS",
    "LoadedHarmony",
    "ensure_model_folder",
    "list_models",
    "resolve_model",
    "detect",
    "build_model_patcher",
    "load_harmony",
]

log = logging.getLogger(__name__)

FOLDER = "harmony"
EXTENSIONS = {".safetensors", ".sft"}
SHIPPED_MODEL = "harmony-tiny.safetensors"
SHIPPED_PATH = Path(__file__).resolve().parents[2] / "harmony_core" / "assets" / SHIPPED_MODEL
# "from file": exactly the architecture the keys describe (an Ovi file runs as Ovi). "harmony": add
# the Harmony-only modules a file lacks (GLDI local A2V / V2A, global style, transcript path),
# initialised so that their outputs are zero: the model still computes what the file computes.
ARCHITECTURES = ("from file", "harmony")
NO_FILE = "(none)"


def ensure_model_folder() -> None:
    """Register ``models/harmony`` as the ``harmony`` folder (idempotent).

    Paths the user already configured for ``harmony`` (``extra_model_paths.yaml`` is applied before
    packs load) are kept; the default folder is appended and created when missing, and the
    extension filter is set to safetensors.
    """
    default = os.path.join(folder_paths.models_dir, FOLDER)
    try:
        os.makedirs(default, exist_ok=True)
    except OSError as e:  # read-only install: list what exists, never fail at import
        log.warning("could not create %s (%s); Harmony models are listed from the other folders only", default, e)
    entry = folder_paths.folder_names_and_paths.get(FOLDER)
    paths = list(entry[0]) if entry else []
    if default not in paths:
        paths.append(default)
    folder_paths.folder_names_and_paths[FOLDER] = (paths, set(EXTENSIONS))


def _safe_list(folder: str) -> list[str]:
    try:
        return [f for f in folder_paths.get_filename_list(folder) if os.path.splitext(f)[1].lower() in EXTENSIONS]
    except Exception as e:  # a broken folder must never break /object_info
        log.warning("could not list the '%s' model folder: %s", folder, e)
        return []


def list_models() -> list[str]:
    """Model names for the loader's combo: the shipped model, then ``harmony``, then
    ``diffusion_models`` files (names unique; never raises)."""
    ensure_model_folder()
    names = [SHIPPED_MODEL]
    for folder in (FOLDER, "diffusion_models"):
        names += [n for n in _safe_list(folder) if n not in names]
    return names


def resolve_model(name: str, node: str) -> str:
    """Absolute path of a listed model name.

    Raises:
        FileNotFoundError: naming the folders searched and what to do.
    """
    if name == SHIPPED_MODEL and SHIPPED_PATH.is_file():
        return str(SHIPPED_PATH)
    ensure_model_folder()
    for folder in (FOLDER, "diffusion_models"):
        path = folder_paths.get_full_path(folder, name)
        if path:
            return path
    if name == SHIPPED_MODEL:
        raise FileNotFoundError(
            f"{node}: the shipped model {SHIPPED_MODEL} is missing (expected at {SHIPPED_PATH}). "
            f"Reinstall the pack, or put a Harmony model into models/{FOLDER}/ and select it."
        )
    raise FileNotFoundError(
        f"{node}: model_name={name!r} was not found in models/{FOLDER}/ or models/diffusion_models/. "
        "Refresh the page (R) to re-list the folders, or copy the file there."
    )


@dataclass(frozen=True)
class Detected:
    """What a checkpoint holds.

    Attributes:
        kind: ``"bundle"`` (DiT + VAEs + text encoders; loaded as stored) or ``"dit"`` (a DiT only;
            converted with ``harmony_core.io.convert``).
        config: the DiT architecture.
        dit_prefix: key prefix of the DiT tensors in the file (bundles).
        metadata: the safetensors header metadata (of the first file).
        layout: the key layout (``"harmony"``, ``"ovi"``, ``"ovi-split"``).
        paths: every file of the checkpoint (two for a split Ovi checkpoint).
        source: how the architecture was found ("metadata" or "keys").
    """

    kind: str
    config: HarmonyConfig
    dit_prefix: str
    metadata: dict[str, str]
    layout: str = "harmony"
    paths: tuple[str, ...] = ()
    source: str = "metadata"


def _detect_bundle(path: str, meta: dict[str, str]) -> Detected | None:
    if meta.get("format") != BUNDLE_FORMAT:
        return None
    return Detected("bundle", HarmonyConfig.from_json(meta["dit_config"]), "dit.", meta, paths=(path,))


def _detect_dit(path: str, meta: dict[str, str]) -> Detected | None:
    if meta.get("format") != DIT_FORMAT and "config" not in meta:
        return None
    return Detected("dit", HarmonyConfig.from_json(meta["config"]), "", meta, paths=(path,))


def _detect_keys(paths: tuple[str, ...], meta: dict[str, str]) -> Detected | None:
    """Recognise a DiT from its key names and shapes (``harmony_core.io.detect``)."""
    from ...harmony_core.io.detect import detect_architecture, detect_layout, is_quant_key, wrapper_prefix

    shapes, _ = read_header(paths)
    prefix = wrapper_prefix(shapes)
    keys = [k[len(prefix):] for k in shapes if k.startswith(prefix) and not is_quant_key(k)]
    try:
        layout = detect_layout(keys)
    except ValueError:
        if len(paths) > 1:
            raise
        return None  # not a DiT: detect() gives its generic message
    names = " + ".join(repr(os.path.basename(p)) for p in paths)
    if layout == "wan" and any(".cross_attn.k_fusion." in k for k in keys):
        raise ValueError(f"{names} is the video half of a split Ovi checkpoint (Wan key names with Ovi's fusion "
                         "layers, no audio tower). Select its audio file (audio_model.* keys) as extra_file, or "
                         "use Ovi's fused model.safetensors.")
    if layout == "wan":
        raise ValueError(f"{names} is a stock Wan2.2 video DiT (recognised from its keys): it has no audio tower, so "
                         "it cannot make sound. Use an Ovi checkpoint (e.g. Ovi's model.safetensors) or a Harmony "
                         "model.")
    if not any(k.startswith("video_model.") or k == "patch_embedding.weight" for k in keys):
        raise ValueError(f"{names} holds only an audio tower (audio_model.* keys): it is the audio half of a split Ovi "
                         "checkpoint. Select the video file as model_name and this one as extra_file.")
    try:
        found = detect_architecture(shapes)
        config = found.to_config()
    except ValueError as e:
        raise ValueError(f"{names} has the '{layout}' key layout (an Ovi or Harmony DiT, recognised from its keys) "
                         f"but its architecture cannot be read: {e} The file is incomplete (download it again) or "
                         "not a full DiT; this node reads towers of Ovi's width or of a multiple of 128.") from e
    return Detected("dit", config, prefix, meta, layout=found.layout, paths=paths, source="keys")


def _detect_foreign(path: str, meta: dict[str, str]) -> Detected | None:
    return _detect_keys((path,), meta)


# Ordered: the first detector that recognises a file wins.
DETECTORS: list[Callable[[str, dict[str, str]], Detected | None]] = [_detect_bundle, _detect_dit, _detect_foreign]


def detect(path: str, node: str, extra: str | None = None) -> Detected:
    """Identify the architecture of ``path`` (and ``extra``, the second file of a split
    checkpoint) from metadata, key names and shapes.

    Raises:
        ValueError: the file is not a checkpoint any detector knows, with the formats accepted.
    """
    try:
        meta = read_metadata(path)
        if extra is not None:
            read_metadata(extra)
    except (FileNotFoundError, ValueError) as e:
        raise ValueError(f"{node}: {e}") from e
    try:
        if extra is not None:
            if meta.get("format") in (BUNDLE_FORMAT, DIT_FORMAT):
                raise ValueError(f"{os.path.basename(path)!r} is a complete Harmony model: set extra_file to "
                                 f"{NO_FILE!r} (it is only for the second file of a split checkpoint).")
            return _detect_keys((path, extra), meta)
        for fn in DETECTORS:
            found = fn(path, meta)
            if found is not None:
                return found
    except ValueError as e:
        raise ValueError(f"{node}: {e}") from e
    raise ValueError(
        f"{node}: {os.path.basename(path)!r} is not a Harmony checkpoint or an Ovi DiT (its metadata has format="
        f"{meta.get('format')!r}, expected {BUNDLE_FORMAT!r} or {DIT_FORMAT!r}, and its keys are not an Ovi or "
        "Harmony DiT's: video_model.* / audio_model.*). Select a Harmony model or an Ovi checkpoint; VAEs and text "
        "encoders go into Load VAE / Load CLIP."
    )


def _dit_state(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The DiT tensors of a file, keyed like ``HarmonyDiffusionModel`` (``dit.<name>``)."""
    return {"dit." + k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _check_dtype(weight_dtype: str, node: str) -> None:
    if weight_dtype not in WEIGHT_DTYPES or (weight_dtype != "default" and WEIGHT_DTYPES[weight_dtype] is None):
        raise ValueError(f"{node}: weight_dtype={weight_dtype!r} is not available; choose one of "
                         f"{[k for k, v in WEIGHT_DTYPES.items() if k == 'default' or v is not None]}.")


def _make_patcher(model: Any, load_device: Any, offload_device: Any, disable_dynamic: bool) -> Any:
    # CoreModelPatcher (the dynamic-VRAM patcher on NVIDIA) exists from ComfyUI 0.1x on; look it up
    # at call time, as ComfyUI rebinds it at start-up.
    core_cls = getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)
    patcher_cls = comfy.model_patcher.ModelPatcher if disable_dynamic else core_cls
    return patcher_cls(model, load_device=load_device, offload_device=offload_device)


def build_model_patcher(path: str, weight_dtype: str = "default", disable_dynamic: bool = False,
                        *, detected: Detected | None = None, state_dict: dict | None = None,
                        on_built: Callable[[Any], None] | None = None, node: str = "Harmony Model Loader",
                        extra: str | None = None, architecture: str = "from file",
                        reports: list | None = None) -> Any:
    """Load the DiT of ``path`` as a ComfyUI ``ModelPatcher``.

    Args:
        path: a Harmony bundle or DiT file, or an Ovi checkpoint (or its first part).
        weight_dtype: a key of ``WEIGHT_DTYPES``; "default" lets ComfyUI choose for the device.
        disable_dynamic: build a plain ``ModelPatcher`` (ComfyUI asks for this through
            ``cached_patcher_init`` when it needs a non-dynamic copy).
        detected, state_dict: already read (to read the file once; bundles).
        on_built: bundles only: called with the ``HarmonyAVModel`` right after it is built on the
            CPU, before it is moved to the offload device and filled.
        extra: the second file of a split checkpoint.
        architecture: one of ``ARCHITECTURES`` (full-size files only).
        reports: if given, the ``FullSizeReport`` of a converted file is appended to it.

    Raises:
        ValueError: unknown weight dtype or architecture, or a file whose tensors do not fit the
            architecture read from it (every problem listed).
        MemoryError: the weights cannot fit the memory that holds them.
    """
    _check_dtype(weight_dtype, node)
    detected = detected or detect(path, node, extra)
    if detected.kind != "bundle":
        patcher, report = build_converted(detected, weight_dtype, architecture, node=node,
                                          disable_dynamic=disable_dynamic, make_patcher=_make_patcher)
        patcher.cached_patcher_init = (functools.partial(build_model_patcher, extra=extra, architecture=architecture,
                                                         node=node), (path, weight_dtype))
        if reports is not None:
            reports.append(report)
        return patcher
    sd = state_dict if state_dict is not None else comfy.utils.load_torch_file(path)
    dit_sd = _dit_state(sd, detected.dit_prefix)
    load_device = mm.get_torch_device()
    offload_device = mm.unet_offload_device()
    config = HarmonyModelConfig(detected.config)
    dtype = WEIGHT_DTYPES[weight_dtype]
    if dtype is None:
        dtype = mm.unet_dtype(model_params=comfy.utils.calculate_parameters(dit_sd),
                              supported_dtypes=config.supported_inference_dtypes,
                              weight_dtype=comfy.utils.weight_dtype(dit_sd))
    config.set_inference_dtype(dtype, mm.unet_manual_cast(dtype, load_device, config.supported_inference_dtypes))
    model = config.get_model(dit_sd)
    expected = {k: tuple(v.shape) for k, v in model.diffusion_model.state_dict().items()}
    report = key_report(expected, {k: tuple(v.shape) for k, v in dit_sd.items()})
    if not report.ok:
        raise ValueError(f"{node}: {os.path.basename(path)!r} does not fit the architecture in its own metadata: "
                         f"{report.describe(limit=5)}. The file is damaged or was written by another version; "
                         "re-download or re-export it.")
    if on_built is not None:
        on_built(model)
    patcher = _make_patcher(model, load_device, offload_device, disable_dynamic)
    if not mm.is_device_cpu(offload_device):
        model.to(offload_device)
    if getattr(patcher, "is_dynamic", lambda: False)():
        model.load_model_weights(dit_sd, "", assign=True)
    else:  # ComfyUI < 0.1x has no ``assign`` argument
        model.load_model_weights(dit_sd, "")
    patcher.cached_patcher_init = (build_model_patcher, (path, weight_dtype))
    return patcher


@dataclass
class LoadedHarmony:
    """A loaded checkpoint: the MODEL, for bundles an engine holding the VAEs and text encoders, and
    a readable report of what was loaded (and converted or initialised)."""

    patcher: Any
    engine: HarmonyEngine | None
    name: str
    report: str = ""


def _bundle_parts(sd: dict[str, torch.Tensor], meta: dict[str, str], source: str) -> dict[str, Any]:
    """Build a bundle's VAEs and transcript encoder from already-read tensors (strict keys)."""
    from ...harmony_core.text.transcript import TranscriptEncoder, TranscriptEncoderConfig
    from ...harmony_core.vae.audio import AudioVAE, AudioVAEConfig
    from ...harmony_core.vae.video import VideoVAE, VideoVAEConfig

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v.float() for k, v in sd.items() if k.startswith(prefix)}

    video_vae = VideoVAE(VideoVAEConfig.from_dict(json.loads(meta["video_vae_config"])))
    load_state_strict(video_vae, part("video_vae."), source=f"{source} [video_vae]")
    audio_vae = AudioVAE(AudioVAEConfig.from_dict(json.loads(meta["audio_vae_config"])))
    load_state_strict(audio_vae, part("audio_vae."), source=f"{source} [audio_vae]")
    transcript = None
    if "transcript_config" in meta:
        cfg = TranscriptEncoderConfig.from_dict(json.loads(meta["transcript_config"]))
        transcript = TranscriptEncoder.from_config(cfg)
        load_state_strict(transcript, part("transcript."), source=f"{source} [transcript]")
        transcript = transcript.eval()
    return {"video_vae": video_vae.eval(), "audio_vae": audio_vae.eval(), "transcript": transcript,
            "info": json.loads(meta.get("info", "{}"))}


def load_harmony(name: str, weight_dtype: str = "default", *, node: str = "Harmony Model Loader",
                 extra_file: str = NO_FILE, architecture: str = "from file") -> LoadedHarmony:
    """Load a listed model: the native MODEL, plus an engine for a bundle's VAEs and text encoders.

    Args:
        name: a name from ``list_models``.
        weight_dtype: a key of ``WEIGHT_DTYPES``.
        extra_file: the second file of a split checkpoint (a listed name), or ``NO_FILE``.
        architecture: one of ``ARCHITECTURES``.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"{node}: architecture={architecture!r} is unknown; choose one of {list(ARCHITECTURES)}.")
    path = resolve_model(name, node)
    extra = None if extra_file in ("", NO_FILE, None) else resolve_model(extra_file, node)
    if extra is not None and os.path.realpath(extra) == os.path.realpath(path):
        raise ValueError(f"{node}: extra_file={extra_file!r} is the model file itself; select the other part of the "
                         f"split checkpoint, or {NO_FILE!r}.")
    detected = detect(path, node, extra)
    if detected.kind != "bundle":
        reports: list = []
        patcher = build_model_patcher(path, weight_dtype, detected=detected, node=node, extra=extra,
                                      architecture=architecture, reports=reports)
        text = reports[0].describe()
        log.info("%s: %s", node, text)
        return LoadedHarmony(patcher=patcher, engine=None, name=name, report=text)
    sd = comfy.utils.load_torch_file(path)
    engines: list[HarmonyEngine] = []

    def make_engine(model: Any) -> None:
        parts = _bundle_parts(sd, detected.metadata, os.path.basename(path))
        bundle = HarmonyBundle(dit=model.diffusion_model.dit, video_vae=parts["video_vae"],
                               audio_vae=parts["audio_vae"], transcript=parts["transcript"], info=parts["info"])
        # The engine shares the DiT module. It is built while the DiT still sits on the CPU, so its
        # bundle.to("cpu") moves only the VAEs; it never moves or calls the DiT afterwards
        # (sampling goes through the patcher).
        engines.append(HarmonyEngine(bundle, device="cpu"))

    patcher = build_model_patcher(path, weight_dtype, detected=detected, state_dict=sd, node=node,
                                  on_built=make_engine)
    text = (f"{name}: Harmony bundle ({detected.config.name}; DiT + video VAE + audio VAE + text encoders), "
            f"weight dtype {patcher.model.get_dtype()}")
    log.info("loaded Harmony model %s (%s, %s)", name, detected.kind, detected.config.name)
    return LoadedHarmony(patcher=patcher, engine=engines[0], name=name, report=text)
