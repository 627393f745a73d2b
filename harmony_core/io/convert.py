"""Load Ovi and stock Wan2.2 DiT checkpoints into ``HarmonyDiT`` (and convert key names both ways).

Key tables (verified against the full list of Ovi's checkpoint keys generated from Ovi's own code,
``tests/fixtures/ovi/full_keys.json.gz``):

* Ovi -> Harmony: identical names except the per-block AdaLN table, which Ovi wraps in a
  ``ModulationAdd`` module: ``{tower}.blocks.N.modulation.modulation`` -> ``{tower}.blocks.N.modulation``.
* stock Wan2.2 (single tower, e.g. TI2V-5B) -> Harmony: every key gains the ``video_model.`` prefix.
  Wan has no audio tower and no fusion layers (verified against Wan2.2's own key list,
  ``tests/fixtures/ovi/wan22_ti2v_5b_keys.json.gz``).
* split Ovi (video tower under Wan names with the fusion layers, plus an ``audio_model.*`` file, as
  ComfyUI-WanVideoWrapper distributes Ovi): both tables at once; pass the files together.
* wrapper prefixes (``model.diffusion_model.``, ``module.``) are stripped.
* Harmony-only parameters (GLDI ``a2v``/``v2a``/``style`` and the transcript ``speech_embedding``)
  have no counterpart in either; loading Ovi into ``harmony-full`` initialises them with
  ``HarmonyDiT.init_weights`` semantics, whose zero output projections keep the model equal to Ovi.

Precision: ``dtype`` is the storage dtype. A float dtype casts every tensor; fp8 tensors with a
per-tensor (or per-output-channel) scale (``*.scale_weight`` as ComfyUI's legacy scaled-fp8 files,
or ``*.weight_scale``) are dequantised exactly (``w.float() * scale``) first. An fp8 ``dtype`` keeps
Linear/Conv weight matrices in fp8 and everything else in bfloat16 (the compute dtype); scaled fp8
weights are then dequantised to bfloat16 rather than kept in fp8, because neither ``torch.nn`` nor
ComfyUI's manual-cast layers would apply a separate scale at run time (correct maths first; use a
float dtype, or ComfyUI's own loader, to control memory). fp8 storage needs operations that
up-cast weights per layer (ComfyUI's ``comfy.ops``); plain ``torch.nn`` layers refuse fp8 weights.

Memory: the model is built on the ``meta`` device and each tensor is converted as it is read, then
assigned, so peak host memory is about one copy of the weights.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..config import HarmonyConfig, get_preset
from ..model.dit import HarmonyDiT
from .checkpoints import key_report
from .detect import detect_architecture, detect_layout, is_quant_key, wrapper_prefix

__all__ = [
    "ConversionReport",
    "ovi_key_to_harmony",
    "harmony_key_to_ovi",
    "wan_key_to_harmony",
    "to_harmony_key",
    "harmony_key_to_wan",
    "is_harmony_only_key",
    "is_fusion_key",
    "ovi_to_harmony_state",
    "harmony_to_ovi_state",
    "wan_to_harmony_state",
    "harmony_to_wan_state",
    "read_checkpoint_shapes",
    "load_ovi_checkpoint",
]

log = logging.getLogger(__name__)

FLOAT8 = (torch.float8_e4m3fn, torch.float8_e5m2)
_COMPUTE = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_OVI_MOD = re.compile(r"^(video_model|audio_model)\.blocks\.(\d+)\.modulation\.modulation$")
_OURS_MOD = re.compile(r"^(video_model|audio_model)\.blocks\.(\d+)\.modulation$")
_HARMONY_ONLY = re.compile(
    r"^audio_model\.speech_embedding\.|^(video_model|audio_model)\.blocks\.\d+\.(a2v|v2a|style)\."
)
_FUSION = re.compile(
    r"^(video_model|audio_model)\.blocks\.\d+\.cross_attn\.(k_fusion|v_fusion|pre_attn_norm_fusion|norm_k_fusion)\."
)
_SCALE_SUFFIXES = (".scale_weight", ".weight_scale")


# ---------------------------------------------------------------------------------------------
# Key tables
# ---------------------------------------------------------------------------------------------


def ovi_key_to_harmony(key: str) -> str:
    """Ovi ``FusionModel`` key -> ``HarmonyDiT`` key."""
    return _OVI_MOD.sub(r"\1.blocks.\2.modulation", key)


def harmony_key_to_ovi(key: str) -> str:
    """``HarmonyDiT`` key -> Ovi key (the inverse of ``ovi_key_to_harmony``)."""
    return _OURS_MOD.sub(r"\1.blocks.\2.modulation.modulation", key)


def wan_key_to_harmony(key: str) -> str:
    """Stock Wan2.2 single-tower key -> the ``HarmonyDiT`` video tower key."""
    return "video_model." + key


def to_harmony_key(key: str) -> str:
    """Any supported layout's key (wrapper prefix removed) -> ``HarmonyDiT`` key.

    Keys without a tower prefix belong to the video tower (stock Wan2.2, or the video file of a split
    Ovi checkpoint); Ovi's wrapped AdaLN tables are unwrapped; Harmony keys pass unchanged.
    """
    if not key.startswith(("video_model.", "audio_model.")):
        key = wan_key_to_harmony(key)
    return ovi_key_to_harmony(key)


def harmony_key_to_wan(key: str) -> str | None:
    """``HarmonyDiT`` key -> stock Wan2.2 key, or None for keys Wan has no place for (audio tower,
    fusion, GLDI, transcript)."""
    if not key.startswith("video_model.") or is_fusion_key(key) or is_harmony_only_key(key):
        return None
    return key[len("video_model.") :]


def is_harmony_only_key(key: str) -> bool:
    """True for parameters only Harmony has (GLDI ``a2v``/``v2a``/``style``, ``speech_embedding``)."""
    return bool(_HARMONY_ONLY.match(key))


def is_fusion_key(key: str) -> bool:
    """True for Ovi's global-fusion parameters (``cross_attn.{k,v}_fusion``, their norms)."""
    return bool(_FUSION.match(key))


def ovi_to_harmony_state(state: dict[str, Any]) -> dict[str, Any]:
    """Rename an Ovi state dict to ``HarmonyDiT`` names (values untouched)."""
    return {ovi_key_to_harmony(k): v for k, v in state.items()}


def wan_to_harmony_state(state: dict[str, Any]) -> dict[str, Any]:
    """Rename a stock Wan2.2 state dict to the ``HarmonyDiT`` video tower (values untouched)."""
    return {wan_key_to_harmony(k): v for k, v in state.items()}


def harmony_to_ovi_state(state: dict[str, Any], *, drop_extra: bool = False) -> dict[str, Any]:
    """Rename a ``HarmonyDiT`` state dict to Ovi's names (for Ovi's own code or other Ovi tools).

    Args:
        state: ``HarmonyDiT.state_dict()``.
        drop_extra: drop Harmony-only parameters (GLDI, transcript) instead of failing.

    Raises:
        ValueError: when Harmony-only parameters are present and ``drop_extra`` is False.
    """
    extra = [k for k in state if is_harmony_only_key(k)]
    if extra and not drop_extra:
        raise ValueError(
            f"{len(extra)} Harmony-only parameter(s) have no place in an Ovi checkpoint (e.g. {extra[0]}). "
            "Pass drop_extra=True to write Ovi's subset (the GLDI and transcript modules are then lost)."
        )
    return {harmony_key_to_ovi(k): v for k, v in state.items() if not is_harmony_only_key(k)}


def harmony_to_wan_state(state: dict[str, Any], *, drop_extra: bool = False) -> dict[str, Any]:
    """The video tower of a ``HarmonyDiT`` state dict under stock Wan2.2 names.

    Raises:
        ValueError: when the state holds anything but a plain Wan video tower and ``drop_extra``
            is False (audio tower, fusion, GLDI, transcript).
    """
    out = {w: v for k, v in state.items() if (w := harmony_key_to_wan(k)) is not None}
    dropped = len(state) - len(out)
    if dropped and not drop_extra:
        extra = next(k for k in state if harmony_key_to_wan(k) is None)
        raise ValueError(
            f"{dropped} parameter(s) have no place in a stock Wan2.2 checkpoint (e.g. {extra}). "
            "Pass drop_extra=True to export only the video tower."
        )
    return out


# ---------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------


def _is_safetensors(path: str) -> bool:
    return path.endswith(".safetensors") or path.endswith(".sft")


def _torch_state(path: str) -> dict[str, torch.Tensor]:
    import pickle

    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except (RuntimeError, ValueError):  # old (non-zip) serialisation cannot be memory-mapped
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path!r} holds Python objects besides tensors, which are not loaded for safety (weights_only=True): "
            f"{e}. Re-save only the state dict (torch.save(model.state_dict(), path)) or convert it to safetensors."
        ) from e
    for nest in (("state_dict",), ("module",), ("model",), ("app", "model")):  # common training wrappers
        cur = obj
        for n in nest:
            cur = cur.get(n) if isinstance(cur, dict) else None
        if isinstance(cur, dict) and cur and all(isinstance(v, torch.Tensor) for v in cur.values()):
            return cur
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    raise ValueError(f"{path!r} does not hold a state dict of tensors; save the DiT weights with torch.save(sd).")


@dataclass
class _Source:
    """One checkpoint file: its key shapes, wrapper prefix and (for torch files) loaded state."""

    path: str
    shapes: dict[str, tuple[int, ...]]
    prefix: str
    state: dict[str, torch.Tensor] | None = None

    @classmethod
    def open(cls, path: str) -> _Source:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint {path!r} does not exist; check the path.")
        state = None
        if _is_safetensors(path):
            from safetensors import safe_open

            with safe_open(path, framework="pt") as f:
                shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        else:  # memory-mapped: tensors are only read when converted
            state = _torch_state(path)
            shapes = {k: tuple(v.shape) for k, v in state.items()}
        return cls(path, shapes, wrapper_prefix(shapes), state)

    def strip(self, key: str) -> str:
        return key[len(self.prefix) :] if key.startswith(self.prefix) else key

    def tensors(self, keys: list[str], device: str | torch.device) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield ``(file key, tensor)`` one at a time (safetensors reads each on demand)."""
        if self.state is not None:
            for k in keys:
                yield k, self.state[k].to(device)
            return
        from safetensors import safe_open

        with safe_open(self.path, framework="pt", device=str(device)) as f:
            for k in keys:
                yield k, f.get_tensor(k)


def read_checkpoint_shapes(path: str | os.PathLike[str]) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of a checkpoint; reads only the header of a safetensors file."""
    return _Source.open(os.fspath(path)).shapes


# ---------------------------------------------------------------------------------------------
# Precision
# ---------------------------------------------------------------------------------------------


def _dequantise(w: torch.Tensor, scale: torch.Tensor, key: str) -> torch.Tensor:
    s = scale.float()
    if s.numel() == 1:
        return w.float() * s.reshape(())
    if s.numel() == w.shape[0]:  # per output channel
        return w.float() * s.reshape(-1, *([1] * (w.dim() - 1)))
    raise ValueError(
        f"scale of '{key}' has {s.numel()} values: expected 1 (per tensor) or {w.shape[0]} (per output channel) "
        f"for a weight of shape {tuple(w.shape)}. This quantisation scheme is not supported; use a bf16 file."
    )


def _store(
    t: torch.Tensor, key: str, scale: torch.Tensor | None, dtype: torch.dtype | None
) -> tuple[torch.Tensor, bool]:
    """The tensor as it will be stored in the model, and whether a scale was multiplied out."""
    if not t.is_floating_point():
        raise ValueError(f"'{key}' has dtype {t.dtype}: expected a floating-point parameter.")
    deq = scale is not None
    if deq:
        t = _dequantise(t, scale, key)
    if dtype is None:  # as stored; dequantised fp8 and non-matrix fp8 become the compute dtype bf16
        if deq or (t.dtype in FLOAT8 and not _is_matrix(key, t)):
            return t.to(torch.bfloat16), deq
        return t, deq
    if dtype in FLOAT8:
        if not _is_matrix(key, t) or deq:
            return t.to(torch.bfloat16), deq
        if t.dtype == dtype:
            return t, deq
        lim = torch.finfo(dtype).max  # fp8 has no inf: out-of-range values would become NaN
        return t.float().clamp_(-lim, lim).to(dtype), deq
    return t.to(dtype), deq


def _is_matrix(key: str, t: torch.Tensor) -> bool:
    return key.endswith(".weight") and t.dim() >= 2


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


@dataclass
class ConversionReport:
    """What ``load_ovi_checkpoint`` did.

    Attributes:
        source: the file(s), joined by " + ".
        layout: ``"ovi"``, ``"ovi-split"``, ``"wan"`` or ``"harmony"``.
        config_name: the architecture the file was loaded into.
        renamed: ``(file key, model key)`` for every key whose name changed (wrapper prefixes included).
        loaded: number of parameters read from the file.
        initialised: model parameters the file does not have, initialised with
            ``HarmonyDiT.init_weights`` semantics (GLDI / transcript modules; a fresh audio tower).
        dequantised: fp8 weights whose scales were multiplied out on load.
        ignored: quantisation side keys consumed or dropped (scales, input scales, markers).
        dtype: storage dtype requested ("as stored" when none was).
    """

    source: str
    layout: str
    config_name: str
    renamed: list[tuple[str, str]] = field(default_factory=list)
    loaded: int = 0
    initialised: list[str] = field(default_factory=list)
    dequantised: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    dtype: str = "as stored"

    def describe(self) -> str:
        """One readable paragraph for logs and UIs."""
        parts = [
            f"{self.source}: {self.layout} layout -> {self.config_name}; {self.loaded} tensors loaded "
            f"({len(self.renamed)} renamed), dtype {self.dtype}"
        ]
        if self.initialised:
            mods = sorted({_module_of(k) for k in self.initialised})
            parts.append(
                f"{len(self.initialised)} parameters initialised fresh ({', '.join(mods[:6])}"
                f"{', ...' if len(mods) > 6 else ''})"
            )
        if self.dequantised:
            parts.append(f"{len(self.dequantised)} scaled fp8 weights dequantised")
        if self.ignored:
            parts.append(f"{len(self.ignored)} quantisation side keys dropped")
        return "; ".join(parts)


def _module_of(key: str) -> str:
    """``video_model.blocks.7.a2v.q.weight`` -> ``video_model.blocks.N.a2v`` (for summaries)."""
    parts = re.sub(r"\.blocks\.\d+\.", ".blocks.N.", key).split(".")
    return ".".join(parts[:4] if parts[1] == "blocks" else parts[:2])


def _resolve_config(preset: str | HarmonyConfig, shapes: dict[str, tuple[int, ...]]) -> HarmonyConfig:
    if isinstance(preset, HarmonyConfig):
        return preset
    if not isinstance(preset, str):
        raise TypeError(f"preset={preset!r} must be a preset name, 'auto' or a HarmonyConfig.")
    if preset == "auto":
        return detect_architecture(shapes).to_config()
    return get_preset(preset)


def _allowed_missing(layout: str, init_missing_audio: bool) -> Callable[[str], bool]:
    def allowed(key: str) -> bool:
        if layout == "harmony":
            return False
        if is_harmony_only_key(key):
            return True
        return layout == "wan" and init_missing_audio and (key.startswith("audio_model.") or is_fusion_key(key))

    return allowed


def _missing_hint(layout: str, missing: list[str], shapes: dict[str, tuple[int, ...]]) -> str:
    if layout != "wan" or not any(k.startswith("audio_model.") for k in missing):
        return ""
    if any(".cross_attn.k_fusion." in k for k in shapes):
        return (
            " This looks like the video half of a split Ovi checkpoint (it has fusion layers): pass the video and "
            "the audio file together, path=[video_file, audio_file]."
        )
    return (
        " A stock Wan2.2 file has only the video tower: pass init_missing_audio=True to start the audio tower "
        "and the fusion layers from scratch."
    )


def load_ovi_checkpoint(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    preset: str | HarmonyConfig = "ovi",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    init_missing_audio: bool = False,
    operations: Any = None,
    attention: Any = None,
    seed: int = 0,
) -> tuple[HarmonyDiT, ConversionReport]:
    """Load an Ovi fusion checkpoint (or a stock Wan2.2 DiT, or a Harmony DiT) into ``HarmonyDiT``.

    Args:
        path: ``.safetensors`` (read tensor by tensor) or a ``torch.save`` file (``.pt``/``.pth``/
            ``.bin``, read with ``weights_only=True``); or several files holding the parts of one
            model (e.g. a split Ovi checkpoint: a Wan-named video file with fusion layers plus an
            ``audio_model.*`` file, as ComfyUI-WanVideoWrapper distributes it).
        preset: target architecture: a preset name ("ovi", "harmony-full", ...), "auto" (from the
            file's shapes) or a ``HarmonyConfig``. Its tower shapes must match the file.
        device: where the weights go.
        dtype: storage dtype (float32 / bfloat16 / float16 / float8_e4m3fn / float8_e5m2), or None
            for the file's own (see the module docstring for fp8 and scaled fp8).
        init_missing_audio: for a single-tower Wan file, initialise the audio tower and the fusion
            layers fresh instead of failing (e.g. to start a Harmony model from Wan2.2).
        operations, attention: injected into ``HarmonyDiT`` (ComfyUI passes its own).
        seed: seed of the initialisation of parameters the file does not have (their values
            depend on the seed and on the compute dtype they are drawn in).

    Returns:
        ``(model, report)``: the model in eval mode, and what was converted / initialised.

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: unknown layout; missing, unexpected or mis-shaped keys (all listed); a key in
            two files; a Wan file without ``init_missing_audio``; an unsupported quantisation scale.
    """
    paths = [os.fspath(p) for p in path] if isinstance(path, (list, tuple)) else [os.fspath(path)]
    if dtype is not None and dtype not in _COMPUTE + FLOAT8:
        raise ValueError(f"dtype={dtype} is not supported: expected float32, bfloat16, float16 or an fp8 dtype.")
    sources = [_Source.open(p) for p in paths]
    entries: dict[str, tuple[_Source, str]] = {}  # key without wrapper prefix -> (file, key in file)
    for src in sources:
        for k in src.shapes:
            key = src.strip(k)
            if key in entries:
                if is_quant_key(key) and not key.endswith(_SCALE_SUFFIXES):
                    continue  # a format marker (e.g. 'scaled_fp8') in each part
                raise ValueError(f"'{key}' is in both {entries[key][0].path!r} and {src.path!r}; pass each part once.")
            entries[key] = (src, k)
    shapes = {k: src.shapes[fk] for k, (src, fk) in entries.items()}
    layout = detect_layout(shapes)
    config = _resolve_config(preset, shapes)

    mapping: dict[str, str] = {}  # parameter key -> model key
    scales: dict[str, str] = {}  # parameter key -> its scale key
    ignored: list[str] = []
    for k in shapes:
        if not is_quant_key(k):
            mapping[k] = to_harmony_key(k)
        elif k.endswith(_SCALE_SUFFIXES):
            scales[k.rsplit(".", 1)[0] + ".weight"] = k
        else:
            ignored.append(k)
    orphans = [s for w, s in scales.items() if w not in mapping]
    if orphans:
        raise ValueError(f"{len(orphans)} weight scale(s) have no weight (e.g. {orphans[0]}); the file is damaged.")
    ignored += list(scales.values())

    model = HarmonyDiT(config, operations=operations, attention=attention, device="meta", init_weights=False)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    report = key_report(expected, {m: shapes[k] for k, m in mapping.items()})
    allowed = _allowed_missing(layout, init_missing_audio)
    hard_missing = [k for k in report.missing if not allowed(k)]
    if hard_missing or report.unexpected or report.mismatched:
        report.missing = hard_missing
        raise ValueError(
            f"{' + '.join(repr(p) for p in paths)} ({layout} layout) does not fit the '{config.name}' architecture: "
            f"{report.describe()}.{_missing_hint(layout, hard_missing, shapes)} Choose the preset the checkpoint "
            f"was made for, or preset='auto'."
        )

    out = ConversionReport(
        source=" + ".join(paths),
        layout=layout,
        config_name=config.name,
        ignored=sorted(ignored),
        dtype=str(dtype).replace("torch.", "") if dtype is not None else "as stored",
    )
    scale_vals = {}
    for src in sources:
        wanted = [fk for s in scales.values() for (owner, fk) in [entries[s]] if owner is src]
        scale_vals.update({src.strip(fk): t for fk, t in src.tensors(wanted, device)})
    state: dict[str, torch.Tensor] = {}
    for src in sources:
        wanted = [fk for k in mapping for (owner, fk) in [entries[k]] if owner is src]
        for fk, t in src.tensors(wanted, device):
            k = src.strip(fk)
            name = mapping[k]
            state[name], deq = _store(t, name, scale_vals.get(scales.get(k, "")), dtype)
            if deq:
                out.dequantised.append(name)
            if name != fk:
                out.renamed.append((fk, name))
    # parameters absent from the file get the dtype the loaded ones are computed in
    ref = state["video_model.patch_embedding.weight"].dtype
    init_dtype = dtype if dtype is not None else (ref if ref in _COMPUTE else torch.bfloat16)
    _init_missing(model, report.missing, device, seed, init_dtype)
    out.initialised = list(report.missing)
    model.load_state_dict(state, strict=False, assign=True)
    out.loaded = len(state)
    still_meta = [n for n, p in model.named_parameters() if p.is_meta]
    assert not still_meta, f"parameters left on meta: {still_meta[:5]}"
    if out.initialised:
        log.info("%s", out.describe())
    return model.eval(), out


def _init_missing(
    model: HarmonyDiT,
    missing: list[str],
    device: str | torch.device,
    seed: int,
    dtype: torch.dtype,
) -> None:
    """Materialise only the ``missing`` parameters and run ``init_weights`` over the whole model:
    every other parameter is still on ``meta``, where the initialisers do nothing, so exactly the
    missing ones get Harmony's initialisation (zero GLDI output projections, fusion Linears / 10).

    They are created on the CPU (the seeded generator is a CPU one) in the compute dtype, then
    stored like loaded tensors (fp8 for matrices when ``dtype`` is fp8) and moved to ``device``."""
    if not missing:
        return
    init_dtype = dtype if dtype in _COMPUTE else torch.bfloat16
    for key in missing:
        mod_name, _, attr = key.rpartition(".")
        mod = model.get_submodule(mod_name)
        setattr(mod, attr, nn.Parameter(torch.empty(getattr(mod, attr).shape, dtype=init_dtype)))
    model.init_weights(generator=torch.Generator().manual_seed(seed))
    for key in missing:
        mod_name, _, attr = key.rpartition(".")
        mod = model.get_submodule(mod_name)
        stored, _ = _store(getattr(mod, attr).detach(), key, None, dtype)
        setattr(mod, attr, nn.Parameter(stored.to(device)))
