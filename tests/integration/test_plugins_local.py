"""A detector from a file outside the project (``--plugins``) runs through the local executor's worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = '''"""Someone's own detector, in their own folder."""
import os

import torch
from detectors import Detector, register_detector


@register_detector("plugin-mean")
class MeanDistance(Detector):
    """Squared distance to the mean normal image."""

    def build(self, input_shape):
        self.register_buffer("mean", torch.zeros(input_shape))

    def fit(self, train, *, device="cpu", generator=None, progress=None):
        self.setup(tuple(train.shape[1:]))
        self.mean.copy_(train.mean(0))
        with open(os.environ["PLUGIN_FIT_LOG"], "a") as log:
            log.write(f"{os.getpid()}\\n")
        return self.to(device).eval()

    def score(self, x):
        return (x - self.mean).flatten(1).pow(2).sum(1)
'''


def test_a_plugin_file_detector_runs_on_two_local_cpu_workers(tmp_path: Path) -> None:
    plugin = tmp_path / "elsewhere" / "mean_distance.py"
    plugin.parent.mkdir()
    plugin.write_text(PLUGIN)
    out, log = tmp_path / "run", tmp_path / "fits.log"
    args = ["--plugins", str(plugin), "--detectors", "plugin-mean", "--attacks", "fgsm", "--datasets", "digits",
            "--classes", "0,1", "--executor", "local", "--devices", "cpu,cpu", "--out", str(out),
            "--quiet"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_bench.py"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PLUGIN_FIT_LOG": str(log)},
    )
    assert result.returncode == 0, result.stderr
    cells = [r for r in RunStore(out).records() if r.attack == "fgsm"]
    assert sorted(r.normal_class for r in cells) == [0, 1]
    assert all(r.status == "ok" and r.detector == "plugin-mean" and r.robust_auroc is not None for r in cells)
    fitted_by = set(log.read_text().split())
    assert len(fitted_by) == 2  # both fits ran in worker processes, one each
