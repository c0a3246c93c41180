"""Benchmark (a script, not a test): the local executor on 2 CPU workers against the serial executor.

Runs the same grid of independent fit groups (one detector x several digits classes x one attack) twice, side
by side in one process: serially (one worker, one thread) and with ``--executor local --devices cpu,cpu`` (two
worker processes, one thread each), each with its own empty checkpoint cache so both fit every detector.
Prints both wall times (worker start-up included), the speed-up, and whether the records' numbers are equal.

    python -m benchmarks.bench_executors [--detector deepsvdd] [--attack pgd] [--classes 0,1,2,3,4,5] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.cache import CACHE_ENV
from bench.config import RunConfig, config_from_preset
from bench.executors import create_executor
from bench.grid import build_grid
from bench.store import RunStore

TIMING_FIELDS = {"fit_seconds", "attack_seconds"}


def timed_run(executor: str, devices: list[str], cfg: RunConfig, workdir: Path) -> tuple[float, dict[str, dict]]:
    """Wall time of one executor run on a fresh cache and results folder, and its records without timings."""
    os.environ[CACHE_ENV] = tempfile.mkdtemp(dir=workdir, prefix=f"cache-{executor}-")
    store = RunStore(tempfile.mkdtemp(dir=workdir, prefix=f"run-{executor}-"))
    groups = build_grid(cfg)
    start = time.perf_counter()
    create_executor(executor, devices, threads=1).run(groups, store)
    seconds = time.perf_counter() - start
    records = {r["key"]: {k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in store.records()}
    return seconds, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="deepsvdd")
    parser.add_argument("--attack", default="pgd")
    parser.add_argument("--classes", default="0,1,2,3,4,5", help="digits classes: one independent fit group each")
    parser.add_argument("--repeats", type=int, default=1, help="alternating serial/local pairs (median reported)")
    args = parser.parse_args()
    cfg = config_from_preset("quick")
    cfg.datasets, cfg.detectors, cfg.attacks = ["digits"], [args.detector], [args.attack]
    cfg.classes = {"digits": [int(c) for c in args.classes.split(",")]}
    serial_times, local_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            serial_seconds, serial_records = timed_run("serial", ["cpu"], cfg, Path(tmp))
            local_seconds, local_records = timed_run("local", ["cpu", "cpu"], cfg, Path(tmp))
            serial_times.append(serial_seconds)
            local_times.append(local_seconds)
    serial, local = statistics.median(serial_times), statistics.median(local_times)
    n = len(cfg.classes["digits"])
    print(f"grid: {n} fit groups ({args.detector} on digits classes {args.classes}) x {args.attack}, quick preset")
    print(f"serial, 1 worker x 1 thread:        {serial:7.1f}s  (runs: {', '.join(f'{t:.1f}' for t in serial_times)})")
    print(f"local cpu,cpu, 2 workers x 1 thread: {local:7.1f}s  (runs: {', '.join(f'{t:.1f}' for t in local_times)})")
    print(f"speed-up: {serial / local:.2f}x (target >= 1.6x); records equal: {serial_records == local_records}")


if __name__ == "__main__":
    main()
