"""The synthetic clip families. Each module offers ``sample``, ``check``, ``script`` and ``render``.

* ``sample(rng, seconds) -> dict``: random JSON-serialisable parameters.
* ``check(params)``: raise ValueError for values the renderer cannot honour.
* ``script(params, seconds) -> Script``: caption, transcript and exact events, without rendering.
* ``render(params, geometry, rng, image) -> (frames [T, H, W, 3], mix [S])``: pixels and sound.
"""

from __future__ import annotations

from types import ModuleType

from . import ball, drum, face, flash
from ._common import Geometry, Script

__all__ = ["REGISTRY", "Geometry", "Script"]

REGISTRY: dict[str, ModuleType] = {"ball": ball, "face": face, "flash": flash, "drum": drum}
