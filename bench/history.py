"""Timing history of earlier runs: median fit and attack seconds per detector and dataset, for scheduling.

Stored as a small JSON file in the cache root (``timing_history.json``)::

    {"deepsvdd/digits": {"fit": [3.1, 2.9], "attack": {"pgd": [0.4, 0.5]}}}

Only the last ``MAX_SAMPLES`` measurements of each kind are kept. The file is rewritten atomically after each
run; two runs finishing at once may lose one update, which only costs scheduling accuracy.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bench.cache import cache_root
from bench.store import atomic_write_text

MAX_SAMPLES = 20


def history_key(detector: str, dataset: str) -> str:
    return f"{detector}/{dataset}"


class TimingHistory:
    """Median fit/attack seconds of earlier runs, keyed by detector and dataset."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else cache_root() / "timing_history.json"
        self.entries: dict[str, dict[str, Any]] = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def fit_seconds(self, detector: str, dataset: str) -> float | None:
        """Median fit time, or None when this detector was never fitted on this dataset."""
        samples = self.entries.get(history_key(detector, dataset), {}).get("fit", [])
        return statistics.median(samples) if samples else None

    def attack_seconds(self, detector: str, dataset: str, attack: str) -> float | None:
        """Median attack time of one cell, or None when never measured."""
        samples = self.entries.get(history_key(detector, dataset), {}).get("attack", {}).get(attack, [])
        return statistics.median(samples) if samples else None

    def add_fit(self, detector: str, dataset: str, seconds: float) -> None:
        entry = self.entries.setdefault(history_key(detector, dataset), {})
        entry["fit"] = [*entry.get("fit", []), round(float(seconds), 3)][-MAX_SAMPLES:]

    def add_attack(self, detector: str, dataset: str, attack: str, seconds: float) -> None:
        attacks = self.entries.setdefault(history_key(detector, dataset), {}).setdefault("attack", {})
        attacks[attack] = [*attacks.get(attack, []), round(float(seconds), 3)][-MAX_SAMPLES:]

    def add_result(self, result: Any) -> None:
        """Add the timings of a finished group (a ``GroupResult``): its fit time only when it really fitted."""
        ok = [r for r in result.records if r.get("status") == "ok"]
        if result.fitted and ok:
            self.add_fit(ok[0]["detector"], ok[0]["dataset"], ok[0]["fit_seconds"])
        for record in ok:
            self.add_attack(record["detector"], record["dataset"], record["attack"], record["attack_seconds"])

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.entries, indent=1, sort_keys=True))
