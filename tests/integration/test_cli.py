"""The CLI's contract with users: one-line errors with exit code 2, listings, and a resumable run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "run_bench.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--detectors", "nope"], "unknown detector 'nope'; choose from:"),
        (["--attacks", "nope"], "unknown attack 'nope'; choose from:"),
        (["--attacks", "pgd,worst-case"], "unknown attack 'worst-case'; choose from:"),
        (["--eps", "-1"], "invalid eps '-1'"),
        (["--eps", "abc"], "invalid eps 'abc'"),
        (["--classes", "42", "--datasets", "digits"], "digits has no class '42'; choose from: 0, 1"),
        (["--datasets", "nope"], "unknown dataset 'nope'; choose from:"),
        (["--norm", "l3"], "unknown norm 'l3'; choose from: linf, l2"),
        (["--preset", "nope"], "unknown preset 'nope'; choose from:"),
        (["--bogus-flag"], "unrecognized arguments"),
        (["--detectors", "zarnd"], "zarnd needs weights_path"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], needle: str, tmp_path: Path) -> None:
    result = run_cli(*args, "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_missing_dataset_names_the_path(tmp_path: Path) -> None:
    result = run_cli("--datasets", "cifar10", "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "r"))
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(tmp_path / "data") in result.stderr


def test_list_shows_every_registry() -> None:
    result = run_cli("--list")
    assert result.returncode == 0
    for section in ("detectors:", "attacks:", "datasets:", "executors:", "presets:"):
        assert section in result.stdout
    assert "digits" in result.stdout and "quick" in result.stdout


def read_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


def test_run_writes_records_then_resumes_without_work_then_adds_an_attack(tmp_path: Path) -> None:
    out = tmp_path / "run"
    grid = ["--detectors", "deepsvdd", "--datasets", "digits", "--classes", "0,1", "--eps", "0,4/255"]
    args = [*grid, "--attacks", "pgd", "--out", str(out), "--quiet"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    records = read_records(out)
    cells = {(r["normal_class"], r["eps"]): r for r in records if r["attack"] == "pgd"}
    worst = {(r["normal_class"], r["eps"]): r for r in records if r["attack"] == "worst-case"}
    assert len(records) == 8 and len(cells) == len(worst) == 4
    for group, record in cells.items():
        assert 0 <= record["robust_auroc"] <= record["clean_auroc"] + 0.005 <= 1.005
        if record["eps"] == 0:
            assert record["robust_auroc"] == record["clean_auroc"]
        assert worst[group]["sources"] == [record["key"]] and worst[group]["robust_auroc"] == record["robust_auroc"]
    assert all((out / "scores" / f"{r['key']}.npz").is_file() for r in records)
    assert {"manifest.json", "leaderboard.csv", "leaderboard.md"} <= {p.name for p in out.iterdir()}
    assert "worst-case 4/255" in (out / "leaderboard.md").read_text()
    before = (out / "records.jsonl").read_bytes()
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr
    assert "nothing to do: all 4 cells already finished" in second.stderr
    assert (out / "records.jsonl").read_bytes() == before

    third = run_cli(*grid, "--attacks", "pgd,fgsm", "--out", str(out), "--quiet")
    assert third.returncode == 0, third.stderr
    records = read_records(out)
    added = {(r["normal_class"], r["eps"]): r for r in records if r["attack"] == "fgsm"}
    replaced = {(r["normal_class"], r["eps"]): r for r in records if r["attack"] == "worst-case"}
    assert len(records) == 12 and len(added) == len(replaced) == 4
    for group, record in replaced.items():
        assert record["sources"] == sorted([cells[group]["key"], added[group]["key"]])
        assert record["robust_auroc"] <= min(cells[group]["robust_auroc"], added[group]["robust_auroc"])
        assert not (out / "scores" / f"{worst[group]['key']}.npz").exists()
