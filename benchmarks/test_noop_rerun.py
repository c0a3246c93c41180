"""Overhead that must not grow with the grid: planning and rerunning a finished 10,000-cell grid.

The grid is digits' 10 classes x 100 seeds x one detector x 10 attacks (10,000 cells, 1,000 fit groups). Its
finished records and per-sample scores are written directly (no detector is fitted), a first run builds the
worst-case records, and then ``run_bench.py plan`` and a no-op ``run_bench.py`` are timed in-process (interpreter
and torch start-up excluded). Target: each under 5 s; the per-cell overhead is printed.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import pytest

from bench.cli import build_parser as cli_parser
from bench.cli import main, run_config_from_args
from bench.grid import build_grid
from bench.store import Record, RunStore, atomic_write_text, record_line

ATTACKS = "fgsm,fgsm-in,fgsm-out,pgd,pgd-in,pgd-out,apgd,apgd-in,apgd-out,square"
SEEDS = ",".join(str(s) for s in range(100))
TARGET_SECONDS = 5.0
#: The grid size the target is set for (the grid above: 10 classes x 100 seeds x 10 attacks).
N_CELLS = 10_000
N_TEST = 100


def grid_args(out: Path) -> list[str]:
    return ["--datasets", "digits", "--classes", "all", "--detectors", "deepsvdd", "--attacks", ATTACKS,
            "--seeds", SEEDS, "--executor", "serial", "--quiet", "--out", str(out)]  # fmt: skip


def finished_record(job, rng: np.random.Generator) -> Record:
    fit = job.fit
    return Record(
        dataset=fit.dataset, normal_class=fit.normal_class, detector=fit.detector, seed=fit.seed, attack=job.attack,
        norm=job.norm, eps=job.eps, key=job.key, seed_key=job.seed_key, preset=fit.preset,
        class_name=str(fit.normal_class), clean_auroc=0.9, robust_auroc=float(rng.uniform(0.3, 0.6)),
        n_normal=N_TEST // 2, n_anomaly=N_TEST // 2, fit_key="fit", fit_seconds=1.0, attack_seconds=1.0,
    )  # fmt: skip


@pytest.fixture(scope="module")
def finished_grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder holding every record and scores file of the 10,000-cell grid, then one real (no-op) run."""
    out = tmp_path_factory.mktemp("noop") / "run"
    cfg = run_config_from_args(cli_parser().parse_args(["run", *grid_args(out)]))
    jobs = [job for group in build_grid(cfg) for job in group.evals]
    assert len(jobs) == N_CELLS
    rng = np.random.default_rng(0)
    store = RunStore(out)
    labels = np.arange(N_TEST) % 2 == 1
    examples = np.zeros((8, 1, 8, 8), dtype=np.float16)
    (out / "scores").mkdir(parents=True)
    for job in jobs:
        np.savez(store.scores_path(job.key), clean=rng.normal(size=N_TEST), adv=rng.normal(size=N_TEST),
                 is_anomaly=labels, examples_clean=examples, examples_adv=examples)  # fmt: skip
    atomic_write_text(store.records_path, "".join(record_line(finished_record(job, rng)) for job in jobs))
    assert main(grid_args(out)) == 0  # builds the worst-case records (reads every scores file once)
    return out


def timed(argv: list[str], rounds: int = 3) -> float:
    """Median wall seconds of ``main(argv)`` over ``rounds`` runs (each must exit 0)."""
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        assert main(argv) == 0
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def test_noop_rerun_of_10000_cells(benchmark, finished_grid: Path) -> None:
    records = finished_grid / "records.jsonl"
    before = records.read_bytes()
    seconds = benchmark.pedantic(timed, args=(grid_args(finished_grid),), rounds=1, iterations=1)
    print(f"\nno-op rerun of 10,000 cells: {seconds:.2f} s median, {seconds / N_CELLS * 1e6:.0f} us per cell")
    assert records.read_bytes() == before  # a finished grid writes no record
    assert seconds < TARGET_SECONDS


def test_plan_of_10000_finished_cells(benchmark, finished_grid: Path) -> None:
    seconds = benchmark.pedantic(timed, args=(["plan", *grid_args(finished_grid)],), rounds=1, iterations=1)
    print(f"\nplan of 10,000 finished cells: {seconds:.2f} s median, {seconds / N_CELLS * 1e6:.0f} us per cell")
    assert seconds < TARGET_SECONDS
