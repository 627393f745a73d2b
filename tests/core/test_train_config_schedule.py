"""The DiT trainer's learning-rate schedules (constant as in the paper, cosine for from-scratch runs)."""

from __future__ import annotations

import math

import pytest

from harmony_core.training.config import TrainConfig, lr_at


def test_constant_schedule_warms_up_linearly_then_holds_the_peak():
    cfg = TrainConfig(steps=100, lr=1e-3, warmup=10)
    assert lr_at(cfg, 0) == pytest.approx(1e-4)
    assert lr_at(cfg, 9) == pytest.approx(1e-3)
    assert lr_at(cfg, 50) == lr_at(cfg, 99) == 1e-3


def test_cosine_schedule_runs_from_the_peak_to_the_floor_through_the_midpoint():
    cfg = TrainConfig(steps=111, lr=2e-3, warmup=10, lr_schedule="cosine", lr_min_ratio=0.1)
    assert lr_at(cfg, 10) == pytest.approx(2e-3)
    assert lr_at(cfg, 110) == pytest.approx(2e-4)
    # halfway through the decay the LR is the mean of peak and floor (cos(pi/2) = 0)
    assert lr_at(cfg, 60) == pytest.approx(1.1e-3)
    values = [lr_at(cfg, s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert lr_at(cfg, 35) == pytest.approx(2e-4 + 1.8e-3 * 0.5 * (1 + math.cos(math.pi * 0.25)))


def test_unknown_schedule_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="lr_schedule='linear'.*constant.*cosine"):
        TrainConfig(lr_schedule="linear")
    with pytest.raises(ValueError, match="lr_min_ratio=1.5"):
        TrainConfig(lr_schedule="cosine", lr_min_ratio=1.5)
