"""Safetensors checkpoints: atomic writes, strict key checks with a readable report, the DiT file
and the bundle that ships a whole model (DiT + VAEs + transcript encoder).

Files are written to a temporary file in the destination folder and renamed over the target, so a
crash never leaves a half-written checkpoint. Every file stores its config as JSON in the
safetensors metadata; loading rebuilds the architecture from it, on the ``meta`` device when
possible, and assigns the stored tensors, so peak host memory stays near one copy of the weights.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..config import HarmonyConfig

__all__ = [
    "KeyReport",
    "key_report",
    "atomic_save_file",
    "read_metadata",
    "load_tensors",
    "load_state_strict",
    "save_dit",
    "load_dit",
    "DIT_FORMAT",
]

log = logging.getLogger(__name__)

DIT_FORMAT = "harmony-dit/1"


@dataclass
class KeyReport:
    """Differences between a module's parameters and a state dict."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # key, model, file

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 20) -> str:
        parts = []
        for title, items in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("mis-shaped", [f"{k}: model {m} vs file {f}" for k, m, f in self.mismatched]),
        ):
            if items:
                shown = ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
                parts.append(f"{len(items)} {title} key(s): {shown}")
        return "; ".join(parts) if parts else "all keys match"


def key_report(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]) -> KeyReport:
    """Compare expected ``{key: shape}`` with found ``{key: shape}``."""
    return KeyReport(
        missing=sorted(set(expected) - set(found)),
        unexpected=sorted(set(found) - set(expected)),
        mismatched=sorted(
            (k, tuple(expected[k]), tuple(found[k]))
            for k in set(expected) & set(found)
            if tuple(expected[k]) != tuple(found[k])
        ),
    )


def atomic_save_file(
    tensors: dict[str, torch.Tensor], path: str | os.PathLike[str], metadata: dict[str, str] | None = None
) -> None:
    """``safetensors.torch.save_file`` through a temporary file and an atomic rename."""
    from safetensors.torch import save_file

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".safetensors", dir=folder)
    os.close(fd)
    try:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The safetensors header metadata of ``path`` (no tensor is read)."""
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist; check the path.")
    try:
        with safe_open(path, framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types for a corrupt header
        raise ValueError(f"{path!r} is not a readable safetensors file ({e}); re-download or re-save it.") from e


def load_tensors(
    path: str | os.PathLike[str],
    *,
    prefix: str = "",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file (those under ``prefix``, with the prefix removed)."""
    from safetensors import safe_open

    out = {}
    with safe_open(os.fspath(path), framework="pt", device=str(device)) as f:
        for key in f.keys():
            if key.startswith(prefix):
                t = f.get_tensor(key)
                out[key[len(prefix) :]] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
    return out


def load_state_strict(
    module: nn.Module,
    state: dict[str, torch.Tensor],
    *,
    source: str,
    allow_missing: Callable[[str], bool] | None = None,
    assign: bool = False,
) -> KeyReport:
    """Load ``state`` into ``module``; any unexpected or mis-shaped key, or a missing key that
    ``allow_missing`` does not excuse, raises a ``ValueError`` listing them all."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    report = key_report(expected, {k: tuple(v.shape) for k, v in state.items()})
    excused = [k for k in report.missing if allow_missing is not None and allow_missing(k)]
    hard = KeyReport([k for k in report.missing if k not in excused], report.unexpected, report.mismatched)
    if not hard.ok:
        raise ValueError(
            f"{source} does not fit {type(module).__name__}: {hard.describe()}. It was written for a "
            f"different architecture or config; load it with the matching preset or converter."
        )
    module.load_state_dict(state, strict=False, assign=assign)
    if excused:
        log.info(
            "%s: %d parameters absent from the file keep their initial values (%s...)",
            source,
            len(excused),
            ", ".join(excused[:3]),
        )
    return report


def save_dit(
    path: str | os.PathLike[str], model: nn.Module, *, extra_metadata: dict[str, Any] | None = None, prefix: str = ""
) -> None:
    """Write a ``HarmonyDiT`` with its config in the metadata."""
    meta = {"format": DIT_FORMAT, "config": model.config.to_json()}
    for k, v in (extra_metadata or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    atomic_save_file({prefix + k: v for k, v in model.state_dict().items()}, path, meta)


def _build_dit(
    config: HarmonyConfig, *, device: str | torch.device, dtype: torch.dtype | None, operations: Any, attention: Any
) -> nn.Module:
    from ..model.dit import HarmonyDiT

    return HarmonyDiT(
        config, operations=operations, attention=attention, device="meta", dtype=dtype, init_weights=False
    )


def load_dit(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    operations: Any = None,
    attention: Any = None,
    prefix: str = "",
    config_key: str = "config",
) -> nn.Module:
    """Load a ``HarmonyDiT`` written by ``save_dit`` (or a bundle, with ``prefix="dit."`` and
    ``config_key="dit_config"``): architecture from the metadata, strict keys, built on ``meta``
    and filled by assignment."""
    meta = read_metadata(path)
    if config_key not in meta:
        raise ValueError(
            f"{os.fspath(path)!r} has no '{config_key}' in its metadata, so it is not a harmony_core "
            f"checkpoint. Ovi or Wan files need the converter in harmony_core.io."
        )
    config = HarmonyConfig.from_json(meta[config_key])
    model = _build_dit(config, device=device, dtype=dtype, operations=operations, attention=attention)
    state = load_tensors(path, prefix=prefix, device=device, dtype=dtype)
    load_state_strict(model, state, source=os.fspath(path), assign=True)
    return model.eval()


def iter_prefixed(state: dict[str, torch.Tensor], prefix: str) -> Iterable[tuple[str, torch.Tensor]]:
    return ((prefix + k, v) for k, v in state.items())
