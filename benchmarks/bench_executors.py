"""Benchmark (a script, not a test): the local executor on 2 CPU workers against the serial executor.

Runs the same grid of independent fit groups (one detector x several digits classes x one attack) twice, side
by side in one process: serially (one worker, one thread) and with ``--executor local --devices cpu,cpu`` (two
worker processes, one thread each), each with its own empty checkpoint cache so both fit every detector.
Prints both wall times (worker start-up included), the speed-up, and whether the records' numbers are equal.

    python -m benchmarks.bench_executors [--detector deepsvdd] [--attack pgd] [--classes 0,...,9] [--epochs 1000]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from bench.cache import CACHE_ENV
from bench.config import RunConfig, config_from_preset
from bench.executors import create_executor
from bench.grid import FitGroup, build_grid, freeze
from bench.store import RunStore

TIMING_FIELDS = {"fit_seconds", "attack_seconds"}


def with_epochs(groups: list[FitGroup], epochs: int) -> list[FitGroup]:
    """The groups with the detector's epochs overridden (its other options from the preset)."""
    out = []
    for group in groups:
        fit = dataclasses.replace(group.fit, detector_options=freeze({"epochs": epochs}))
        out.append(FitGroup(fit, [dataclasses.replace(job, fit=fit) for job in group.evals]))
    return out


def timed_run(
    executor: str, devices: list[str], cfg: RunConfig, epochs: int, workdir: Path
) -> tuple[float, dict[str, dict]]:
    """Wall time of one executor run on a fresh cache and results folder, and its records without timings."""
    os.environ[CACHE_ENV] = tempfile.mkdtemp(dir=workdir, prefix=f"cache-{executor}-")
    store = RunStore(tempfile.mkdtemp(dir=workdir, prefix=f"run-{executor}-"))
    groups = with_epochs(build_grid(cfg), epochs)
    start, cpu = time.perf_counter(), cpu_seconds()
    create_executor(executor, devices, threads=1).run(groups, store)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    records = {r["key"]: {k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in store.records()}
    return seconds, cpu, records


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (workers), user + system."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="deepsvdd")
    parser.add_argument("--attack", default="pgd")
    parser.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9", help="digits classes: one fit group each")
    parser.add_argument("--epochs", type=int, default=1000, help="detector epochs (long enough to amortise start-up)")
    parser.add_argument("--repeats", type=int, default=1, help="alternating serial/local pairs (median reported)")
    args = parser.parse_args()
    cfg = config_from_preset("quick")
    cfg.datasets, cfg.detectors, cfg.attacks = ["digits"], [args.detector], [args.attack]
    cfg.classes = {"digits": [int(c) for c in args.classes.split(",")]}
    runs: dict[str, list[tuple[float, float]]] = {"serial": [], "local": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            *serial_run, serial_records = timed_run("serial", ["cpu"], cfg, args.epochs, Path(tmp))
            *local_run, local_records = timed_run("local", ["cpu", "cpu"], cfg, args.epochs, Path(tmp))
            runs["serial"].append(tuple(serial_run))
            runs["local"].append(tuple(local_run))
    wall = {name: statistics.median(t for t, _ in pairs) for name, pairs in runs.items()}
    cpu = {name: statistics.median(c for _, c in pairs) for name, pairs in runs.items()}
    n = len(cfg.classes["digits"])
    grid = f"{n} fit groups ({args.detector}, {args.epochs} epochs, on digits classes {args.classes}) x {args.attack}"
    print(f"grid: {grid}, quick preset; 1-minute load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"serial, 1 worker x 1 thread:         wall {wall['serial']:7.1f}s  cpu {cpu['serial']:7.1f}s")
    print(f"local cpu,cpu, 2 workers x 1 thread: wall {wall['local']:7.1f}s  cpu {cpu['local']:7.1f}s (start-up incl.)")
    print(f"speed-up (wall): {wall['serial'] / wall['local']:.2f}x (target >= 1.6x); records equal: "
          f"{serial_records == local_records}")  # fmt: skip
    estimate = 2 * cpu["serial"] / cpu["local"]
    print(f"estimate for 2 otherwise idle cores (serial cpu / half the local cpu): {estimate:.2f}x")


if __name__ == "__main__":
    main()
