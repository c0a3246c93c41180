"""Executors: device parsing, scheduling, plan, history, OOM halving, failure isolation, serial == local."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import test_executors_toys as toys
import torch

from bench.cache import CheckpointCache
from bench.config import RunConfig
from bench.errors import UsageError
from bench.executors import create_executor
from bench.executors.base import registry_modules
from bench.executors.devices import parse_devices, physical_gpu, pinned_threads
from bench.executors.slurm import SlurmExecutor, parse_slurm_time
from bench.grid import build_grid, cell_keys
from bench.history import TimingHistory
from bench.plan import CACHED, TO_FIT, format_plan, longest_first, makespan, plan_groups
from bench.session import run_benchmark
from bench.store import Record, RunStore

TIMING_FIELDS = {"fit_seconds", "attack_seconds", "sources_fingerprint"}  # differ run to run


def toy_config(tmp_path: Path, detectors: list[str], classes: list[int], **overrides) -> RunConfig:
    cfg = RunConfig(
        datasets=["digits"],
        classes={"digits": classes},
        detectors=detectors,
        attacks=["pgd"],
        eps=[4 / 255],
        out=str(tmp_path / "run"),
        quiet=True,
        executor="serial",
        data_options={"digits": {"max_test": 60}},
    )
    for name, value in overrides.items():
        setattr(cfg, name, value)
    return cfg


def numbers(records: list[Record]) -> dict[str, dict]:
    """Records by key without the wall-clock fields."""
    return {r.key: {k: v for k, v in r.to_dict().items() if k not in TIMING_FIELDS} for r in records}


def finished(store: RunStore) -> set[str]:
    return {r.key for r in store.records() if r.finished}


def run(cfg: RunConfig) -> tuple[int, list[Record]]:
    code = run_benchmark(cfg, [])
    return code, RunStore(cfg.out).records()


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache root of this test only (workers inherit it through the environment)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("ROBUST_AD_BENCH_CACHE", str(root))
    return root


def test_parse_devices_and_slurm_time() -> None:
    assert parse_devices(["cpu", "cpu"]) == ["cpu", "cpu"]
    for bad in (["gpu0"], ["cuda:99"], []):
        with pytest.raises(UsageError):
            parse_devices(bad)
    assert [parse_slurm_time(t) for t in ("90", "01:30:00", "1-00", "00:00:30", "2:30")] == [90, 90, 1440, 1, 3]
    with pytest.raises(UsageError, match="invalid --slurm-time"):
        parse_slurm_time("1h")
    with pytest.raises(UsageError, match="--devices does not apply"):
        SlurmExecutor(["cpu"])
    with pytest.raises(UsageError, match="invalid threads"):
        create_executor("local", ["cpu"], threads=0)
    assert create_executor("local", None, threads=1).worker_devices()  # default: every GPU, else CPU shares


def test_gpu_workers_map_through_the_parents_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert physical_gpu(1) == "3"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert physical_gpu(1) == "1"


def test_pinned_threads_restores_setting() -> None:
    before = torch.get_num_threads()
    with pinned_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_history_medians_and_longest_first(tmp_path: Path) -> None:
    history = TimingHistory(tmp_path / "h.json")
    for seconds in (1.0, 5.0, 3.0):
        history.add_fit("exec-toy", "digits", "quick", seconds)
    history.add_attack("exec-toy", "digits", "quick", "pgd", 2.0)
    history.save()
    reread = TimingHistory(tmp_path / "h.json")
    assert reread.fit_seconds("exec-toy", "digits", "quick") == 3.0
    assert reread.attack_seconds("exec-toy", "digits", "quick", "pgd") == 2.0
    assert reread.fit_seconds("exec-toy", "mnist", "quick") is None
    assert reread.fit_seconds("exec-toy", "digits", "paper") is None, "another preset sizes the work differently"
    assert makespan([4, 3, 3, 2], 2) == 6 and makespan([4, 3, 3, 2], 1) == 12


def test_plan_counts_cached_fits_finished_cells_and_orders_longest_first(tmp_path: Path, fresh_cache: Path) -> None:
    cfg = toy_config(tmp_path, ["exec-toy", "exec-toy-nan"], [0, 2])
    groups = build_grid(cfg)
    store = RunStore(cfg.out)
    history = TimingHistory(tmp_path / "h.json")
    history.add_fit("exec-toy-nan", "digits", "quick", 10.0)
    history.add_attack("exec-toy-nan", "digits", "quick", "pgd", 1.0)
    planned = plan_groups(groups, finished(store), history=history, cache=CheckpointCache())
    assert [p.fit for p in planned] == [TO_FIT] * 4 and all(len(p.todo) == 1 for p in planned)
    assert [p.seconds for p in planned] == [None, 11.0, None, 11.0]  # classes outer, detectors inner
    assert [p.group.fit.detector for p in longest_first(planned)][-1] == "exec-toy-nan"  # unknown ones first
    assert run_benchmark(toy_config(tmp_path, ["exec-toy"], [0]), []) == 0  # fits and finishes class 0
    planned = plan_groups(groups, finished(store), history=history, cache=CheckpointCache())
    assert not planned[0].todo and longest_first(planned)[0].group.fit.label == "digits/2 exec-toy seed 0"
    text = format_plan(planned, workers=2)
    assert "0 cached" in text and "1 with nothing left" in text and "1 finished, 3 to run" in text
    wider = build_grid(toy_config(tmp_path, ["exec-toy"], [0], eps=[4 / 255, 8 / 255]))
    planned = plan_groups(wider, finished(store), history=history, cache=CheckpointCache())
    assert planned[0].fit == CACHED and planned[0].finished == 1 and len(planned[0].todo) == 1


def test_nan_class_fails_one_record_and_rerun_retries_only_it(tmp_path: Path, fresh_cache: Path) -> None:
    cfg = toy_config(tmp_path, ["exec-toy-nan"], [0, 1, 2])
    code, records = run(cfg)
    assert code == 1
    failed = [r for r in records if r.status == "failed"]
    assert len(records) == 6 and len(failed) == 2  # 3 cells and their worst cases (the failed cell's has no number)
    assert {r.attack for r in failed} == {"pgd", "worst-case"}
    assert failed[0].normal_class == toys.BAD_CLASS and "NaN" in failed[0].error
    manifest = json.loads((Path(cfg.out) / "manifest.json").read_text())
    assert manifest["executor"] == {"name": "serial", "devices": ["cpu"], "threads": 1}
    ok_before = {r.key: r for r in records if r.status == "ok"}
    code, records = run(cfg)  # the failed cell is retried (and fails again); finished cells are not recomputed
    assert code == 1
    assert {r.key: r for r in records if r.status == "ok"} == ok_before
    lines = (Path(cfg.out) / "records.jsonl").read_text().splitlines()
    assert len(lines) == 7  # the retried cell is appended; the worst cases, unchanged, are not rewritten


def test_out_of_memory_halves_attack_batch_until_it_fits(tmp_path: Path, fresh_cache: Path) -> None:
    cfg = toy_config(tmp_path, ["exec-toy-oom"], [0])
    code, records = run(cfg)
    assert code == 0, records
    assert records[0].status == "ok" and records[0].robust_auroc is not None
    assert records[0].score_backwards > 0


def test_registry_modules_name_the_toy_module(tmp_path: Path) -> None:
    groups = build_grid(toy_config(tmp_path, ["exec-toy"], [0]))
    assert {"test_executors_toys", "attacks.pgd", "bench.data.digits"} <= set(registry_modules(groups))


def test_local_cpu_cpu_equals_serial_and_a_killed_worker_fails_only_its_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROBUST_AD_BENCH_CACHE", str(tmp_path / "serial-cache"))
    code, serial = run(toy_config(tmp_path / "serial", ["exec-toy"], [0, 1]))
    assert code == 0
    monkeypatch.setenv("ROBUST_AD_BENCH_CACHE", str(tmp_path / "local-cache"))
    detectors = ["exec-toy", "exec-toy-crash"]
    cfg = toy_config(tmp_path / "local", detectors, [0, 1], executor="local", devices=["cpu", "cpu"])
    code, local = run(cfg)
    assert code == 1
    by_detector = {(r.detector, r.normal_class, r.attack): r for r in local}
    crashed = by_detector.pop(("exec-toy-crash", toys.BAD_CLASS, "pgd"))
    assert crashed.status == "failed" and "SIGKILL" in crashed.error and "worker on cpu" in crashed.error
    assert by_detector.pop(("exec-toy-crash", toys.BAD_CLASS, "worst-case")).status == "failed"
    assert all(r.status == "ok" for r in by_detector.values())
    toy_records = [r for r in local if r.detector == "exec-toy"]
    assert numbers(toy_records) == numbers(serial)
    history = TimingHistory()
    assert history.fit_seconds("exec-toy", "digits", "quick") is not None


def test_attack_seed_survives_code_changes_that_move_the_cell_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (group,) = build_grid(toy_config(tmp_path, ["exec-toy"], [0]))
    job = group.evals[0]
    config = json.loads(job.attack_config)
    assert cell_keys(group.fit.spec, job.attack, config, job.code) == (job.key, job.seed_key)
    edited = dict(group.fit.spec, code="edited")  # what any edit of the detector's files does to the spec
    key, seed_key = cell_keys(edited, job.attack, config, job.code)
    assert key != job.key, "the cache key must see the edit"
    assert seed_key == job.seed_key, "the attack's random start must not"
    assert cell_keys(group.fit.spec, job.attack, config, "edited")[1] == job.seed_key
    other_eps = build_grid(toy_config(tmp_path, ["exec-toy"], [0], eps=[8 / 255]))[0].evals[0]
    assert other_eps.seed_key != job.seed_key
