"""``python -m benchmarks.gpu_check`` at toy size (what CI runs on a CPU): one table with every check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ("gpu-marked tests", "COBRA training step", "COBRA test score", "PGD cost / (steps x fwd+bwd)", "FMNIST")


def test_gpu_check_runs_at_toy_size_and_prints_its_table():
    command = [sys.executable, "-m", "benchmarks.gpu_check", "--toy", "--budget-s", "20"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("gpu_check on ") and "toy sizes" in lines[0]
    for check in CHECKS:
        assert sum(line.startswith(check) for line in lines) == 1, (check, done.stdout)
    tests = next(line for line in lines if line.startswith("gpu-marked tests"))
    assert ("passed" in tests) if torch.cuda.is_available() else ("skipped" in tests)
