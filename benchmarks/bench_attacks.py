"""Benchmark (a script, not a test): our PGD against torchattacks' PGD on a small trained detector.

Prints, for the same budget and seed, the median wall time over ``--repeats`` runs of each attack, their time
ratio, both robust AUROCs, and our attack's cost relative to ``steps`` x (one forward+backward of the score
on the same test set), with the score passes it counted.

    python -m benchmarks.bench_attacks [--detector deepsvdd] [--steps 10] [--eps 8/255] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from attacks import create_attack
from bench.config import parse_eps
from bench.data import load_split
from bench.metrics import auroc
from detectors import create_detector


def median_seconds(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time of ``fn`` over ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def forward_backward(detector, x: torch.Tensor) -> None:
    """One forward+backward of the score w.r.t. the inputs (what one attack step costs at least)."""
    x_req = x.detach().requires_grad_(True)
    torch.autograd.grad(detector.score(x_req).sum(), x_req)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="deepsvdd")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--eps", default="8/255")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    eps = parse_eps(args.eps)[0]

    split = load_split(args.dataset, normal_class=0, max_test=200)
    detector = create_detector(args.detector, preset="quick")
    detector.fit(split.train, device="cpu", generator=torch.Generator().manual_seed(0))
    detector.eval()
    x, is_anomaly = split.test, split.test_is_anomaly

    def attack(name: str):
        def run():
            atk = create_attack(name, eps=eps, steps=args.steps, batch_size=len(x))
            x_adv = atk.perturb(detector, x, is_anomaly, generator=torch.Generator().manual_seed(0))
            return atk, auroc(detector.score_batched(x_adv).numpy(), is_anomaly.numpy())

        return run

    clean = auroc(detector.score_batched(x).numpy(), is_anomaly.numpy())
    ours_s, (ours, ours_auroc) = median_seconds(attack("pgd"), args.repeats)
    theirs_s, (_, theirs_auroc) = median_seconds(attack("ta-pgd"), args.repeats)
    step_s, _ = median_seconds(lambda: forward_backward(detector, x), args.repeats)

    print(
        f"detector {args.detector} on {args.dataset} class 0: {len(x)} test images {tuple(x.shape[1:])}, "
        f"threads {torch.get_num_threads()}, eps {args.eps}, steps {args.steps}, median of {args.repeats}"
    )
    print(f"clean AUROC                       {100 * clean:6.2f}")
    print(f"ours  pgd      robust AUROC {100 * ours_auroc:6.2f}   time {ours_s:8.4f} s")
    print(f"torchattacks PGD robust AUROC {100 * theirs_auroc:6.2f}   time {theirs_s:8.4f} s")
    print(f"time ratio ours / torchattacks    {ours_s / theirs_s:6.3f}")
    print(f"one forward+backward of the score {step_s:8.4f} s")
    print(f"ours / (steps x forward+backward) {ours_s / (args.steps * step_s):6.3f}")
    print(
        f"score passes counted by ours: {ours.passes.forward} forward, {ours.passes.backward} backward images "
        f"(= {ours.passes.backward / len(x):.0f} backward + {ours.passes.forward / len(x):.0f} forward per image)"
    )


if __name__ == "__main__":
    main()
