"""Multi-process training under ``torchrun``: process group, DDP / FSDP wrapping, batch sharding.

Launch with e.g. ``torchrun --nproc_per_node 8 -m harmony_core train ...``; ``torchrun`` sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. Without them
everything here degrades to a single process and no collective is called.

Sharding: every rank draws the *same* global batch (same seeded generators) and takes the disjoint
rows ``[rank*b, (rank+1)*b)``; with gradients averaged by DDP (or reduce-scattered by FSDP) the
update equals a single process training on the global batch.

Unused parameters: a module DDP never sees in the graph makes it wait forever for its gradient.
The trainer freezes modules that a run can never use (e.g. the style module when no batch has
reference audio, the video tower in audio pre-training) and passes ``find_unused_parameters=True``
only when a module is used in some steps and not in others (the style module when only some batches
carry a reference). Every rank agrees on those steps because the reference plan is drawn per global
batch from a shared seed.

FSDP (``parallel="fsdp"``) uses ``torch.distributed.fsdp.fully_shard`` (FSDP2). Its hooks fire on
``module.__call__``, and the DiT calls its blocks' parts as methods (``attn_part``, ``local_a2v``),
so the shard units are the attention / FFN submodules that *are* called, and the root unit holds
the rest (embeddings, heads, AdaLN tables). It runs on CPU with gloo as well as on CUDA with nccl.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
from torch import nn

__all__ = [
    "PARALLEL_MODES",
    "DistInfo",
    "env_dist_info",
    "init_distributed",
    "current_dist",
    "shutdown_distributed",
    "select_parallel",
    "wrap_model",
    "unwrap_model",
    "all_reduce_sum",
    "barrier",
    "default_device",
]

log = logging.getLogger(__name__)

PARALLEL_MODES = ("ddp", "fsdp")


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job.

    Attributes:
        rank: global rank (0 writes checkpoints and logs).
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on rank 0, which logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True with more than one process."""
        return self.world_size > 1

    def rows(self, global_batch: int) -> slice:
        """This rank's disjoint slice of a global batch (which must split evenly)."""
        if global_batch % self.world_size:
            raise ValueError(
                f"batch_size={global_batch} (global) does not split over world_size={self.world_size} ranks. "
                f"Use a multiple of {self.world_size}."
            )
        b = global_batch // self.world_size
        return slice(self.rank * b, (self.rank + 1) * b)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer; torchrun sets it, do not.") from None


def env_dist_info() -> DistInfo:
    """Rank, world size and local rank from the environment ``torchrun`` sets (defaults: one process)."""
    info = DistInfo(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))
    if info.world_size < 1 or not 0 <= info.rank < info.world_size:
        raise ValueError(
            f"RANK={info.rank} / WORLD_SIZE={info.world_size} are inconsistent: expected 0 <= RANK < WORLD_SIZE."
        )
    return info


def init_distributed(device_type: str = "cpu", *, timeout_minutes: float = 30.0) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (nccl on CUDA, gloo on CPU).

    Args:
        device_type: ``"cuda"`` or ``"cpu"``; on CUDA the process also selects ``cuda:LOCAL_RANK``.
        timeout_minutes: collective timeout.

    Returns:
        The :class:`DistInfo` (world size 1 and nothing initialised outside ``torchrun``).
    """
    info = env_dist_info()
    if not info.distributed:
        return info
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed support.")
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes))
        log.info("rank %d/%d joined the %s process group", info.rank, info.world_size, backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), info.local_rank)


def current_dist() -> DistInfo:
    """The running process group's view (one process when none is initialised)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    return DistInfo()


def shutdown_distributed() -> None:
    """Leave the process group, if any."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def default_device(info: DistInfo) -> torch.device:
    """``cuda:LOCAL_RANK`` when CUDA is available, else the CPU."""
    return torch.device(f"cuda:{info.local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def select_parallel(mode: str, info: DistInfo) -> str:
    """Which wrapper a run uses: ``"none"`` for one process, else ``mode`` (``"ddp"`` or ``"fsdp"``)."""
    if mode not in PARALLEL_MODES:
        raise ValueError(f"parallel={mode!r} is unknown: expected one of {PARALLEL_MODES}.")
    return mode if info.distributed else "none"


def _fsdp_units(model: nn.Module) -> list[list[nn.Module]]:
    """Groups of submodules that are always entered through ``__call__`` (see the module docstring)."""
    from ..model.blocks import CrossModalAttention, SelfAttention

    units: list[list[nn.Module]] = []
    for name, m in model.named_modules():
        if isinstance(m, SelfAttention):  # self_attn and cross_attn (TextCrossAttention subclasses it)
            units.append([m])
        elif name.endswith(".ffn"):
            units.append([m])
        elif isinstance(m, CrossModalAttention):  # entered via local_a2v() etc.: shard its called children
            units.append([c for c in m.children() if any(True for _ in c.parameters())])
    transcript = getattr(model, "transcript", None)
    if transcript is not None:
        units.append([transcript])
    return units


def wrap_model(
    model: nn.Module, info: DistInfo, *, mode: str, device: torch.device, find_unused_parameters: bool = False
) -> nn.Module:
    """Wrap ``model`` (already on ``device``) for data-parallel training.

    Args:
        model: the unwrapped model.
        info: the process's place in the job.
        mode: ``"ddp"`` or ``"fsdp"`` (ignored for a single process).
        device: the model's device.
        find_unused_parameters: DDP only; see the module docstring.

    Returns:
        ``model`` itself (one process, or FSDP, which shards in place) or a DDP wrapper.
    """
    chosen = select_parallel(mode, info)
    if chosen == "none":
        return model
    if chosen == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused_parameters)
    from torch.distributed.fsdp import fully_shard

    for unit in _fsdp_units(model):
        fully_shard(unit if len(unit) > 1 else unit[0])
    fully_shard(model)
    log.info("FSDP: %d shard units + root over %d ranks", len(_fsdp_units(model)), info.world_size)
    return model


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (FSDP2 shards in place, so it is returned as is)."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``t`` over ranks in place (no-op for one process); returns ``t``."""
    if info.distributed:
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for one process)."""
    if info.distributed:
        import torch.distributed as dist

        dist.barrier()
