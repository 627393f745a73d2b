"""Training checkpoints: one safetensors file with everything needed to continue a run exactly.

Tensors (key prefixes):

* ``model.<name>``: weights of the :class:`~.model.HarmonyTrainModel` (``dit.*``, ``transcript.*``);
* ``ema.<name>``: the EMA weights (float32);
* ``optim.<name>.<key>``: AdamW state per trainable parameter (``exp_avg``, ``exp_avg_sq``, ``step``);
* ``rng.torch_cpu``: the global torch CPU RNG state as ``uint8`` (the trainer draws nothing from it,
  but restoring it keeps any third-party code that does on the same stream).

Metadata (JSON strings): ``format``, ``step``, ``train_config``, ``dit_config``,
``transcript_config``, ``optim_groups`` (AdamW hyper-parameters and the ordered trainable names),
``optim_scalars`` (non-tensor state), ``data`` (latent-cache fingerprint), ``stage``, ``metrics``.

The trainer's random streams are pure functions of ``(seed, step, ...)`` (see ``batching``), so the
step counter is the whole data / task / noise / reference RNG state. Full (unsharded) state dicts come
from ``torch.distributed.checkpoint.state_dict``, which treats plain, DDP and FSDP models alike.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..config import HarmonyConfig
from ..io.checkpoints import atomic_save_file, key_report, load_tensors, read_metadata
from ..text.transcript import TranscriptEncoderConfig
from .config import RESUMABLE_FIELDS, TrainConfig
from .ema import EMA
from .model import HarmonyTrainModel, build_train_model

__all__ = [
    "TRAIN_CHECKPOINT_FORMAT",
    "save_train_checkpoint",
    "restore_train_checkpoint",
    "check_resumable",
    "first_difference",
    "load_ema_model",
    "checkpoint_step",
    "prune_numbered",
]

TRAIN_CHECKPOINT_FORMAT = "harmony-train/1"
_ADAM_KEYS = ("step", "exp_avg", "exp_avg_sq")


def _json(x: Any) -> str:
    return json.dumps(x, sort_keys=True, default=lambda o: list(o) if isinstance(o, tuple) else str(o))


def _canon(x: Any) -> Any:
    """JSON round trip, so tuples and lists compare equal."""
    return json.loads(_json(x))


def first_difference(stored: Any, current: Any, path: str) -> tuple[str, Any, Any] | None:
    """The first (sorted) field where two JSON-like configs differ: ``(dotted path, stored, current)``."""
    stored, current = _canon(stored), _canon(current)
    if isinstance(stored, dict) and isinstance(current, dict):
        for k in sorted(set(stored) | set(current)):
            diff = first_difference(stored.get(k), current.get(k), f"{path}.{k}")
            if diff is not None:
                return diff
        return None
    return None if stored == current else (path, stored, current)


def _transcript_config(module: HarmonyTrainModel) -> dict[str, Any] | None:
    return None if module.transcript is None else module.transcript.config.to_dict()


def save_train_checkpoint(
    path: str | os.PathLike[str],
    *,
    module: HarmonyTrainModel,
    optimizer: torch.optim.Optimizer,
    ema: EMA,
    step: int,
    config: TrainConfig,
    data: dict[str, Any],
    stage: str = "custom",
    metrics: dict[str, float] | None = None,
    is_main: bool = True,
) -> None:
    """Gather full state on every rank (collective for FSDP) and write it atomically from rank 0.

    Args:
        path: destination ``.safetensors``.
        module: the unwrapped (or FSDP-sharded) model.
        optimizer: its AdamW.
        ema: the EMA of ``module``.
        step: optimiser steps taken.
        config: the run's config.
        data: the latent cache's fingerprint.
        stage: stage-preset name (informational).
        metrics: latest logged losses (informational).
        is_main: only the main rank writes.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    msd, osd = get_state_dict(module, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    ema_sd = ema.state_dict()
    if not is_main:
        return
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in msd.items()}
    tensors.update({f"ema.{k}": v for k, v in ema_sd.items()})
    scalars: dict[str, dict[str, Any]] = {}
    for name, state in osd["state"].items():
        for k, v in state.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{name}.{k}"] = v
            else:
                scalars.setdefault(name, {})[k] = v
    tensors["rng.torch_cpu"] = torch.get_rng_state()
    meta = {
        "format": TRAIN_CHECKPOINT_FORMAT,
        "step": str(step),
        "train_config": _json(config.to_dict()),
        "dit_config": module.dit.config.to_json(),
        "transcript_config": _json(_transcript_config(module)),
        "optim_groups": _json(osd["param_groups"]),
        "optim_scalars": _json(scalars),
        "data": _json(data),
        "stage": stage,
        "metrics": _json(metrics or {}),
    }
    atomic_save_file(tensors, path, meta)


def _read(path: str | os.PathLike[str]) -> dict[str, str]:
    src = os.fspath(path)
    meta = read_metadata(src)
    if meta.get("format") != TRAIN_CHECKPOINT_FORMAT:
        raise ValueError(
            f"{src!r} is not a training checkpoint (format={meta.get('format')!r}, expected "
            f"{TRAIN_CHECKPOINT_FORMAT!r}). Bundles and DiT files cannot be resumed; start a new run."
        )
    return meta


def check_resumable(
    path: str | os.PathLike[str],
    *,
    config: TrainConfig,
    module: HarmonyTrainModel,
    data: dict[str, Any],
) -> dict[str, str]:
    """Refuse (``ValueError`` naming the field) unless the checkpoint continues this exact run.

    The architecture (``HarmonyConfig``, transcript encoder), the data fingerprint and every
    ``TrainConfig`` field outside ``RESUMABLE_FIELDS`` must be equal.

    Returns:
        The checkpoint metadata.
    """
    meta = _read(path)
    src = os.fspath(path)
    fix = "Pass the stored value, or start a new run in another --out directory."
    checks = (
        ("HarmonyConfig", json.loads(meta["dit_config"]), module.dit.config.to_dict()),
        ("TranscriptEncoderConfig", json.loads(meta["transcript_config"]), _transcript_config(module)),
        ("data", json.loads(meta["data"]), data),
    )
    for name, stored, current in checks:
        diff = first_difference(stored, current, name)
        if diff is not None:
            raise ValueError(
                f"cannot resume from {src!r}: {diff[0]} is {diff[2]!r} now but {diff[1]!r} in the checkpoint. {fix}"
            )
    # Through from_dict so fields added since the checkpoint was written compare at their defaults.
    stored_cfg = TrainConfig.from_dict(json.loads(meta["train_config"])).to_dict()
    current_cfg = config.to_dict()
    # ``steps`` shapes a decaying schedule, so it may change on resume only under a constant LR.
    resumable = RESUMABLE_FIELDS - ({"steps"} if current_cfg.get("lr_schedule", "constant") != "constant" else set())
    for k in sorted(set(stored_cfg) | set(current_cfg)):
        if k in resumable:
            continue
        diff = first_difference(stored_cfg.get(k), current_cfg.get(k), f"TrainConfig.{k}")
        if diff is not None:
            raise ValueError(
                f"cannot resume from {src!r}: {diff[0]} is {diff[2]!r} now but {diff[1]!r} in the checkpoint; "
                f"only {sorted(resumable)} may change on resume. {fix}"
            )
    return meta


def restore_train_checkpoint(
    path: str | os.PathLike[str],
    *,
    module: HarmonyTrainModel,
    optimizer: torch.optim.Optimizer,
    ema: EMA,
    config: TrainConfig,
    data: dict[str, Any],
) -> int:
    """Load model, EMA, optimiser and RNG state from ``path`` after :func:`check_resumable`.

    Every rank reads the file (full tensors); FSDP re-shards them. Missing, unexpected or mis-shaped
    keys raise a ``ValueError`` listing them.

    Returns:
        The step the checkpoint was written at.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    src = os.fspath(path)
    meta = check_resumable(src, config=config, module=module, data=data)
    model_sd = load_tensors(src, prefix="model.")
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    report = key_report(expected, {k: tuple(v.shape) for k, v in model_sd.items()})
    if not report.ok:
        raise ValueError(f"{src} [model] does not fit this model: {report.describe()}. The checkpoint is damaged "
                         f"or was written for another architecture; start a new run or restore a good copy.")
    groups = json.loads(meta["optim_groups"])
    stored_names = [n for g in groups for n in g["params"]]
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    if stored_names != trainable:
        gone = sorted(set(stored_names) - set(trainable))
        new = sorted(set(trainable) - set(stored_names))
        raise ValueError(
            f"cannot resume from {src!r}: the trainable parameters differ (no longer trained: {gone[:5]}, newly "
            f"trained: {new[:5]}, or a different order). Resume with the stage preset that wrote the checkpoint."
        )
    optim_t = load_tensors(src, prefix="optim.")
    scalars = json.loads(meta["optim_scalars"])
    state: dict[str, dict[str, Any]] = {}
    for name in trainable:
        entry = dict(scalars.get(name, {}))
        for k in _ADAM_KEYS:
            if f"{name}.{k}" in optim_t:
                entry[k] = optim_t[f"{name}.{k}"]
        lacking = [k for k in _ADAM_KEYS if k not in entry]
        if lacking:
            raise ValueError(
                f"{src} lacks optimiser state optim.{name}.{lacking[0]} (and {len(lacking) - 1} more for this "
                f"parameter). The checkpoint is damaged; restore a good copy or start a new run."
            )
        state[name] = entry
    for g in groups:
        g["betas"] = tuple(g["betas"])
    set_state_dict(
        module,
        optimizer,
        model_state_dict=model_sd,
        optim_state_dict={"state": state, "param_groups": groups},
        options=StateDictOptions(full_state_dict=True),
    )
    ema.load_state_dict(load_tensors(src, prefix="ema."), source=f"{src} [ema]")
    rng = load_tensors(src, prefix="rng.")
    if "torch_cpu" in rng:
        torch.set_rng_state(rng["torch_cpu"])
    return int(meta["step"])


def load_ema_model(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> HarmonyTrainModel:
    """The EMA weights of a training checkpoint as a ready model (DiT + transcript encoder), in eval mode."""
    src = os.fspath(path)
    meta = _read(src)
    config = HarmonyConfig.from_json(meta["dit_config"])
    tcfg = json.loads(meta["transcript_config"])
    model = build_train_model(
        config, transcript=None if tcfg is None else TranscriptEncoderConfig.from_dict(tcfg), seed=0
    )
    ema = load_tensors(src, prefix="ema.")
    expected = {k: tuple(v.shape) for k, v in model.named_parameters()}
    report = key_report(expected, {k: tuple(v.shape) for k, v in ema.items()})
    if not report.ok:
        raise ValueError(f"{src} [ema] does not fit the stored config: {report.describe()}.")
    model.load_state_dict(ema, strict=True)
    return model.to(device).eval()


def checkpoint_step(path: str | os.PathLike[str]) -> int:
    """The step stored in a training checkpoint."""
    return int(_read(path)["step"])


def prune_numbered(out_dir: str | os.PathLike[str], keep: int) -> None:
    """Delete all but the newest ``keep`` ``step_XXXXXX.safetensors`` files in ``out_dir``."""
    files = sorted(Path(out_dir).glob("step_[0-9]*.safetensors"))
    for f in files[: max(0, len(files) - keep)]:
        f.unlink()

