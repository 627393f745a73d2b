"""Shared fixtures: everything on CPU, seeded, with the ``tiny`` preset."""

from __future__ import annotations

import pytest

from harmony_core.config import get_preset
from tests._helpers import make_tiny_model


@pytest.fixture
def tiny_config():
    return get_preset("tiny")


@pytest.fixture
def tiny_model(tiny_config):
    return make_tiny_model(tiny_config)
