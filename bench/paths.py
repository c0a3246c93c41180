"""Where the project keeps what it can recompute: the cache root (checkpoints, generated datasets, timing history)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "ROBUST_AD_BENCH_CACHE"


def cache_root() -> Path:
    """The cache folder: $ROBUST_AD_BENCH_CACHE, else ~/.cache/robust-ad-bench."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "robust-ad-bench")
