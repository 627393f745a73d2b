"""Device-memory estimates for Harmony runs: weights by dtype, activations by resolution and
duration, guidance passes batched or one at a time, and the text encoder and VAEs around the DiT.

The loader and the sampler use them to choose batched or sequential guidance passes
(``choose_batching``) and to fail before a run that would not fit (``check_fits`` raises
``InsufficientMemoryError`` naming the need, the free memory and the fixes). ``LivePeak`` measures
the live-tensor peak of real code on any device; the tests check the estimates against it.

``python -m harmony_core.memory --preset ovi --width 704 --height 704 --seconds 5`` prints a
breakdown.
"""

from __future__ import annotations

from .components import Components, default_components
from .dit import DTYPE_BYTES, activation_bytes, dit_params, dtype_name, weight_bytes
from .decide import InsufficientMemoryError, check_fits, choose_batching
from .estimate import OFFLOAD, MemoryEstimate, estimate_memory, forward_memory_fn
from .measure import LivePeak

__all__ = [
    "DTYPE_BYTES",
    "OFFLOAD",
    "Components",
    "InsufficientMemoryError",
    "LivePeak",
    "MemoryEstimate",
    "activation_bytes",
    "check_fits",
    "choose_batching",
    "default_components",
    "dit_params",
    "dtype_name",
    "estimate_memory",
    "forward_memory_fn",
    "weight_bytes",
]
