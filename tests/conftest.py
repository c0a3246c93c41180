"""Shared test setup: an isolated checkpoint cache and results folder per test session."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True, scope="session")
def isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep checkpoints of tests out of the user's cache (textures data may be shared: it is deterministic)."""
    previous = os.environ.get("ROBUST_AD_BENCH_CACHE")
    os.environ["ROBUST_AD_BENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("ROBUST_AD_BENCH_CACHE", None)
    else:
        os.environ["ROBUST_AD_BENCH_CACHE"] = previous
