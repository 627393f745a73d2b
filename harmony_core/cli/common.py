"""Shared bits of the command-line tools: the default model, a tqdm progress callback."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_MODEL", "default_model_path", "progress_callback"]

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "harmony-tiny.safetensors"


def default_model_path() -> str:
    """The shipped model inside the package; a clear error if it is missing."""
    if not DEFAULT_MODEL.is_file():
        raise FileNotFoundError(
            f"the shipped model {DEFAULT_MODEL} is missing from this installation; pass --model PATH to a Harmony "
            f"bundle, or reinstall the package."
        )
    return os.fspath(DEFAULT_MODEL)


def progress_callback(total: int, desc: str, disable: bool = False) -> tuple[Callable[[dict[str, Any]], None], Any]:
    """A sampler callback that advances a tqdm bar; returns ``(callback, bar)`` (close the bar)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", disable=disable)
    return (lambda info: bar.update(1)), bar
