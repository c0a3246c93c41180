"""GPU checks (marked ``gpu``, skipped without CUDA): the local executor's one worker per GPU, COBRA on a GPU.

``python -m benchmarks.gpu_check`` runs these and reports their result in its table. The ``gpu-probe`` toy
records, from inside each worker, which physical GPU it was given and which device it fitted on.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from bench.config import RunConfig
from bench.data import load_split
from bench.executors import create_executor
from bench.executors.devices import visible_gpus
from bench.grid import build_grid
from bench.store import RunStore
from detectors import Detector, create_detector, register_detector
from detectors.base import split_options
from detectors.deepsvdd import DeepSVDD

pytestmark = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
PROBE_LOG = "ROBUST_AD_BENCH_GPU_PROBE_LOG"


@register_detector("gpu-probe")
class GPUProbe(DeepSVDD):
    """DeepSVDD that appends "<physical GPU> <fit device> <parameter device>" to the file named by $PROBE_LOG."""

    def fit(self, train, *, device="cpu", generator=None, progress=None) -> Detector:
        super().fit(train, device=device, generator=generator)
        param_device = next(self.parameters()).device
        with open(os.environ[PROBE_LOG], "a") as log:
            log.write(f"{os.environ.get('CUDA_VISIBLE_DEVICES', '-')} {device} {param_device}\n")
        return self


@needs_cuda
def test_local_executor_runs_one_worker_per_gpu_and_fits_on_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    gpus = visible_gpus()
    executor = create_executor("local")
    assert executor.worker_devices() == gpus and executor.parallelism == len(gpus)
    log = tmp_path / "probe.log"
    monkeypatch.setenv(PROBE_LOG, str(log))
    classes = list(range(min(10, 2 * len(gpus))))
    cfg = RunConfig(
        datasets=["digits"],
        classes={"digits": classes},
        detectors=["gpu-probe"],
        attacks=["pgd"],
        eps=["auto"],
        out=str(tmp_path / "run"),
        quiet=True,
        data_options={"digits": {"max_test": 60}},
    )
    store = RunStore(cfg.out)
    results = executor.run(build_grid(cfg), store)
    records = [r for result in results for r in result.records]
    assert len(records) == len(classes) and all(r.ok for r in records)
    assert all(r.eps == 4 / 255 for r in records)
    lines = [line.split() for line in log.read_text().splitlines()]
    assert len(lines) == len(classes)
    assert all(fit == "cuda:0" and param == "cuda:0" for _, fit, param in lines)  # each worker sees its one GPU
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    physical = [d.strip() for d in visible.split(",")] if visible else [str(i) for i in range(len(gpus))]
    assert {gpu for gpu, _, _ in lines} <= set(physical)


@needs_cuda
def test_cobra_fits_and_scores_on_the_gpu_like_on_the_cpu():
    split = load_split("digits", 0, max_test=40)
    options = {"epochs": 1, "width": 8, "blocks": [1, 1, 1, 1], "score_samples": 1, "attack_steps": 1, "max_train": 64}
    det = create_detector("cobra", **split_options("cobra", split.meta), **options)
    det.fit(split.train, device="cuda", generator=torch.Generator().manual_seed(0))
    assert det.device.type == "cuda"
    scores = det.score_batched(split.test)
    assert torch.isfinite(scores).all()
    x = split.test[:8].cuda().requires_grad_(True)
    (grad,) = torch.autograd.grad(det.score(x).sum(), x)
    assert grad.abs().sum() > 0
    cpu = create_detector("cobra", **split_options("cobra", split.meta), **options)
    cpu.setup(tuple(split.train.shape[1:]))
    cpu.load_state_dict({k: v.cpu() for k, v in det.state_dict().items()})
    cpu.eval()
    assert torch.allclose(cpu.score_batched(split.test), scores, rtol=1e-3, atol=1e-3)
