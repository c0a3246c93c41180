"""A local-executor run killed mid-grid (SIGKILL to its process group) resumes: only missing cells run again."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TOYS = ROOT / "tests" / "unit"  # test_executors_toys registers exec-toy-slow
CLASSES = [0, 2, 3, 4]
LAUNCH = "import sys, test_executors_toys; from bench.cli import main; sys.exit(main(sys.argv[1:]))"


def command(out: Path) -> list[str]:
    classes = ",".join(map(str, CLASSES))
    grid = ["--detectors", "exec-toy-slow", "--attacks", "pgd", "--datasets", "digits", "--classes", classes]
    local = ["--executor", "local", "--devices", "cpu,cpu"]
    return [sys.executable, "-c", LAUNCH, *grid, *local, "--out", str(out), "--quiet"]


def environment(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TOYS)]),
            "ROBUST_AD_BENCH_CACHE": str(tmp_path / "cache")}  # fmt: skip


def record_lines(out: Path) -> list[str]:
    path = out / "records.jsonl"
    return path.read_text().splitlines() if path.is_file() else []


def test_killed_local_run_resumes_only_missing_cells(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = subprocess.Popen(command(out), cwd=ROOT, env=environment(tmp_path), start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 180
    while not record_lines(out) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    done = record_lines(out)
    assert 1 <= len(done) < len(CLASSES), "the kill must land mid-grid"

    plan = subprocess.run([*command(out), "--plan"], cwd=ROOT, env=environment(tmp_path), capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    assert f"{len(done)} finished, {len(CLASSES) - len(done)} to run" in plan.stdout, plan.stdout
    assert record_lines(out) == done, "--plan runs nothing"

    second = subprocess.run(command(out), cwd=ROOT, env=environment(tmp_path), capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert second.returncode == 0, second.stderr
    summary = re.search(r"(\d+) cells computed, (\d+) already finished", second.stderr)
    assert summary, second.stderr
    assert (int(summary[1]), int(summary[2])) == (len(CLASSES) - len(done), len(done))
    lines = record_lines(out)
    # finished cells were kept, not redone; each class's worst-case record follows the cells
    assert len(lines) == 2 * len(CLASSES) and lines[: len(done)] == done
    assert sum('"attack": "worst-case"' in line for line in lines[len(CLASSES) :]) == len(CLASSES)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")], "no partial file is left"
    for path in (out / "scores").glob("*.npz"):
        with np.load(path) as scores:
            assert scores["adv"].shape == scores["clean"].shape
    assert len(list((out / "scores").glob("*.npz"))) == 2 * len(CLASSES)
