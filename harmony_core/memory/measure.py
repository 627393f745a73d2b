"""Measure the peak memory of tensors a piece of PyTorch code creates, on any device (CPU too).

CPU PyTorch has no allocator statistics, so ``LivePeak`` watches every ATen operation through a
``TorchDispatchMode``: each fresh output storage is recorded with a weak reference, storages whose
last reference died are dropped before the next operation is counted, and the running sum's
maximum is the peak. It sees what a GPU caching allocator would have to hold at once (live
tensors), without the allocator's rounding, fragmentation or cached-but-free blocks, and without
the scratch space inside a single kernel (a fused attention kernel's tiles, a convolution's
workspace). Tensors that existed before the context (weights, inputs) are not counted; views and
in-place results share their input's storage and are not counted twice.

This is the measurement the estimates in ``harmony_core.memory`` are checked against.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["LivePeak"]


class LivePeak(TorchDispatchMode):
    """Context manager tracking live bytes of tensors created inside it.

    Attributes:
        peak: the largest number of bytes alive at once (after any operation).
        current: bytes alive now.
        peak_op: name of the operation at which ``peak`` was reached (for diagnosis).

    Example::

        with torch.no_grad(), LivePeak() as m:
            out = model(x)
        print(m.peak)
    """

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[StorageWeakRef, int] = {}
        self.current = 0
        self.peak = 0
        self.peak_op = ""

    def _sweep(self) -> None:
        dead = [ref for ref in self._live if ref.expired()]
        for ref in dead:
            self.current -= self._live.pop(ref)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        self._sweep()
        inputs = {
            StorageWeakRef(t.untyped_storage())
            for t in tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor) and t.device.type != "meta"
        }
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            ref = StorageWeakRef(storage)
            if ref in inputs or ref in self._live:  # a view or an in-place result
                continue
            self._live[ref] = storage.nbytes()
            self.current += storage.nbytes()
        if self.current > self.peak:
            self.peak, self.peak_op = self.current, str(func)
        return out
