"""The training loop: Cross-Task Synergy flow matching over a latent cache (paper §3.2, App. B).

One optimiser step:

1. the :class:`~.batching.BucketBatchSampler` picks a global batch from one length bucket, and
   :func:`~.batching.plan_references` decides whether it carries reference audio (all or none);
2. every sample draws its task (joint / A2V / V2A), sigma and noise with ``sample_task_batch`` from
   its own generator ``(seed, tasks, step, row)``, so a rank computes exactly its rows of the
   single-process batch;
3. per-sample loss ``v_weight * |v_pred - v_target|^2 + a_weight * |a_pred - a_target|^2``
   (reference tokens are stripped by the DiT and never scored), batch mean, backward;
4. a non-finite loss or gradient norm raises ``FloatingPointError`` before the optimiser touches the
   weights (so no checkpoint ever holds a poisoned model); clip, AdamW step, EMA update;
5. losses are logged per task and per sigma bin, checkpoints written every ``ckpt_every`` steps.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from ..model.conditions import ForwardOptions
from .batching import (
    STREAM_TASKS,
    BucketBatchSampler,
    LatentBatch,
    collate,
    plan_cond_drop,
    plan_references,
    stream_generator,
)
from .checkpoint import checkpoint_step, prune_numbered, restore_train_checkpoint, save_train_checkpoint
from .config import TrainConfig, lr_at
from .distributed import all_reduce_sum, current_dist, default_device, unwrap_model, wrap_model
from .ema import EMA
from .latents import LatentCache
from .model import HarmonyTrainModel
from .tasks import TASKS, TaskBatch, TaskMix, flow_loss, motion_weights, sample_task_batch

__all__ = ["TrainConfig", "TrainResult", "LossStats", "train", "check_dataset", "unused_parameters"]

log = logging.getLogger(__name__)

Callback = Callable[[dict[str, float]], None]


# ---------------------------------------------------------------------------------------------
# Loss bookkeeping
# ---------------------------------------------------------------------------------------------


class LossStats:
    """Sums and counts of per-sample losses, overall, per task and per sigma bin.

    Kept as one flat float64 vector so a step's statistics are all-reduced over ranks in one call.
    Layout: ``[sum, n, nonfinite, task sums (3), task counts (3), bin sums (K), bin counts (K),
    video mse sum, video n, audio mse sum, audio n]``.

    Args:
        bins: number of equal-width sigma bins over [0, 1].
    """

    def __init__(self, bins: int) -> None:
        self.bins = bins
        self.vec = torch.zeros(3 + 6 + 2 * bins + 4, dtype=torch.float64)

    def batch_vector(
        self,
        per_sample: torch.Tensor,
        tasks: torch.Tensor,
        sigma: torch.Tensor,
        v_mse: torch.Tensor,
        a_mse: torch.Tensor,
        v_scored: torch.Tensor,
        a_scored: torch.Tensor,
    ) -> torch.Tensor:
        """One batch's vector (not added).

        Args:
            per_sample: ``[B]`` weighted per-sample loss (what is optimised).
            tasks: ``[B]`` task index; sigma: ``[B]`` noise level of the scored stream(s).
            v_mse, a_mse: ``[B]`` unweighted flow losses; v_scored, a_scored: ``[B]`` bool.
        """
        k = self.bins
        x = per_sample.detach().double().cpu()
        tasks, sigma = tasks.cpu(), sigma.detach().double().cpu()
        out = torch.zeros_like(self.vec)
        out[0], out[1], out[2] = x.sum(), x.numel(), (~torch.isfinite(x)).sum()
        out[3:6] = torch.zeros(3, dtype=torch.float64).index_add_(0, tasks, x)
        out[6:9] = torch.bincount(tasks, minlength=3).double()
        b = (sigma * k).floor().long().clamp(0, k - 1)
        out[9 : 9 + k] = torch.zeros(k, dtype=torch.float64).index_add_(0, b, x)
        out[9 + k : 9 + 2 * k] = torch.bincount(b, minlength=k).double()
        v_s, a_s = v_scored.cpu(), a_scored.cpu()
        out[-4], out[-3] = v_mse.detach().double().cpu()[v_s].sum(), v_s.sum()
        out[-2], out[-1] = a_mse.detach().double().cpu()[a_s].sum(), a_s.sum()
        return out

    def add(self, vec: torch.Tensor) -> None:
        """Accumulate a vector from :meth:`batch_vector` (possibly all-reduced over ranks)."""
        self.vec += vec

    def reset(self) -> None:
        """Forget everything accumulated."""
        self.vec.zero_()

    @property
    def nonfinite(self) -> int:
        """Samples whose loss was NaN or inf."""
        return int(self.vec[2])

    def bin_edges(self, i: int) -> tuple[float, float]:
        """``[lo, hi)`` sigma range of bin ``i``."""
        return i / self.bins, (i + 1) / self.bins

    def summary(self) -> dict[str, float]:
        """Means (and counts ``n/...``): ``loss``, ``loss/<task>``, ``loss/sigma<lo>-<hi>``,
        ``mse/video``, ``mse/audio``; groups without samples are left out."""
        v, k = self.vec, self.bins
        out: dict[str, float] = {}

        def put(name: str, s: torch.Tensor, n: torch.Tensor) -> None:
            if n > 0:  # counts: "n" for the whole batch, "n/<group>" for a group
                out[name], out["n" if name == "loss" else "n/" + name.split("/", 1)[1]] = float(s / n), float(n)

        put("loss", v[0], v[1])
        for t, name in enumerate(TASKS):
            put(f"loss/{name}", v[3 + t], v[6 + t])
        for i in range(k):
            lo, hi = self.bin_edges(i)
            put(f"loss/sigma{lo:.1f}-{hi:.1f}", v[9 + i], v[9 + k + i])
        put("mse/video", v[-4], v[-3])
        put("mse/audio", v[-2], v[-1])
        return out


# ---------------------------------------------------------------------------------------------
# Checks and helpers
# ---------------------------------------------------------------------------------------------


def check_dataset(model: HarmonyTrainModel, dataset: LatentCache) -> None:
    """Fail up front when the cache does not fit the model (channels, text width, patching, timeline)."""
    cfg = model.config
    pt, ph, pw = cfg.video.patch_size
    h, w = dataset.items[0].v_x0.shape[2:]
    problems = []
    if dataset.video_channels != cfg.video.in_channels:
        problems.append(f"video latents have {dataset.video_channels} channels, the model {cfg.video.in_channels}")
    if dataset.audio_channels != cfg.audio.in_channels:
        problems.append(f"audio latents have {dataset.audio_channels} channels, the model {cfg.audio.in_channels}")
    if dataset.text_dim != cfg.video.text_dim or dataset.text_dim != cfg.audio.text_dim:
        problems.append(f"captions are {dataset.text_dim}-wide, the model's text_dim is {cfg.video.text_dim}")
    if h % ph or w % pw:
        problems.append(f"video latents are {h}x{w}, not multiples of the patch {ph}x{pw}")
    for tv, ta in sorted(set(dataset.length_keys())):
        want = cfg.timeline.audio_latents_for_video(tv)
        if tv % pt or ta != want:
            problems.append(f"clips with T_v={tv} have T_a={ta} audio latents, the model's timeline expects {want}")
            break
    if problems:
        raise ValueError(
            "the latent cache does not fit the model: " + "; ".join(problems) + ". Build the model config from "
            "the cache (the training CLI does) or re-encode the clips with matching VAEs."
        )


def unused_parameters(model: HarmonyTrainModel, config: TrainConfig) -> tuple[list[str], list[str]]:
    """Parameter names a run ``(never, sometimes)`` uses, given its forward options and ``ref_prob``.

    Never-used ones are frozen by :func:`train` (their gradient would be None forever, which AdamW
    skips anyway, but DDP would wait for it); sometimes-used ones need DDP's
    ``find_unused_parameters``.
    """
    opts: ForwardOptions = model.options
    never, sometimes = [], []
    skipped = tuple(f"model.blocks.{i}." for i in opts.skip_blocks)
    for name, _ in model.named_parameters():
        if (
            (".a2v." in name and not opts.a2v)
            or (".v2a." in name and not opts.v2a)
            or ("_fusion" in name and not opts.fusion)
            or (".style." in name and (not opts.style or config.ref_prob == 0))
            or ("speech_embedding" in name and model.transcript is None)
            or any(s in name for s in skipped)
        ):
            never.append(name)
        elif ".style." in name and config.ref_prob < 1:
            sometimes.append(name)
    return never, sometimes


def _task_batch(batch: LatentBatch, mix: TaskMix, seed: int, step: int, first_row: int) -> TaskBatch:
    """Tasks, sigmas and noise per sample, each from its own ``(seed, tasks, step, global row)`` stream."""
    parts = [
        sample_task_batch(
            batch.v_x0[r : r + 1], batch.a_x0[r : r + 1], mix,
            generator=stream_generator(seed, STREAM_TASKS, step, first_row + r),
        )
        for r in range(batch.v_x0.shape[0])
    ]
    return TaskBatch(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(TaskBatch)})


def _describe_batch(tb: TaskBatch, step: int, indices: list[int]) -> str:
    counts = torch.bincount(tb.tasks.cpu(), minlength=3).tolist()
    mix = ", ".join(f"{n}={c}" for n, c in zip(TASKS, counts))
    sig = torch.maximum(tb.v_t, tb.a_t).float().cpu()
    sigmas = f"{float(sig.min()):.3f}..{float(sig.max()):.3f}"
    return f"step {step} (task mix on this rank: {mix}; sigmas {sigmas}; clips {indices})"


def _progress(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: logging still reports progress
        return None
    return tqdm(total=total, initial=initial, desc="train", dynamic_ncols=True)


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        step: optimiser steps completed in total (including resumed ones).
        history: per-step metrics of this call (``step``, ``loss``, ``lr``, ``grad_norm``, per task / bin).
        checkpoint: path of ``last.safetensors``.
        metrics: the last logged window's summary.
    """

    step: int
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Loop
# ---------------------------------------------------------------------------------------------


def train(
    config: TrainConfig,
    model: HarmonyTrainModel,
    dataset: LatentCache,
    out_dir: str | Path,
    *,
    resume: bool = False,
    callback: Callback | None = None,
    device: torch.device | str | None = None,
    parallel: str = "ddp",
    stage: str = "custom",
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` on ``dataset``, writing checkpoints to ``out_dir``.

    Parameters with ``requires_grad=False`` stay frozen (stage presets set them); parameters the
    run can never use are frozen too (see :func:`unused_parameters`). Under ``torchrun`` (process
    group initialised by the caller, e.g. ``distributed.init_distributed``) the model is wrapped in
    DDP or FSDP, every rank trains its slice of each global batch, and only rank 0 logs, calls
    ``callback`` and writes files.

    Args:
        config: the run.
        model: the unwrapped model, weights initialised (moved to ``device`` here).
        dataset: the latent cache.
        out_dir: where ``last.safetensors`` (and ``step_XXXXXX.safetensors``) go.
        resume: continue from ``out_dir/last.safetensors`` (refused if the run differs).
        callback: called on rank 0 after every step with that step's metrics (global over ranks).
        device: default ``cuda:LOCAL_RANK`` when available, else the CPU.
        parallel: ``"ddp"`` or ``"fsdp"`` for multi-process runs.
        stage: stage-preset name stored in checkpoints.
        progress: show a tqdm bar (rank 0, when tqdm is installed).

    Returns:
        A :class:`TrainResult`.

    Raises:
        FloatingPointError: on a non-finite loss or gradient norm, naming the step and the batch's task mix.
        FileExistsError / FileNotFoundError: starting over an existing run / resuming a missing one.
    """
    info = current_dist()
    device = torch.device(device) if device is not None else default_device(info)
    out = Path(out_dir)
    last = out / "last.safetensors"
    if resume and not last.is_file():
        raise FileNotFoundError(f"resume=True but {last} does not exist; train without --resume first.")
    if not resume and last.exists():
        raise FileExistsError(f"{last} already exists: pass resume=True (--resume) to continue it, or a new out_dir.")
    check_dataset(model, dataset)
    if config.cond_drop > 0 and dataset.null_caption is None:
        raise ValueError(
            f"cond_drop={config.cond_drop} needs the empty prompt's caption tokens, and this latent cache has none "
            f"(built before condition dropout existed). Rebuild the cache (drop --latents) or set cond_drop=0."
        )
    rows = info.rows(config.batch_size)
    never, sometimes = unused_parameters(model, config)
    for name, p in model.named_parameters():
        if name in never and p.requires_grad:
            p.requires_grad_(False)
    if never:
        log.info("frozen %d parameter tensors this run never uses (e.g. %s)", len(never), never[0])
    model.dit.gradient_checkpointing = config.grad_checkpointing
    model.to(device).train()
    wrapped = wrap_model(model, info, mode=parallel, device=device, find_unused_parameters=bool(sometimes))
    module = unwrap_model(wrapped)
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters: the stage preset froze everything. Check its trainable filter.")
    opt = torch.optim.AdamW(
        params, lr=lr_at(config, 0), betas=config.betas, eps=config.eps, weight_decay=config.weight_decay,
        fused=_can_fuse(params),
    )
    ema = EMA(module, decay=config.ema_decay, start_step=config.ema_start)
    sampler = BucketBatchSampler(dataset.length_keys(), config.batch_size, seed=config.seed)
    data_fp = dataset.fingerprint()
    start = 0
    if resume:
        start = restore_train_checkpoint(last, module=module, optimizer=opt, ema=ema, config=config, data=data_fp)
        log.info("resumed %s at step %d", last, start)
    mix = config.task_mix
    rate = model.config.timeline.audio_latent_rate
    autocast = config.precision == "bf16"
    window, step_stats = LossStats(config.sigma_bins), LossStats(config.sigma_bins)
    result = TrainResult(step=start, checkpoint=str(last) if resume else None)
    bar = _progress(config.steps, start, progress and info.is_main)
    n_train = sum(p.numel() for p in params)
    if info.is_main:
        log.info("training %s params for steps %d..%d, global batch %d over %d rank(s), %d clips in %d buckets",
                 f"{n_train:,}", start + 1, config.steps, config.batch_size, info.world_size, len(dataset),
                 len(sampler.buckets))
    t_window = time.perf_counter()
    try:
        for step in range(start, config.steps):
            indices = sampler.batch(step)
            plan = plan_references(dataset, indices, seed=config.seed, step=step, prob=config.ref_prob,
                                   seconds=config.ref_seconds, rate=rate, mode=config.ref_mode)
            drop = plan_cond_drop(config.seed, step, len(indices), config.cond_drop)
            batch = collate(dataset, indices, plan=plan, rows=rows, drop=drop).to(device)
            tb = _task_batch(batch, mix, config.seed, step, rows.start)
            lr = lr_at(config, step)
            for g in opt.param_groups:
                g["lr"] = lr
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                v_pred, a_pred = wrapped(
                    tb.v_xt, tb.a_xt, tb.v_t, tb.a_t, batch.caption, batch.caption, batch.caption_mask,
                    batch.caption_mask, batch.transcript_ids, batch.transcript_mask, batch.a_ref,
                )
            v_mse = flow_loss(v_pred, tb.v_target, motion_weights(batch.v_x0, config.motion_weight))
            a_mse = flow_loss(a_pred, tb.a_target)
            per_sample = tb.v_weight * v_mse + tb.a_weight * a_mse
            loss = per_sample.mean()
            vec = step_stats.batch_vector(per_sample, tb.tasks, torch.maximum(tb.v_t, tb.a_t), v_mse, a_mse,
                                          tb.v_weight > 0, tb.a_weight > 0)
            if info.distributed:
                vec = all_reduce_sum(vec.to(device), info).cpu()
            step_stats.reset()
            step_stats.add(vec)
            if step_stats.nonfinite:
                raise FloatingPointError(
                    f"non-finite loss at {_describe_batch(tb, step + 1, batch.indices)}: {step_stats.nonfinite} "
                    f"sample(s) gave NaN/inf. Nothing was saved for this step (last checkpoint: {result.checkpoint}). "
                    f"Lower lr, raise warmup, keep grad_clip > 0, or train with precision=fp32."
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(params, config.grad_clip if config.grad_clip > 0 else math.inf)
            gn = float(gn.full_tensor() if hasattr(gn, "full_tensor") else gn)
            if not math.isfinite(gn):
                raise FloatingPointError(
                    f"non-finite gradient norm {gn} at {_describe_batch(tb, step + 1, batch.indices)}. The weights "
                    f"were not updated and nothing was saved (last checkpoint: {result.checkpoint})."
                )
            opt.step()
            done = step + 1
            ema.update(module, done)
            window.add(vec)
            metrics = {"step": float(done), "lr": lr, "grad_norm": gn, **step_stats.summary()}
            result.history.append(metrics)
            result.step = done
            if info.is_main and callback is not None:
                callback(metrics)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{lr:.2e}")
            if done % config.log_every == 0 or done == config.steps:
                result.metrics = _log_window(window, done, config, lr, gn, time.perf_counter() - t_window, info.is_main)
                window.reset()
                t_window = time.perf_counter()
            if (config.ckpt_every and done % config.ckpt_every == 0) or done == config.steps:
                _save(out, module, opt, ema, done, config, data_fp, stage, result, info.is_main)
    finally:
        if bar is not None:
            bar.close()
    if start >= config.steps and info.is_main:
        log.info("checkpoint %s is at step %d >= steps=%d: nothing to do", last, checkpoint_step(last), config.steps)
    return result


def _can_fuse(params: list[torch.nn.Parameter]) -> bool:
    """Whether AdamW can use its fused kernel: plain float tensors on CPU or CUDA (not FSDP's sharded
    DTensors). On the 2-core CPU it makes the synthetic model's optimizer step 4x faster (22 -> 5 ms)."""
    return all(
        type(p.data) is torch.Tensor and p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point
        for p in params
    )


def _log_window(
    window: LossStats, done: int, config: TrainConfig, lr: float, gn: float, seconds: float, is_main: bool
) -> dict[str, float]:
    s = window.summary()
    if is_main:
        tasks = " ".join(f"{t} {s[f'loss/{t}']:.4f}" for t in TASKS if f"loss/{t}" in s)
        bins = " ".join(
            f"{k[len('loss/sigma'):]}:{v:.4f}" for k, v in s.items() if k.startswith("loss/sigma")
        )
        steps = window.vec[1] / max(1, config.batch_size)
        log.info("step %d/%d loss %.4f | %s | sigma %s | lr %.2e grad %.3f | %.2f s/step", done, config.steps,
                 s.get("loss", math.nan), tasks, bins, lr, gn, seconds / max(1.0, float(steps)))
    return s


def _save(
    out: Path, module: HarmonyTrainModel, opt: torch.optim.Optimizer, ema: EMA, done: int, config: TrainConfig,
    data: dict[str, Any], stage: str, result: TrainResult, is_main: bool,
) -> None:
    last = out / "last.safetensors"
    save_train_checkpoint(last, module=module, optimizer=opt, ema=ema, step=done, config=config, data=data,
                          stage=stage, metrics=result.metrics, is_main=is_main)
    if is_main and config.keep_last:
        numbered = out / f"step_{done:06d}.safetensors"
        tmp = numbered.with_name(".tmp_" + numbered.name)
        shutil.copyfile(last, tmp)
        os.replace(tmp, numbered)  # atomic, like every other checkpoint write
        prune_numbered(out, config.keep_last)
    result.checkpoint = str(last)
    if is_main:
        log.info("saved %s (step %d)", last, done)
