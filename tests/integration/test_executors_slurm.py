"""The slurm executor through submitit's local cluster gives the serial executor's records, via part files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("submitit")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))  # the toy detectors, importable by jobs

import test_executors_toys  # noqa: F401  (registers the toys)

from bench.config import RunConfig
from bench.session import run_benchmark
from bench.store import Record, RunStore

TIMING_FIELDS = {"fit_seconds", "attack_seconds", "sources_fingerprint"}  # differ run to run


def grid(out: Path, **overrides) -> RunConfig:
    cfg = RunConfig(
        datasets=["digits"], classes={"digits": [0, 1]}, detectors=["exec-toy"], attacks=["pgd"], eps=[4 / 255],
        out=str(out), quiet=True, data_options={"digits": {"max_test": 60}},
    )  # fmt: skip
    for name, value in overrides.items():
        setattr(cfg, name, value)
    return cfg


def numbers(records: list[Record]) -> dict[str, dict]:
    return {r.key: {k: v for k, v in r.to_dict().items() if k not in TIMING_FIELDS} for r in records}


def test_slurm_on_submitit_local_cluster_equals_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUST_AD_BENCH_CACHE", str(tmp_path / "serial-cache"))
    assert run_benchmark(grid(tmp_path / "serial"), []) == 0
    serial = RunStore(tmp_path / "serial").records()
    monkeypatch.setenv("ROBUST_AD_BENCH_CACHE", str(tmp_path / "slurm-cache"))
    cfg = grid(tmp_path / "slurm", executor="slurm", executor_options={"cluster": "local", "time": "00:05:00"})
    assert run_benchmark(cfg, []) == 0
    run_dir = tmp_path / "slurm"
    assert numbers(RunStore(run_dir).records()) == numbers(serial)
    assert not list((run_dir / "parts").glob("*.jsonl")), "parts are consolidated into records.jsonl"
    assert len((run_dir / "records.jsonl").read_text().splitlines()) == 4  # 2 cells and their worst cases
    assert list((run_dir / "submitit").iterdir()), "the submitit folder lives inside the run folder"
    assert RunStore(run_dir).read_manifest()["executor"]["name"] == "slurm"
