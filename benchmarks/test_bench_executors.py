"""pytest-benchmark: the local executor (2 CPU workers) against serial, relative to the parallel speed-up the machine
gave the cells in the same run.

On a shared 2-core machine the second core is often partly someone else's, and that share moves within seconds, so
an absolute target (1.6x) fails for reasons outside the code, and so does a probe run beside the grid (two busy
processes against one, ``ParallelProbe``, which the script prints: in one loaded round it read 1.60x while the
cells got 0.43x). The reference is therefore measured on the grid itself: each cell's own seconds, summed,
serially and on the two workers (``RunTiming.cells``). From the first cell to the last result, the local executor
must keep its workers running cells nearly as much of the time as the serial one keeps its one
(``RunTiming.busy``): its speed-up over that span is then nearly the cells' parallel speed-up, whatever share of
the cores they got. The workers' start-up (spawn, imports: ~5 s of CPU each) and the shutdown after the last
result are fixed costs, most of a short grid's wall-clock gain: they get a loose bound only.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.paths import CACHE_ENV
from benchmarks.bench_executors import RunTiming, differences, grid_config, timed_run

#: 6 fit groups of ~1.6 s each on one idle core; 3 interleaved rounds of serial, local.
CLASSES, EPOCHS, ROUNDS = list(range(6)), 250, 3
WORKERS = 2
#: Per round: (cells running at a time on the local workers / WORKERS) / (the same serially), i.e. the local
#: speed-up over the first-cell-to-last-result span over the cells' parallel speed-up; median over rounds.
MIN_FRACTION = 0.8
#: The local run's fixed costs, start-up + shutdown, median over rounds (measured 7 to 12 s, 19 s under a load of
#: 5): a loose bound that catches a start-up that grows (imports, registries), not a few seconds.
MAX_FIXED_S = 45.0


@dataclass
class Round:
    """One round: both runs."""

    serial: RunTiming
    local: RunTiming | None = None

    @property
    def speedup(self) -> float:
        """local / serial wall-clock speed-up from the first cell to the last result."""
        return self.serial.span / self.local.span

    @property
    def cells(self) -> float:
        """How much faster the cells ran on the workers than serially (their summed seconds)."""
        return WORKERS * self.serial.cells / self.local.cells

    @property
    def fraction(self) -> float:
        """``speedup / cells`` = the workers' share of time running cells over the serial run's."""
        return self.local.busy / WORKERS / self.serial.busy

    def describe(self) -> str:
        return (
            f"{self.serial.wall / self.local.wall:.2f}x ({self.speedup:.2f}x between {self.local.startup:.1f} s "
            f"start-up and {self.local.tail:.1f} s shutdown) / cells {self.cells:.2f}x = {self.fraction:.2f}"
        )


def test_local_executor_against_serial(
    side_by_side, report_ratio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))  # restored afterwards (timed_run sets its own)
    cfg = grid_config("deepsvdd", "pgd", CLASSES, EPOCHS)
    rounds: list[Round] = []

    def serial() -> dict[str, dict[str, Any]]:
        rounds.append(Round(timed_run("serial", ["cpu"], cfg, tmp_path)))
        return rounds[-1].serial.records

    def local() -> dict[str, dict[str, Any]]:
        rounds[-1].local = timed_run("local", ["cpu"] * WORKERS, cfg, tmp_path)
        return rounds[-1].local.records

    run = side_by_side("local", local, {"serial": serial}, ROUNDS)
    fraction = statistics.median(r.fraction for r in rounds)
    fixed = statistics.median(r.local.startup + r.local.tail for r in rounds)
    detail = (
        f"median of {ROUNDS} interleaved rounds, {len(CLASSES)} groups x {EPOCHS} epochs, serial "
        f"{run.median('serial', 'wall'):.1f} s, local {run.median('local', 'wall'):.1f} s; per round, local / serial: "
        + "; ".join(r.describe() for r in rounds)
    )
    report_ratio("local speed-up / the cells' parallel speed-up", fraction, f">= {MIN_FRACTION}", detail)
    report_ratio("local start-up + shutdown, s", fixed, f"<= {MAX_FIXED_S}")
    changed = differences(run.results["serial"], run.results["local"])
    assert not changed, changed[:5]  # the same numbers, cell for cell
    assert len(run.results["local"]) == len(CLASSES)
    assert fraction >= MIN_FRACTION, detail
    assert fixed <= MAX_FIXED_S, detail
