"""Trained-detector checkpoints under content-addressed keys (default ~/.cache/robust-ad-bench/checkpoints).

The key hashes the detector's name, config, code version, the split's identity (its pixels and options) and
the seed, so any change to what determines the fitted weights gives a new checkpoint.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import torch

from bench.data.base import OneClassSplit
from bench.hashing import stable_hash
from bench.paths import cache_root
from bench.store import atomic_write_bytes


def fit_key(detector: Any, split: OneClassSplit, seed: int) -> str:
    """Content key of a fitted detector."""
    return stable_hash(
        {
            "detector": detector.name,
            "config": dataclasses.asdict(detector.config),
            "code": detector.code_version(),
            "split": split.identity,
            "seed": seed,
        }
    )


class CheckpointCache:
    """Stores and restores fitted detectors (``state_dict`` plus the input shape and fit time)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root() / "checkpoints"

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def save(self, key: str, detector: Any, fit_seconds: float) -> None:
        state = {k: v.detach().cpu() for k, v in detector.state_dict().items()}
        payload = {"input_shape": list(detector.input_shape), "state_dict": state, "fit_seconds": fit_seconds}
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write_bytes(self.path(key), buffer.getvalue())

    def load(self, key: str, detector: Any, device: str | torch.device = "cpu") -> float:
        """Restore ``detector`` from checkpoint ``key`` onto ``device``; returns the original fit time."""
        payload = torch.load(self.path(key), map_location="cpu", weights_only=True)
        detector.setup(tuple(payload["input_shape"]))
        detector.load_state_dict(payload["state_dict"])
        detector.to(device).eval()
        return float(payload["fit_seconds"])
