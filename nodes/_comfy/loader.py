"""Finding and loading Harmony checkpoints the ComfyUI way.

Files are listed from ``models/harmony`` (registered as the ``harmony`` folder, keeping any paths
the user added in ``extra_model_paths.yaml``, created if missing) and ``models/diffusion_models``;
the model shipped with the pack (``harmony_core/assets/harmony-tiny.safetensors``) is always
listed first. The architecture is read from the file, never from its name: ``DETECTORS`` is an
ordered list of functions ``(path, metadata) -> Detected | None``; Ovi and other full-size formats
plug in there (a converter in ``harmony_core.io`` turning their keys into ours).

The DiT becomes a native ``MODEL``: ``HarmonyModelConfig`` -> ``HarmonyAVModel`` built with
``comfy.ops`` layers (``pick_operations`` for the chosen weight dtype) and ComfyUI's attention,
wrapped in ``comfy.model_patcher.CoreModelPatcher`` (so memory management, offloading, LoRA
patching and interrupts apply) and filled by ``load_model_weights``. A bundle's small VAEs and
text encoders stay plain PyTorch modules on the CPU, reached through a ``HarmonyEngine`` that
shares the DiT module with the patcher (it never calls or moves it after construction).
"""

from __future__ import annotations

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
from .model import HarmonyModelConfig

__all__ = [
    "FOLDER",
    "SHIPPED_MODEL",
    "WEIGHT_DTYPES",
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
WEIGHT_DTYPES = {
    "default": None,
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "fp8_e4m3fn": getattr(torch, "float8_e4m3fn", None),
}


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
        kind: ``"bundle"`` (DiT + VAEs + text encoders) or ``"dit"`` (DiT only).
        config: the DiT architecture.
        dit_prefix: key prefix of the DiT tensors in the file.
        metadata: the safetensors header metadata.
    """

    kind: str
    config: HarmonyConfig
    dit_prefix: str
    metadata: dict[str, str]


def _detect_bundle(path: str, meta: dict[str, str]) -> Detected | None:
    if meta.get("format") != BUNDLE_FORMAT:
        return None
    return Detected("bundle", HarmonyConfig.from_json(meta["dit_config"]), "dit.", meta)


def _detect_dit(path: str, meta: dict[str, str]) -> Detected | None:
    if meta.get("format") != DIT_FORMAT and "config" not in meta:
        return None
    return Detected("dit", HarmonyConfig.from_json(meta["config"]), "", meta)


def _detect_foreign(path: str, meta: dict[str, str]) -> Detected | None:
    """Recognise Ovi / Wan DiT files by their keys (``harmony_core.io.detect``) to say so clearly;
    loading them needs the converter, which the nodes do not wire up yet."""
    try:
        from safetensors import safe_open

        from ...harmony_core.io.detect import detect_layout, wrapper_prefix

        with safe_open(path, framework="pt") as f:
            keys = list(f.keys())
        prefix = wrapper_prefix(keys)
        layout = detect_layout([k[len(prefix):] for k in keys if k.startswith(prefix)])
    except Exception:  # not a DiT file at all: let detect() give its generic message
        return None
    if layout == "harmony":
        return None  # our keys without our metadata: not a file this version wrote
    raise ValueError(f"{os.path.basename(path)!r} has the '{layout}' key layout (an Ovi or Wan checkpoint, recognised "
                     "from its keys); the nodes cannot load Ovi / Wan files yet. Use a Harmony model, e.g. the "
                     "shipped harmony-tiny.")


# Ordered: the first detector that recognises a file wins. Converters for full-size formats plug in
# here (a detector returning a ``Detected`` with the converted config and key prefix).
DETECTORS: list[Callable[[str, dict[str, str]], Detected | None]] = [_detect_bundle, _detect_dit, _detect_foreign]


def detect(path: str, node: str) -> Detected:
    """Identify the architecture of ``path`` from its metadata and keys.

    Raises:
        ValueError: the file is not a checkpoint any detector knows, with the formats accepted.
    """
    try:
        meta = read_metadata(path)
    except (FileNotFoundError, ValueError) as e:
        raise ValueError(f"{node}: {e}") from e
    for fn in DETECTORS:
        try:
            found = fn(path, meta)
        except ValueError as e:
            raise ValueError(f"{node}: {e}") from e
        if found is not None:
            return found
    raise ValueError(
        f"{node}: {os.path.basename(path)!r} is not a Harmony checkpoint (its metadata has format="
        f"{meta.get('format')!r}; expected {BUNDLE_FORMAT!r} or {DIT_FORMAT!r}). Select a Harmony model; "
        "Wan or Ovi files are not supported yet."
    )


def _dit_state(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The DiT tensors of a file, keyed like ``HarmonyDiffusionModel`` (``dit.<name>``)."""
    return {"dit." + k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def build_model_patcher(path: str, weight_dtype: str = "default", disable_dynamic: bool = False,
                        *, detected: Detected | None = None, state_dict: dict | None = None,
                        on_built: Callable[[Any], None] | None = None, node: str = "Harmony Model Loader") -> Any:
    """Load the DiT of ``path`` as a ComfyUI ``ModelPatcher``.

    Args:
        path: a Harmony bundle or DiT file.
        weight_dtype: a key of ``WEIGHT_DTYPES``; "default" lets ComfyUI choose for the device.
        disable_dynamic: build a plain ``ModelPatcher`` (ComfyUI asks for this through
            ``cached_patcher_init`` when it needs a non-dynamic copy).
        detected, state_dict: already read (to read the file once).
        on_built: called with the ``HarmonyAVModel`` right after it is built on the CPU, before it
            is moved to the offload device and filled.

    Raises:
        ValueError: unknown weight dtype, or a file whose tensors do not fit its own config.
    """
    if weight_dtype not in WEIGHT_DTYPES or (weight_dtype != "default" and WEIGHT_DTYPES[weight_dtype] is None):
        raise ValueError(f"{node}: weight_dtype={weight_dtype!r} is not available; choose one of "
                         f"{[k for k, v in WEIGHT_DTYPES.items() if k == 'default' or v is not None]}.")
    detected = detected or detect(path, node)
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
    # CoreModelPatcher (the dynamic-VRAM patcher on NVIDIA) exists from ComfyUI 0.1x on; look it up
    # at call time, as ComfyUI rebinds it at start-up.
    core_cls = getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)
    patcher_cls = comfy.model_patcher.ModelPatcher if disable_dynamic else core_cls
    patcher = patcher_cls(model, load_device=load_device, offload_device=offload_device)
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
    """A loaded checkpoint: the MODEL and, for bundles, an engine holding the VAEs and text encoders."""

    patcher: Any
    engine: HarmonyEngine | None
    name: str


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


def load_harmony(name: str, weight_dtype: str = "default", *, node: str = "Harmony Model Loader") -> LoadedHarmony:
    """Load a listed model: the native MODEL, plus an engine for a bundle's VAEs and text encoders."""
    path = resolve_model(name, node)
    detected = detect(path, node)
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
                                  on_built=make_engine if detected.kind == "bundle" else None)
    engine = engines[0] if engines else None
    log.info("loaded Harmony model %s (%s, %s)", name, detected.kind, detected.config.name)
    return LoadedHarmony(patcher=patcher, engine=engine, name=name)
