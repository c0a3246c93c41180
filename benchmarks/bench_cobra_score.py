"""Time and peak memory of one PGD step on COBRA's ensemble score against the bare backbone passes it implies
(benchmarks/test_bench_cobra_score.py asserts the time ratio under pytest-benchmark, at a CPU-sized batch).

One PGD step = score forward + input gradient for a batch of 64 CIFAR-shaped images with T=10 augmentations and
K=4 rotations, i.e. T*K*64 = 2560 backbone passes forward and backward. The bare reference runs exactly those
passes (the same augmented images, same chunking) through the backbone alone, with input gradients. Each
measurement runs in a fresh subprocess so that its peak memory (ru_maxrss on CPU, max_memory_allocated on CUDA)
is its own; times are the median of ``--repeats`` runs. ``--batch``, ``--samples`` (T) and ``--bank`` shrink the
step (defaults: the sizes above).

    python benchmarks/bench_cobra_score.py                       # narrow net on CPU (width 16)
    python benchmarks/bench_cobra_score.py --width 64 --device cuda   # the paper's ResNet-18
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.augment import augment_view
from detectors.cobra import COBRA, COBRAConfig

BATCH, T, BANK = 64, 10, 5000


def make_detector(args: argparse.Namespace) -> COBRA:
    """A COBRA detector of the requested size with a random (normalised) bank of ``args.bank`` training images."""
    config = COBRAConfig(width=args.width, blocks=args.blocks, score_samples=args.samples, max_memory_mb=args.memory_mb)
    det = COBRA(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        det.setup((3, 32, 32))
    generator = torch.Generator().manual_seed(1)
    k = det.shift.num_shifts
    bank = F.normalize(torch.randn(args.bank, k, det.feature_bank.shape[1] // k, generator=generator), dim=2)
    det.feature_bank = bank.flatten(1)
    return det.to(args.device).eval()


def synchronise(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def pgd_step(det: COBRA, x: torch.Tensor) -> None:
    xr = x.clone().requires_grad_(True)
    torch.autograd.grad(det.score(xr).sum(), xr)


def bare_passes(det: COBRA, x: torch.Tensor) -> None:
    """The T*K*N backbone passes of the score, forward and backward to the input, in the score's chunks."""
    for part in x.split(det._images_per_chunk()):
        leaf = part.clone().requires_grad_(True)
        views = [
            augment_view(leaf, det.shift, k, det._eval_params[t][k], crop=det.crop).detach().requires_grad_(True)
            for t in range(det.config.score_samples)
            for k in range(det.shift.num_shifts)
        ]
        batch = torch.cat(views)
        torch.autograd.grad(det.net.backbone(batch).sum(), batch)


def step_batch(args: argparse.Namespace) -> torch.Tensor:
    """The ``args.batch`` random CIFAR-shaped images a step is measured on."""
    return torch.rand(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(2)).to(args.device)


def timed_step(step: Callable[[COBRA, torch.Tensor], None], det: COBRA, x: torch.Tensor, device: str) -> float:
    """Wall seconds of one ``step`` (device synchronised before and after)."""
    synchronise(device)
    start = time.perf_counter()
    step(det, x)
    synchronise(device)
    return time.perf_counter() - start


def measure(args: argparse.Namespace) -> dict:
    """Run one kind of step ``args.repeats`` times in this process; times and peak memory."""
    det = make_detector(args)
    x = step_batch(args)
    step = pgd_step if args.measure == "pgd" else bare_passes
    with torch.no_grad():
        det.score(x[:2])  # warm-up
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    times = [timed_step(step, det, x, args.device) for _ in range(args.repeats)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss
    if args.device.startswith("cuda"):
        peak = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
    return {
        "median_s": statistics.median(times),
        "times": times,
        "peak_mb": peak,
        "chunk": det._images_per_chunk(),
        "passes_per_image": det.passes_per_score,
    }


def run_child(kind: str, args: argparse.Namespace) -> dict:
    """``measure`` of one kind of step in a fresh subprocess (so that its peak memory is its own)."""
    cmd = [sys.executable, __file__, "--measure", kind, "--width", str(args.width), "--device", args.device]
    cmd += ["--repeats", str(args.repeats), "--blocks", *map(str, args.blocks)]
    cmd += ["--batch", str(args.batch), "--samples", str(args.samples), "--bank", str(args.bank)]
    if args.memory_mb is not None:
        cmd += ["--memory-mb", str(args.memory_mb)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=16, help="ResNet-18 width (64 = the paper's)")
    parser.add_argument("--blocks", type=int, nargs=4, default=[2, 2, 2, 2])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-mb", type=float, default=None, help="score memory budget (default: derived)")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"images per step (default {BATCH})")
    parser.add_argument("--samples", type=int, default=T, help=f"T, test augmentations per shift (default {T})")
    parser.add_argument("--bank", type=int, default=BANK, help=f"feature bank images (default {BANK})")
    parser.add_argument("--measure", choices=["pgd", "bare"], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.measure:
        print(json.dumps(measure(args)))
        return
    pgd, bare = run_child("pgd", args), run_child("bare", args)
    t, batch = args.samples, args.batch
    k = pgd["passes_per_image"] // t
    print(f"COBRA score PGD step: batch {batch}, T={t}, K={k} ({t * k * batch} backbone passes), bank {args.bank}")
    print(f"backbone: ResNet-18 width {args.width} blocks {args.blocks} on {args.device}; median of {args.repeats}")
    print("released code (rohban-lab/COBRA) is not available locally: no side-by-side run against it")
    print(f"{'':12s}{'median s':>10s}{'peak MB':>10s}")
    for name, result in (("PGD step", pgd), ("bare passes", bare)):
        print(f"{name:12s}{result['median_s']:10.3f}{result['peak_mb']:10.0f}")
    print(f"images per chunk: {pgd['chunk']}")
    print(f"time ratio PGD step / bare passes: {pgd['median_s'] / bare['median_s']:.3f} (target <= 1.05)")
    print(f"peak memory of a PGD step: {pgd['peak_mb'] / 1024:.2f} GB (target <= 4 GB)")


if __name__ == "__main__":
    main()
