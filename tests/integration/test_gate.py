"""The regression gate end to end: a changed training seed moves the numbers and the gate names the cells."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "bench" / "presets" / "smoke.toml"
GRID = ["--detectors", "deepsvdd", "--attacks", "pgd", "--classes", "0", "--executor", "serial", "--quiet"]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "run_bench.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )


def test_changing_a_training_seed_fails_the_gate(tmp_path: Path) -> None:
    env = {"ROBUST_AD_BENCH_CACHE": str(tmp_path / "cache")}
    reseeded = tmp_path / "reseeded.toml"
    text = SMOKE.read_text().replace("[detectors.deepsvdd]\n", "[detectors.deepsvdd]\ntrain_seed = 1\n", 1)
    assert text != SMOKE.read_text()
    reseeded.write_text(text)
    baseline = tmp_path / "baseline.json"

    assert cli("--preset", str(SMOKE), "--out", str(tmp_path / "a"), *GRID, env=env).returncode == 0
    update = cli("check", "--baseline", str(baseline), "--results", str(tmp_path / "a"), "--update", env=env)
    assert update.returncode == 0, update.stderr
    same = cli("check", "--baseline", str(baseline), "--results", str(tmp_path / "a"), env=env)
    assert same.returncode == 0, same.stdout + same.stderr

    assert cli("--preset", str(reseeded), "--out", str(tmp_path / "b"), *GRID, env=env).returncode == 0
    moved = cli("check", "--baseline", str(baseline), "--results", str(tmp_path / "b"), env=env)
    assert moved.returncode == 1, moved.stdout + moved.stderr
    assert "dataset=digits class=0 detector=deepsvdd seed=0 attack=pgd" in moved.stdout + moved.stderr
