"""Multi-process training: two CPU ranks (gloo) under torchrun give the single-process weights, with
DDP and with FSDP; batch sharding and wrapper selection."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harmony_core.config import get_preset
from harmony_core.io.checkpoints import load_tensors
from harmony_core.training.distributed import DistInfo, env_dist_info, select_parallel
from harmony_core.training.latents import LatentCache, LatentItem

ROOT = Path(__file__).resolve().parents[2]
# Global batch 4 = 2 ranks x 2; three steps; references in some batches (DDP must cope with the style
# module being unused in the others).
ARGS = ["train", "--preset", "tiny", "--no-progress", "steps=3", "batch_size=4", "ckpt_every=0", "ref_prob=0.5"]


def _cache_file(path: Path) -> Path:
    cfg = get_preset("tiny")
    g = torch.Generator().manual_seed(0)
    items = [
        LatentItem(
            v_x0=torch.randn(cfg.video.in_channels, 2, 4, 4, generator=g),
            a_x0=torch.randn(cfg.audio.in_channels, cfg.timeline.audio_latents_for_video(2), generator=g),
            caption=torch.randn(3 + i % 3, cfg.video.text_dim, generator=g),
            transcript=("hello there", "", "ok go")[i % 3],
        )
        for i in range(8)
    ]
    LatentCache(items).save(path)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def latents(tmp_path_factory) -> Path:
    return _cache_file(tmp_path_factory.mktemp("latents") / "cache.safetensors")


@pytest.fixture(scope="module")
def single(latents, tmp_path_factory) -> dict[str, torch.Tensor]:
    """The reference: one process training on the whole global batch (in this process)."""
    from harmony_core.__main__ import main

    out = tmp_path_factory.mktemp("single")
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared CPU: OpenMP spin-waiting slows tiny steps ~10x
    try:
        assert main(ARGS + ["--latents", str(latents), "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(n)
    return load_tensors(out / "last.safetensors")


def _torchrun(latents: Path, out: Path, *extra: str) -> dict[str, torch.Tensor]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "harmony_core", *ARGS, "--latents", str(latents),
           "--out", str(out), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return load_tensors(out / "last.safetensors")


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_ranks_with_half_the_batch_each_train_the_same_weights_as_one_process(latents, single, tmp_path, mode):
    multi = _torchrun(latents, tmp_path, *(["--fsdp"] if mode == "fsdp" else []))
    assert set(multi) == set(single)
    for prefix in ("model.", "ema."):
        keys = [k for k in single if k.startswith(prefix)]
        worst = max(float((single[k] - multi[k]).abs().max()) for k in keys)
        assert worst < 1e-5, f"{prefix} differs by {worst}"
    moved = max(float((single[k] - single["ema." + k[6:]]).abs().max()) for k in single if k.startswith("model."))
    assert moved > 1e-4  # the runs did train (EMA lags the weights), so equality is not trivial


def test_each_rank_takes_a_disjoint_slice_and_together_they_cover_the_global_batch():
    rows = [DistInfo(rank=r, world_size=4).rows(8) for r in range(4)]
    assert [list(range(8))[s] for s in rows] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    with pytest.raises(ValueError, match="batch_size=6 \\(global\\) does not split over world_size=4"):
        DistInfo(rank=0, world_size=4).rows(6)


def test_the_wrapper_is_chosen_from_the_world_size_and_the_requested_mode():
    assert select_parallel("fsdp", DistInfo()) == "none"
    assert select_parallel("ddp", DistInfo(rank=1, world_size=2)) == "ddp"
    assert select_parallel("fsdp", DistInfo(rank=1, world_size=2)) == "fsdp"
    with pytest.raises(ValueError, match="parallel='zero' is unknown"):
        select_parallel("zero", DistInfo())


def test_torchrun_environment_is_read_and_checked(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert env_dist_info() == DistInfo(rank=1, world_size=2, local_rank=1)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2 / WORLD_SIZE=2 are inconsistent"):
        env_dist_info()
