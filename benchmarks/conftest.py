"""pytest-benchmark setup of ``python -m pytest benchmarks --benchmark-only``: side-by-side timing, measured ratios.

Every test here is marked ``slow`` (the fast suite, ``-m "not slow and not gpu"``, never runs a benchmark; the
default ``testpaths = ["tests"]`` does not collect this folder anyway). The measured ratios are printed in a
"benchmark ratios" section at the end of the run.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # ``pytest benchmarks`` without ``python -m``: the packages live in the checkout
    sys.path.insert(0, str(ROOT))

from benchmarks.helpers import clocked  # noqa: E402

HERE = Path(__file__).resolve().parent
RATIOS = pytest.StashKey[list[str]]()

torch.set_num_threads(1)  # as the README's commands (OMP_NUM_THREADS=1) and the executors' one-thread workers


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RATIOS] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    lines = config.stash.get(RATIOS, [])
    if lines:
        terminalreporter.section("benchmark ratios")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def report_ratio(request: pytest.FixtureRequest, benchmark) -> Callable[..., None]:
    """``report_ratio(label, value, bound, detail="")``: keep a measured ratio for the summary and the benchmark's
    ``extra_info`` (the JSON report)."""

    def report(label: str, value: float, bound: str, detail: str = "") -> None:
        benchmark.extra_info[label] = round(value, 4)
        line = f"{request.node.name}: {label} = {value:.3f} (assert {bound})"
        request.config.stash[RATIOS].append(f"{line}; {detail}" if detail else line)

    return report


@dataclass
class SideBySide:
    """Per-round wall and CPU seconds of the candidates of ``side_by_side``, and each one's last result."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]
    results: dict[str, object] = field(default_factory=dict)

    def median(self, name: str, clock: str = "cpu") -> float:
        return statistics.median(getattr(self, clock)[name])

    def per_round(self, ratio: Callable[[dict[str, float]], float], clock: str = "cpu") -> float:
        """Median over rounds of ``ratio`` of one round's seconds by name: the candidates of one round ran back
        to back, so a burst of load on a shared machine hits one round's pair rather than one candidate's median."""
        times = getattr(self, clock)
        rounds = len(next(iter(times.values())))
        return statistics.median(ratio({name: t[i] for name, t in times.items()}) for i in range(rounds))


@pytest.fixture
def side_by_side(benchmark) -> Callable[..., SideBySide]:
    """``side_by_side(name, fn, references, rounds)``: ``benchmark.pedantic`` times ``fn`` for ``rounds`` rounds;
    before each, untimed by the benchmark (its ``setup``), every reference runs once, so the candidates interleave.
    Returns their wall and CPU seconds per round (``fn`` under ``name``). CPU seconds (one-thread torch) are what a
    ratio of in-process work should use on a shared machine: other processes' load stretches wall time only."""

    def run(
        name: str, fn: Callable[[], object], references: dict[str, Callable[[], object]], rounds: int
    ) -> SideBySide:
        names = [name, *references]
        out = SideBySide({key: [] for key in names}, {key: [] for key in names})

        def call(key: str, key_fn: Callable[[], object]) -> None:
            wall, cpu, out.results[key] = clocked(key_fn)
            out.wall[key].append(wall)
            out.cpu[key].append(cpu)

        def setup() -> None:
            for ref, ref_fn in references.items():
                call(ref, ref_fn)

        benchmark.pedantic(lambda: call(name, fn), setup=setup, rounds=rounds, iterations=1)
        for key in names:
            benchmark.extra_info[f"median wall s {key}"] = round(out.median(key, "wall"), 4)
            benchmark.extra_info[f"median cpu s {key}"] = round(out.median(key, "cpu"), 4)
        return out

    return run
