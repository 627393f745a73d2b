"""Cross-modal reliance: a stream that cannot see the other one scores exactly 0."""

from __future__ import annotations

import pytest
import torch

from harmony_core.config import get_preset
from harmony_core.metrics.reliance import cross_modal_reliance, format_reliance
from harmony_core.model.conditions import ForwardOptions
from tests._helpers import make_conditions, make_latents, make_tiny_model


class _Switched(torch.nn.Module):
    # The model with some cross-modal paths switched off for every call.
    def __init__(self, model, options):
        super().__init__()
        self.model, self.options = model, options

    def forward(self, *args):
        return self.model(*args, options=self.options)


@pytest.fixture(scope="module")
def setup():
    cfg = get_preset("tiny")
    model = make_tiny_model(cfg)
    v, a = make_latents(cfg, batch=3)
    return model, v, a, make_conditions(cfg, batch=3)


def test_a_stream_cut_off_from_the_other_has_zero_gain_and_the_connected_one_does_not(setup):
    model, v, a, cond = setup
    only_v2a = _Switched(model, ForwardOptions(a2v=False, fusion=False))
    rows = cross_modal_reliance(only_v2a, v, a, cond, sigmas=(0.5,), generator=torch.Generator().manual_seed(0))
    assert rows[0].a2v_gain == 0.0 and rows[0].a2v_own == rows[0].a2v_other
    assert rows[0].v2a_own != rows[0].v2a_other
    both = cross_modal_reliance(model, v, a, cond, sigmas=(0.5,), generator=torch.Generator().manual_seed(0))
    assert both[0].a2v_own != both[0].a2v_other
    # (the audio side changes too: with A2V on, the video states it reads carry audio information)
    assert "A2V gain" in format_reliance(both)


def test_bad_arguments_name_the_value(setup):
    model, v, a, cond = setup
    with pytest.raises(ValueError, match="B=1"):
        cross_modal_reliance(model, v[:1], a[:1], cond)
    with pytest.raises(ValueError, match=r"partner=\[0, 2, 1\]"):
        cross_modal_reliance(model, v, a, cond, partner=[0, 2, 1])
    with pytest.raises(ValueError, match="sigmas"):
        cross_modal_reliance(model, v, a, cond, sigmas=(0.0,))
