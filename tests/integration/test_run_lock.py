"""One run per results folder: a second run into a folder another run holds exits 2 at once, naming the holder's
pid, and the first run completes every cell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOYS = ROOT / "tests" / "unit"  # test_executors_toys registers exec-toy-slow (one extra second per fit)
LAUNCH = "import sys, test_executors_toys; from bench.cli import main; sys.exit(main(sys.argv[1:]))"
GRID = ["--detectors", "exec-toy-slow", "--attacks", "pgd", "--datasets", "digits", "--classes", "0,1,2"]


def environment(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TOYS)]),
            "ROBUST_AD_BENCH_CACHE": str(tmp_path / "cache")}  # fmt: skip


def test_a_second_run_into_a_held_folder_exits_2_at_once_and_the_first_completes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [*GRID, "--executor", "serial", "--out", str(out), "--quiet"]
    first = subprocess.Popen([sys.executable, "-c", LAUNCH, *args], cwd=ROOT, env=environment(tmp_path),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    lock = out / ".lock"
    deadline = time.monotonic() + 120
    while not (lock.is_file() and lock.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock.read_text().strip() == str(first.pid)

    start = time.monotonic()
    second = subprocess.run([sys.executable, str(ROOT / "run_bench.py"), *args], cwd=ROOT, env=environment(tmp_path),
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    seconds = time.monotonic() - start
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"in use by another run (pid {first.pid})" in lines[0], second.stderr
    assert seconds < 1.0, f"the second run took {seconds:.2f}s to give up"
    assert first.poll() is None, "the first run was still running when the second gave up"

    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert sorted((r["normal_class"], r["attack"]) for r in records) == sorted(
        (c, a) for c in (0, 1, 2) for a in ("pgd", "worst-case")
    )
    again = subprocess.run([sys.executable, "-c", LAUNCH, *args], cwd=ROOT, env=environment(tmp_path),
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0 and "nothing to do" in again.stderr, "a finished holder releases the folder"
