"""Timing history of earlier runs: median fit and attack seconds per detector, dataset and preset, for scheduling.

The preset is part of the key because it sizes the work: a `paper` fit takes hours where a `quick` one takes
seconds. Stored as a small JSON file in the cache root (``timing_history.json``)::

    {"deepsvdd/digits/quick": {"fit": [3.1, 2.9], "attack": {"pgd": [0.4, 0.5]}}}

Only the last ``MAX_SAMPLES`` measurements of each kind are kept. The file is rewritten atomically after each
run; two runs finishing at once may lose one update, which only costs scheduling accuracy.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.paths import cache_root
from bench.store import atomic_write_text

if TYPE_CHECKING:
    from bench.runner import GroupResult

MAX_SAMPLES = 20


def history_key(detector: str, dataset: str, preset: str) -> str:
    return f"{detector}/{dataset}/{preset}"


class TimingHistory:
    """Median fit/attack seconds of earlier runs, keyed by detector, dataset and preset."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else cache_root() / "timing_history.json"
        self.entries: dict[str, dict[str, Any]] = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def fit_seconds(self, detector: str, dataset: str, preset: str) -> float | None:
        """Median fit time, or None when this detector was never fitted on this dataset with this preset."""
        samples = self.entries.get(history_key(detector, dataset, preset), {}).get("fit", [])
        return statistics.median(samples) if samples else None

    def attack_seconds(self, detector: str, dataset: str, preset: str, attack: str) -> float | None:
        """Median attack time of one cell, or None when never measured."""
        samples = self.entries.get(history_key(detector, dataset, preset), {}).get("attack", {}).get(attack, [])
        return statistics.median(samples) if samples else None

    def add_fit(self, detector: str, dataset: str, preset: str, seconds: float) -> None:
        entry = self.entries.setdefault(history_key(detector, dataset, preset), {})
        entry["fit"] = [*entry.get("fit", []), round(float(seconds), 3)][-MAX_SAMPLES:]

    def add_attack(self, detector: str, dataset: str, preset: str, attack: str, seconds: float) -> None:
        attacks = self.entries.setdefault(history_key(detector, dataset, preset), {}).setdefault("attack", {})
        attacks[attack] = [*attacks.get(attack, []), round(float(seconds), 3)][-MAX_SAMPLES:]

    def add_result(self, result: GroupResult) -> None:
        """Add the timings of a finished group: its fit time only when it really fitted."""
        ok = [r for r in result.records if r.ok]
        if result.fitted and ok:
            self.add_fit(ok[0].detector, ok[0].dataset, ok[0].preset, ok[0].fit_seconds)
        for r in ok:
            self.add_attack(r.detector, r.dataset, r.preset, r.attack, r.attack_seconds)

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.entries, indent=1, sort_keys=True))
