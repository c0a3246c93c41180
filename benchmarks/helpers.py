"""Shared helpers of the benchmarks: side-by-side (interleaved) timing.

Imported by the scripts (``python -m benchmarks.bench_*``) and by the pytest-benchmark suite (benchmarks/test_*.py).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Wall seconds of one call of ``fn`` and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def clocked(fn: Callable[[], object]) -> tuple[float, float, object]:
    """Wall and CPU seconds (this process's, all threads) of one call of ``fn``, and its result."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, float], dict]:
    """Median wall time of each function over ``repeats`` rounds (each round calls every one once, in turn, so
    machine noise hits all alike), and each one's last result."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    results: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            seconds, results[name] = timed(fn)
            times[name].append(seconds)
    return {name: statistics.median(t) for name, t in times.items()}, results
