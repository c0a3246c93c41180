"""GPU check: the gpu-marked tests, COBRA's throughput at the paper's width, our PGD's cost, and an FMNIST run.

One command for a machine with a CUDA GPU (under 8 minutes there); it prints one table:
- the result of the ``gpu``-marked tests (``tests/unit/test_gpu.py``: the local executor's one worker per GPU);
- COBRA's training step (images/s and peak memory; each image expands to 2 views x K shifts and three inner
  PGD-10 attacks) and test score (images/s without and with the input gradient, peak memory) at the paper's size:
  ResNet-18 width 64, 32 px RGB, batch 64, T = 10;
- our PGD's time against steps x one forward+backward of the score on the same images;
- a one-class Fashion-MNIST run (class 0, 32 px RGB, width 64, the paper preset's COBRA otherwise) trained for as
  many epochs as fit in the time left, with clean and PGD-10 robust AUROC at 4/255.

Without a GPU (or with ``--toy``) it runs the same code at toy sizes, which is what CI does (on one CPU thread).

    python -m benchmarks.gpu_check [--toy] [--budget-s 420] [--data-root DIR]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from attacks import create_attack
from bench.config import load_preset
from bench.data import load_split
from bench.errors import UsageError
from bench.metrics import auroc
from detectors import create_detector
from detectors.base import split_options
from detectors.csi import OPTIMISERS

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sizes:
    """What the check runs at."""

    width: int
    blocks: tuple[int, ...]
    image_size: int
    batch: int
    attack_steps: int
    score_samples: int
    bank: int  # training images in the throughput checks' feature bank
    pgd_steps: int
    pgd_images: int
    max_train: int | None  # FMNIST run: training images (None = the whole class)
    max_test: int
    max_epochs: int


PAPER = Sizes(64, (2, 2, 2, 2), 32, 64, 10, 10, 1000, 10, 64, None, 500, 100)
TOY = Sizes(4, (1, 1, 1, 1), 16, 8, 1, 1, 16, 2, 8, 64, 60, 2)


@dataclass
class Row:
    check: str
    result: str
    detail: str = ""


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, min_seconds: float, min_runs: int = 2) -> float:
    """Mean seconds per call of ``fn`` after one warm-up call, over at least ``min_runs`` calls and ``min_seconds``."""
    fn()
    synchronize(device)
    runs, start = 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - start < min_seconds:
        fn()
        runs += 1
    synchronize(device)
    return (time.perf_counter() - start) / runs


def peak_memory(device: torch.device, fn: Callable[[], object]) -> str:
    """Peak CUDA memory allocated while ``fn`` runs ("-" on a CPU)."""
    if device.type != "cuda":
        fn()
        return "-"
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    synchronize(device)
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"


def cobra(sizes: Sizes, meta: dict | None = None, **options: object):
    """The paper preset's COBRA at ``sizes`` (width, blocks, inner steps, T) for a dataset of kind ``meta``
    (default: low-res): the preset's options, then the dataset kind's, then these."""
    kind = split_options("cobra", meta if meta is not None else {"low_res": True})
    return create_detector(
        "cobra",
        **{
            **load_preset("paper").detector_options("cobra"),
            **kind,
            "width": sizes.width,
            "blocks": list(sizes.blocks),
            "attack_steps": sizes.attack_steps,
            "score_samples": sizes.score_samples,
            "batch_size": sizes.batch,
            **options,
        },
    )


def gpu_tests() -> Row:
    """Run the gpu-marked tests in a subprocess; their pytest summary line."""
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests/unit/test_gpu.py"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    summary = lines[-1].strip("= ") if lines else f"no output (exit {done.returncode})"
    return Row("gpu-marked tests", "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode})", summary)


def training_throughput(sizes: Sizes, device: torch.device, min_seconds: float) -> tuple[Row, float]:
    """Images/s of COBRA's training step (loss, backward, LARS step) and its peak memory."""
    det = cobra(sizes)
    det.setup((3, sizes.image_size, sizes.image_size))
    det.to(device)
    optimiser = OPTIMISERS[det.config.optimizer](det.net.parameters(), det.config)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(sizes.batch, 3, sizes.image_size, sizes.image_size, generator=generator).to(device)

    def step() -> None:
        det.net.train()
        loss = det.training_loss(x, generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    seconds = timed(step, device, min_seconds)
    memory = peak_memory(device, step)
    rate = sizes.batch / seconds
    detail = (
        f"width {sizes.width}, {sizes.image_size} px, batch {sizes.batch}, K={det.shift.num_shifts}, "
        f"inner PGD-{sizes.attack_steps}; {seconds * 1000:.0f} ms/step, peak {memory}"
    )
    return Row("COBRA training step", f"{rate:.1f} images/s", detail), rate


def fitted_on_random(sizes: Sizes, device: torch.device):
    """A COBRA with random weights and a feature bank of ``sizes.bank`` random images (for timing the score)."""
    det = cobra(sizes)
    det.setup((3, sizes.image_size, sizes.image_size))
    det.to(device).eval()
    bank = torch.rand(sizes.bank, 3, sizes.image_size, sizes.image_size, generator=torch.Generator().manual_seed(1))
    det._fit_bank(bank.to(device))
    return det


def score_throughput(det, sizes: Sizes, device: torch.device, min_seconds: float) -> tuple[Row, float]:
    """Images/s of the test score without and with the input gradient (and the seconds of one such gradient pass
    over the ``pgd_images`` images), with the gradient pass's peak memory."""
    x = torch.rand(sizes.pgd_images, 3, sizes.image_size, sizes.image_size).to(device)

    def forward() -> None:
        with torch.no_grad():
            det.score(x)

    def forward_backward() -> None:
        leaf = x.detach().requires_grad_(True)
        torch.autograd.grad(det.score(leaf).sum(), leaf)

    fwd = timed(forward, device, min_seconds)
    grad = timed(forward_backward, device, min_seconds)
    memory = peak_memory(device, forward_backward)
    detail = (
        f"T={sizes.score_samples} x K={det.shift.num_shifts} passes per image, bank of {sizes.bank}; "
        f"with input gradient {x.shape[0] / grad:.1f} images/s, peak {memory}"
    )
    return Row("COBRA test score", f"{x.shape[0] / fwd:.1f} images/s", detail), grad


def pgd_cost(det, sizes: Sizes, device: torch.device, grad_seconds: float) -> Row:
    """Our PGD's wall time against steps x (one forward+backward of the score) on the same images."""
    x = torch.rand(sizes.pgd_images, 3, sizes.image_size, sizes.image_size, generator=torch.Generator().manual_seed(2))
    is_anomaly = torch.arange(x.shape[0]) % 2 == 1
    attack = create_attack("pgd", eps=4 / 255, steps=sizes.pgd_steps, batch_size=x.shape[0])

    def run() -> None:
        attack.run(det, x, is_anomaly, generator=torch.Generator().manual_seed(0))

    seconds = timed(run, device, 0.0, min_runs=1)
    ratio = seconds / (sizes.pgd_steps * grad_seconds)
    steps = sizes.pgd_steps
    detail = f"PGD-{steps} on {x.shape[0]} images: {seconds:.2f} s vs {steps} x {grad_seconds:.3f} s"
    return Row("PGD cost / (steps x fwd+bwd)", f"{ratio:.2f}", detail)


def fmnist_run(
    sizes: Sizes, device: torch.device, seconds_left: float, train_rate: float, data_root: str | None
) -> Row:
    """COBRA on FMNIST class 0 for as many epochs as fit in ``seconds_left`` (minus its evaluation's estimate)."""
    try:
        split = load_split(
            "fmnist", 0, data_root, image_size=sizes.image_size, channels=3, max_train=sizes.max_train,
            max_test=sizes.max_test,
        )  # fmt: skip
    except UsageError as error:
        return Row("FMNIST one-class run", "skipped", str(error))
    n_train = split.train.shape[0]
    epoch_seconds = n_train / train_rate
    epochs = max(1, min(sizes.max_epochs, math.floor(0.8 * seconds_left / epoch_seconds)))
    det = cobra(sizes, split.meta, epochs=epochs, warmup_epochs=max(1, min(10, epochs // 10)))
    start = time.perf_counter()
    det.fit(split.train, device=device, generator=torch.Generator().manual_seed(0))
    fit_seconds = time.perf_counter() - start
    labels = split.test_is_anomaly.numpy()
    clean = auroc(det.score_batched(split.test).numpy(), labels)
    attack = create_attack("pgd", eps=4 / 255, steps=10)
    x_adv = attack.perturb(det, split.test, split.test_is_anomaly, generator=torch.Generator().manual_seed(1))
    robust = auroc(det.score_batched(x_adv).numpy(), labels)
    detail = (
        f"class 0, {n_train} train / {split.test.shape[0]} test images, {sizes.image_size} px, width {sizes.width}, "
        f"{epochs} epoch(s) in {fit_seconds:.0f} s, PGD-10 at 4/255"
    )
    return Row("FMNIST one-class run", f"{100 * clean:.1f} clean / {100 * robust:.1f} robust AUROC", detail)


def format_table(rows: list[Row], header: str) -> str:
    widths = [max(len(getattr(r, f)) for r in rows) for f in ("check", "result")]
    lines = [header, f"{'check':<{widths[0]}}  {'result':<{widths[1]}}  detail"]
    lines += [f"{r.check:<{widths[0]}}  {r.result:<{widths[1]}}  {r.detail}" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toy", action="store_true", help="toy sizes (the default without a CUDA GPU)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="seconds for the whole check (default 420)")
    parser.add_argument("--data-root", help="folder holding fmnist (default: Debian's dataset-fashion-mnist)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    sizes = TOY if args.toy or device.type != "cuda" else PAPER
    if device.type == "cpu":
        torch.set_num_threads(1)  # as a CPU worker of the local executor (tiny ops on shared cores crawl with more)
    min_seconds = 2.0 if sizes is PAPER else 0.0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} thread)"
    rows = [gpu_tests()]
    row, train_rate = training_throughput(sizes, device, min_seconds)
    rows.append(row)
    det = fitted_on_random(sizes, device)
    row, grad_seconds = score_throughput(det, sizes, device, min_seconds)
    rows.append(row)
    rows.append(pgd_cost(det, sizes, device, grad_seconds))
    del det
    seconds_left = args.budget_s - (time.perf_counter() - start)
    rows.append(fmnist_run(sizes, device, seconds_left, train_rate, args.data_root))
    size = "toy sizes" if sizes is TOY else "the paper's sizes"
    header = f"gpu_check on {name}, {size}, torch {torch.__version__}: {time.perf_counter() - start:.0f} s"
    print(format_table(rows, header))
    return 0 if rows[0].result == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
