"""ComfyUI adapters of the Harmony pack: the only modules that import ``comfy``, ``folder_paths``
and ``latent_preview``. They convert between ComfyUI's types and ``harmony_core`` and hold no
maths of their own."""

from __future__ import annotations
