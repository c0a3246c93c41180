"""Benchmark script: the local executor on 2 CPU workers against the serial executor, and against the parallel
speed-up the machine gives in the same run (benchmarks/test_bench_executors.py asserts it under pytest).

Runs the same grid of independent fit groups (one detector x several digits classes x one attack) twice, side
by side in one process: serially (one worker, one thread) and with ``--executor local --devices cpu,cpu`` (two
worker processes, one thread each), each with its own empty checkpoint cache so both fit every detector. Each
run is timed as a whole and per group (``RunTiming``: when its first cell began, when its last result came, what
its cells took), so the speed-up between first cell and last result can be set against how much faster the cells
themselves ran on two workers. Before each pair, ``ParallelProbe`` measures what two busy processes get (small-CNN
steps in two processes at once against one) and how long two take to start as workers. Prints the wall times,
the speed-ups, the start-up and shutdown, and whether the records' numbers are equal.

    python -m benchmarks.bench_executors [--detector deepsvdd] [--attack pgd] [--classes 0,...,9] [--epochs 1000]
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

from bench.config import RunConfig, config_from_preset
from bench.executors import create_executor
from bench.grid import build_grid
from bench.paths import CACHE_ENV
from bench.store import RunStore

TIMING_FIELDS = {"fit_seconds", "attack_seconds", "sources_fingerprint"}  # differ run to run


def grid_config(detector: str, attack: str, classes: list[int], epochs: int, preset: str = "quick") -> RunConfig:
    """The preset's run config on digits ``classes`` x ``detector`` x ``attack``, the detector's epochs overridden
    (its other options from the preset)."""
    cfg = config_from_preset(preset)
    cfg.datasets, cfg.detectors, cfg.attacks = ["digits"], [detector], [attack]
    cfg.classes = {"digits": classes}
    options = dict(cfg.detector_options)
    options[detector] = {**options.get(detector, {}), "epochs": epochs}
    cfg.detector_options = options
    return cfg


def differences(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> list[str]:
    """``key field: a != b`` for each field where two ``record_numbers`` differ (and keys only one has)."""
    out = [f"{key}: only in one" for key in sorted(set(a) ^ set(b))]
    for key in sorted(set(a) & set(b)):
        out += [f"{key} {f}: {a[key][f]!r} != {b[key].get(f)!r}" for f in a[key] if a[key][f] != b[key].get(f)]
    return out


def record_numbers(store: RunStore) -> dict[str, dict[str, Any]]:
    """The store's records by key, without their wall-clock fields."""
    return {r.key: {k: v for k, v in dataclasses.asdict(r).items() if k not in TIMING_FIELDS} for r in store.records()}


@dataclass
class RunTiming:
    """One executor run: wall and CPU seconds, when its cells began and ended, what they took, its records."""

    wall: float
    cpu: float
    #: Seconds from the start to the first cell (spawning and importing workers; ~0 serially): the earliest
    #: finished group's completion time less its cells' seconds.
    startup: float
    #: Seconds from the start to the last group's result (what follows is shutdown: ``wall - last``).
    last: float
    #: Seconds the cells took, summed (each group's fit and attacks, timed where they ran).
    cells: float
    records: dict[str, dict[str, Any]]

    @property
    def span(self) -> float:
        """Wall seconds from the first cell to the last result."""
        return max(self.last - self.startup, 1e-6)

    @property
    def tail(self) -> float:
        """Wall seconds after the last result (stopping the workers, finishing the run)."""
        return self.wall - self.last

    @property
    def busy(self) -> float:
        """Cells running at a time, on average over the span (1 for a serial run without overheads)."""
        return self.cells / self.span


def group_seconds(result: Any) -> float:
    """What a finished group's cells took (its fit, once, and its attacks), from what ``on_result`` receives."""
    fit = max((r.fit_seconds or 0.0 for r in result.records), default=0.0)
    return fit + sum(r.attack_seconds or 0.0 for r in result.records)


def timed_run(executor: str, devices: list[str], cfg: RunConfig, workdir: Path) -> RunTiming:
    """One executor run on a fresh cache and results folder."""
    os.environ[CACHE_ENV] = tempfile.mkdtemp(dir=workdir, prefix=f"cache-{executor}-")
    store = RunStore(tempfile.mkdtemp(dir=workdir, prefix=f"run-{executor}-"))
    groups = build_grid(cfg)
    done: list[tuple[float, float]] = []
    start, cpu = time.perf_counter(), cpu_seconds()

    def on_result(result: Any) -> None:
        done.append((time.perf_counter() - start, group_seconds(result)))

    create_executor(executor, devices, threads=1).run(groups, store, on_result=on_result)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    startup = max(0.0, min((at - took for at, took in done), default=0.0))
    last = max((at for at, _ in done), default=seconds)
    return RunTiming(seconds, cpu, startup, last, sum(took for _, took in done), record_numbers(store))


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (workers), user + system."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def probe_worker(conn: Connection) -> None:
    """Probe process: started like a local worker (spawn, this module's imports, which are a worker's: torch, the
    executors, the grid and its registries), it says so, then on each ``(start_at, seconds)`` message runs
    one-thread training steps of a small CNN on 8x8 images (a digits DeepSVDD's kind of work) from ``start_at`` (a
    ``time.time()``) for ``seconds`` and replies with how many. ``None`` stops it."""
    torch.set_num_threads(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 3))
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))

    def step() -> None:
        net(x).square().mean().backward()

    step()
    conn.send("ready")
    while (message := conn.recv()) is not None:
        start_at, seconds = message
        while time.time() < start_at:
            time.sleep(0.001)
        count, end = 0, start_at + seconds
        while time.time() < end:
            step()
            count += 1
        conn.send(count)


class ParallelProbe:
    """What the machine delivers to ``workers`` processes right now: their start-up (``startup_s``: spawning them
    at once until all have imported what a local worker imports) and their throughput together against one's
    (``speedup``). The processes idle between measurements."""

    def __init__(self, workers: int = 2, seconds: float = 1.0) -> None:
        self.seconds = seconds
        context = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        start = time.perf_counter()
        for _ in range(workers):
            parent, child = context.Pipe()
            proc = context.Process(target=probe_worker, args=(child,), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        for conn in self.conns:
            conn.recv()  # started
        self.startup_s = time.perf_counter() - start

    def throughput(self, busy: int) -> int:
        """Steps done by ``busy`` of the processes running at once for ``seconds``."""
        start_at = time.time() + 0.05
        for conn in self.conns[:busy]:
            conn.send((start_at, self.seconds))
        return sum(conn.recv() for conn in self.conns[:busy])

    def speedup(self) -> float:
        """Throughput of all the processes at once over that of one (measured before and after, averaged)."""
        before = self.throughput(1)
        together = self.throughput(len(self.conns))
        return 2 * together / (before + self.throughput(1))

    def close(self) -> None:
        for conn, proc in zip(self.conns, self.procs, strict=True):
            conn.send(None)
            proc.join(timeout=10)

    def __enter__(self) -> ParallelProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def machine_probe(workers: int = 2) -> tuple[float, float]:
    """A fresh ``ParallelProbe``'s start-up seconds and parallel speed-up."""
    with ParallelProbe(workers) as probe:
        return probe.startup_s, probe.speedup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="deepsvdd")
    parser.add_argument("--attack", default="pgd")
    parser.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9", help="digits classes: one fit group each")
    parser.add_argument("--epochs", type=int, default=1000, help="detector epochs (long enough to amortise start-up)")
    parser.add_argument("--repeats", type=int, default=1, help="alternating serial/local pairs (median reported)")
    args = parser.parse_args()
    classes = [int(c) for c in args.classes.split(",")]
    cfg = grid_config(args.detector, args.attack, classes, args.epochs)
    runs: dict[str, list[RunTiming]] = {"serial": [], "local": []}
    probes: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            probes.append(machine_probe())
            runs["serial"].append(timed_run("serial", ["cpu"], cfg, Path(tmp)))
            runs["local"].append(timed_run("local", ["cpu", "cpu"], cfg, Path(tmp)))

    def median(name: str, field: str) -> float:
        return statistics.median(getattr(run, field) for run in runs[name])

    wall = {name: median(name, "wall") for name in runs}
    cpu = {name: median(name, "cpu") for name in runs}
    startup, cores = (statistics.median(values) for values in zip(*probes, strict=True))
    cells = 2 * median("serial", "cells") / median("local", "cells")
    busy = median("local", "busy") / median("serial", "busy")
    equal = all(s.records == loc.records for s, loc in zip(runs["serial"], runs["local"], strict=True))
    grid = f"{len(classes)} fit groups ({args.detector}, {args.epochs} epochs, on digits classes {args.classes})"
    print(f"grid: {grid} x {args.attack}, quick preset; 1-minute load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"serial, 1 worker x 1 thread:         wall {wall['serial']:7.1f}s  cpu {cpu['serial']:7.1f}s")
    print(f"local cpu,cpu, 2 workers x 1 thread: wall {wall['local']:7.1f}s  cpu {cpu['local']:7.1f}s (start-up incl.)")
    speedup, span = wall["serial"] / wall["local"], median("serial", "span") / median("local", "span")
    print(f"speed-up (wall): {speedup:.2f}x (target >= 1.6x); records equal: {equal}")
    print(f"from the first cell to the last result: {span:.2f}x (local: {median('local', 'startup'):.1f}s start-up "
          f"before, {median('local', 'tail'):.1f}s shutdown after); the cells ran {cells:.2f}x as fast on 2 workers "
          f"as on one; cells running at a time, local / serial: {busy:.2f} (2 at best)")  # fmt: skip
    print(f"machine: 2 busy one-thread processes do {cores:.2f}x the work of one; 2 spawned as workers start in "
          f"{startup:.1f}s (median of {len(probes)})")  # fmt: skip
    estimate = 2 * cpu["serial"] / cpu["local"]
    print(f"estimate for 2 otherwise idle cores (serial cpu / half the local cpu): {estimate:.2f}x")


if __name__ == "__main__":
    main()
