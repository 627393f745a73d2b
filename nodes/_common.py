"""Helpers shared by the node modules."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from comfy_api.latest import io

__all__ = ["node_errors", "schema", "ADVANCED"]

# Schema and input features newer than our minimum ComfyUI (0.8.0) are passed only where they
# exist: ``advanced`` widgets arrived in 0.10.0, ``search_aliases`` in 0.11.0.
_SCHEMA_FIELDS = {f.name for f in dataclasses.fields(io.Schema)} if dataclasses.is_dataclass(io.Schema) else None
try:
    _HAS_ADVANCED = "advanced" in inspect.signature(io.Float.Input.__init__).parameters
except (TypeError, ValueError):
    _HAS_ADVANCED = False
ADVANCED: dict[str, Any] = {"advanced": True} if _HAS_ADVANCED else {}


def schema(**kwargs: Any) -> io.Schema:
    """``io.Schema(**kwargs)`` without the fields this ComfyUI does not know yet."""
    if _SCHEMA_FIELDS is not None:
        kwargs = {k: v for k, v in kwargs.items() if k in _SCHEMA_FIELDS}
    return io.Schema(**kwargs)


@contextmanager
def node_errors(node: str) -> Iterator[None]:
    """Prefix errors raised inside a node with the node's display name (ComfyUI shows the message
    as is, so users see which node failed and why)."""
    try:
        yield
    except (ValueError, TypeError, FileNotFoundError) as e:
        msg = str(e)
        if msg.startswith(f"{node}:"):
            raise
        try:
            err = type(e)(f"{node}: {msg}")
        except Exception:
            err = ValueError(f"{node}: {msg}")
        raise err from e
