"""Where the project lives and keeps what it can recompute: its root, the cache root (checkpoints, datasets, timing)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "ROBUST_AD_BENCH_CACHE"
#: The checkout this code runs from (holding bench/, detectors/, attacks/).
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    """The cache folder: $ROBUST_AD_BENCH_CACHE, else ~/.cache/robust-ad-bench."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "robust-ad-bench")
