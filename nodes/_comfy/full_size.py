"""Full-size DiT files (Ovi fused or split, Harmony DiT) as a native ComfyUI ``MODEL``.

The file is read and converted by ``harmony_core.io.convert.load_ovi_checkpoint`` (key renames,
storage dtype, scaled-fp8 dequantisation, initialisation of the modules a file lacks, built on the
``meta`` device and filled tensor by tensor); the converted tensors are then assigned into a
``HarmonyAVModel`` that ComfyUI also built on ``meta``, so host memory holds one copy of the
weights. Before anything is read, the keys are checked against the architecture read from the
file (every problem listed) and the weights' size against the memory that will hold them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import comfy.model_management as mm
import torch

from ...harmony_core.config import HarmonyConfig, get_preset
from ...harmony_core.io.checkpoints import key_report
from ...harmony_core.io.convert import ConversionReport, is_harmony_only_key, load_ovi_checkpoint, to_harmony_key
from ...harmony_core.io.detect import is_quant_key
from ...harmony_core.model.dit import HarmonyDiT
from .memory import native_clip_line
from .model import HarmonyModelConfig

__all__ = ["WEIGHT_DTYPES", "FullSizeReport", "read_header", "with_harmony_modules", "storage_bytes",
           "build_converted"]

log = logging.getLogger(__name__)

GB = 10**9  # decimal, as download pages state sizes
WEIGHT_DTYPES = {
    "default": None,
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "fp8_e4m3fn": getattr(torch, "float8_e4m3fn", None),
}
_FP8 = tuple(d for d in (getattr(torch, "float8_e4m3fn", None), getattr(torch, "float8_e5m2", None)) if d)
_FILE_DTYPES = {"F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16,
                "F8_E4M3": getattr(torch, "float8_e4m3fn", None), "F8_E5M2": getattr(torch, "float8_e5m2", None)}
_SCALES = (".scale_weight", ".weight_scale")


def read_header(paths: tuple[str, ...]) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """``{key: shape}`` and ``{key: safetensors dtype name}`` of the files together (headers only)."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, str] = {}
    for p in paths:
        with safe_open(p, framework="pt") as f:
            for k in f.keys():
                s = f.get_slice(k)
                shapes[k], dtypes[k] = tuple(s.get_shape()), s.get_dtype()
    return shapes, dtypes


def with_harmony_modules(config: HarmonyConfig) -> HarmonyConfig:
    """``config`` plus the Harmony-only modules (GLDI local A2V / V2A, global style, transcript
    path) with ``harmony-full``'s settings; the file's own towers and fusion are kept."""
    full = get_preset("harmony-full")
    inter = dataclasses.replace(full.interaction, global_fusion=config.interaction.global_fusion)
    name = config.name if inter == config.interaction and config.speech_dim else f"{config.name}+harmony"
    return dataclasses.replace(config, interaction=inter, speech_dim=config.speech_dim or full.speech_dim, name=name)


def _size(n: int) -> str:
    """Bytes as GB (or MB below 0.1 GB)."""
    return f"{n / GB:.1f} GB" if n >= GB / 10 else f"{n / 10**6:.1f} MB"


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", torch.float64: "fp64"}.get(
        dtype, str(dtype).replace("torch.", ""))


def storage_bytes(shapes: dict[str, tuple[int, ...]], dtype: torch.dtype, scaled: set[str] = frozenset()) -> int:
    """Bytes the weights take once converted to ``dtype`` (``load_ovi_checkpoint``'s rule: with an
    fp8 dtype, weight matrices stay fp8 unless the file scales them, everything else is bf16).

    Args:
        shapes: ``{model key: shape}``.
        dtype: the storage dtype.
        scaled: model keys whose file tensor carries an fp8 scale (dequantised to bf16).
    """
    total = 0
    for k, s in shapes.items():
        n = 1
        for d in s:
            n *= int(d)
        if dtype in _FP8:
            size = 1 if k.endswith(".weight") and len(s) >= 2 and k not in scaled else 2
        else:
            size = torch.empty((), dtype=dtype).element_size()
        total += n * size
    return total


@dataclass
class FullSizeReport:
    """What the loader did with a full-size file, for the log and the node's report output."""

    files: str
    layout: str
    source: str
    architecture: str
    parameters: int
    weight_bytes: int
    storage: str
    compute: str
    conversion: ConversionReport
    harmony_only: str
    memory: str = ""

    def describe(self) -> str:
        """A few readable lines."""
        params = f"{self.parameters / 1e9:.2f} B" if self.parameters >= 1e8 else f"{self.parameters / 1e6:.1f} M"
        lines = [
            f"{self.files}: {self.layout} layout (architecture read from its {self.source}) -> {self.architecture}, "
            f"{params} parameters",
            f"weights: {_size(self.weight_bytes)} stored as {self.storage}, computed in {self.compute}",
            f"conversion: {self.conversion.loaded} tensors loaded, {len(self.conversion.renamed)} renamed, "
            f"{len(self.conversion.dequantised)} scaled fp8 weights dequantised, "
            f"{len(self.conversion.ignored)} quantisation side keys dropped",
            self.harmony_only,
        ]
        if self.memory:
            lines.append(self.memory)
        return "\n".join(lines)


def _harmony_only_sentence(layout: str, architecture: str, initialised: list[str]) -> str:
    mods = sorted({k.split(".blocks.")[-1].split(".")[1] if ".blocks." in k else k.split(".")[1]
                   for k in initialised})
    if initialised:
        return (f"Harmony-only modules: {len(initialised)} tensors ({', '.join(mods)}) are not in the file and "
                "start at their initialisation, whose output projections are zero: the model computes exactly "
                "what the file's model computes (an Ovi file behaves exactly as Ovi) until they are fine-tuned. "
                "The transcript path stays unused without a transcript encoder.")
    if layout.startswith("ovi"):
        return ("Harmony-only modules (GLDI local A2V / V2A attention, global style, transcript path): not in this "
                "Ovi file and not added (architecture 'from file'): it runs exactly as Ovi. Choose architecture "
                "'harmony' to add them zero-initialised (same output, +GLDI weights).")
    return "Harmony-only modules: as stored in the file."


def _check_keys(config: HarmonyConfig, shapes: dict[str, tuple[int, ...]], prefix: str, allow_extra: bool,
                detected: Any, node: str) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """Strict key check before reading any tensor; returns the model's ``{key: shape}`` and the
    model keys whose file weight is scaled fp8."""
    model = HarmonyDiT(config, device="meta", init_weights=False)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found, scaled = {}, set()
    for k, s in shapes.items():
        key = k[len(prefix):] if k.startswith(prefix) else k
        if is_quant_key(key):
            if key.endswith(_SCALES):
                scaled.add(to_harmony_key(key.rsplit(".", 1)[0] + ".weight"))
            continue
        found[to_harmony_key(key)] = s
    report = key_report(expected, found)
    missing = [k for k in report.missing if not (allow_extra and is_harmony_only_key(k))]
    if missing or report.unexpected or report.mismatched:
        report.missing = missing
        names = " + ".join(repr(os.path.basename(p)) for p in detected.paths)
        raise ValueError(
            f"{node}: {names} ({detected.layout} layout) does not fit the architecture read from its "
            f"{detected.source} ({config.name}): {report.describe(limit=6)}. The file is incomplete or damaged "
            "(compare its size with the download page and download it again), or its parts do not belong together."
        )
    return expected, scaled


def _file_dtype(dtypes: dict[str, str], shapes: dict[str, tuple[int, ...]]) -> torch.dtype | None:
    """The dtype holding most of the file's parameters."""
    count: dict[str, int] = {}
    for k, d in dtypes.items():
        if not is_quant_key(k):
            n = 1
            for s in shapes[k]:
                n *= int(s)
            count[d] = count.get(d, 0) + n
    return _FILE_DTYPES.get(max(count, key=count.get)) if count else None


def _free_memory(device: Any) -> int | None:
    fn = getattr(mm, "get_free_memory", None)
    try:
        return int(fn(device)) if fn is not None else None
    except Exception:  # a backend without memory stats: skip the check, ComfyUI reports real OOMs
        return None


def build_converted(detected: Any, weight_dtype: str, architecture: str, *, node: str, disable_dynamic: bool,
                    make_patcher: Callable[[Any, Any, Any, bool], Any]) -> tuple[Any, FullSizeReport]:
    """A ModelPatcher for a full-size DiT (``detected.kind == "dit"``), and its report.

    Raises:
        ValueError: keys that do not fit (listed), an unknown weight dtype.
        MemoryError: the converted weights do not fit the free memory of the offload device.
    """
    config = detected.config
    if architecture == "harmony":
        config = with_harmony_modules(config)
    shapes, dtypes = read_header(detected.paths)
    expected, scaled = _check_keys(config, shapes, detected.dit_prefix, architecture == "harmony", detected, node)
    n_params = sum(int(torch.Size(s).numel()) for s in expected.values())
    hcfg = HarmonyModelConfig(config)
    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    dtype = WEIGHT_DTYPES[weight_dtype]
    if dtype is None:
        dtype = mm.unet_dtype(model_params=n_params, supported_dtypes=hcfg.supported_inference_dtypes,
                              weight_dtype=_file_dtype(dtypes, shapes))
    compute = mm.unet_manual_cast(dtype, load_device, hcfg.supported_inference_dtypes)
    need = storage_bytes(expected, dtype, scaled)
    free = _free_memory(offload_device)
    if free is not None and need > free:
        cheaper = {k: storage_bytes(expected, v, scaled) for k, v in WEIGHT_DTYPES.items()
                   if v is not None and v != dtype}
        best = min(cheaper, key=cheaper.get)
        raise MemoryError(
            f"{node}: the weights need {_size(need)} at weight_dtype={weight_dtype!r} ({_dtype_name(dtype)}) but "
            f"only {_size(free)} is free on {offload_device}, where ComfyUI keeps them. Choose "
            f"weight_dtype={best!r} ({_size(cheaper[best])}), or free memory (close other programs, or unload "
            "models with the 'Unload Models' button) and queue again."
        )
    dit, conversion = load_ovi_checkpoint(list(detected.paths), preset=config, device="cpu", dtype=dtype, seed=0)
    hcfg.set_inference_dtype(dtype, compute)
    model = hcfg.get_model({}, "", device="meta")
    model.diffusion_model.dit.load_state_dict(dit.state_dict(), strict=True, assign=True)
    del dit
    left = [n for n, p in model.named_parameters() if p.is_meta]
    assert not left, f"parameters left on meta: {left[:5]}"
    model.device = None  # built on meta; the patcher records the real device
    archive = getattr(mm, "archive_model_dtypes", None)
    if archive is not None:  # fp8 storage keeps non-matrix tensors in bf16: record the real dtypes
        archive(model.diffusion_model)
    patcher = make_patcher(model, load_device, offload_device, disable_dynamic)
    if not mm.is_device_cpu(offload_device):
        model.to(offload_device)
    stored = sum(p.numel() * p.element_size() for p in model.diffusion_model.parameters())
    kinds = sorted({_dtype_name(p.dtype) for p in model.diffusion_model.parameters()})
    report = FullSizeReport(
        files=" + ".join(os.path.basename(p) for p in detected.paths), layout=detected.layout,
        source=detected.source, architecture=config.name, parameters=n_params, weight_bytes=stored,
        storage=" + ".join(kinds), compute=_dtype_name(compute or dtype), conversion=conversion,
        harmony_only=_harmony_only_sentence(detected.layout, architecture, conversion.initialised),
        memory=native_clip_line(config, dtype, compute, _free_memory(load_device)),
    )
    return patcher, report
