"""Benchmark (a script, not a test): our PGD against torchattacks' PGD on a small trained detector.

Both sides produce a robust AUROC from the same budget and seed: ours runs the attack and reuses the scores it
tracked for its returned iterates, torchattacks' attack is followed by one score pass. Prints the median wall time
of each over ``--repeats`` rounds, measured side by side (every round times each candidate once, in turn, so
machine noise hits all alike), their time ratio and robust AUROCs, and our cost relative to ``steps`` x (one
forward+backward of the score on the same test set), with the score passes it counted.

    python -m benchmarks.bench_attacks [--detector deepsvdd] [--dataset digits] [--steps 10] [--eps 8/255]
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


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, float], dict]:
    """Median wall time of each function over ``repeats`` rounds (each round calls every one once, in turn)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    results: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, results


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

    def robust_auroc(name: str) -> Callable[[], tuple[object, float]]:
        def run() -> tuple[object, float]:
            atk = create_attack(name, eps=eps, steps=args.steps, batch_size=len(x))
            result = atk.run(detector, x, is_anomaly, generator=torch.Generator().manual_seed(0))
            return atk, auroc(result.completed_scores(detector).numpy(), is_anomaly.numpy())

        return run

    def forward() -> None:
        with torch.no_grad():
            detector.score(x)

    medians, results = interleaved_medians(
        {
            "ours": robust_auroc("pgd"),
            "torchattacks": robust_auroc("ta-pgd"),
            "fwd+bwd": lambda: forward_backward(detector, x),
            "fwd": forward,
        },
        args.repeats,
    )
    (ours, ours_auroc), (_, theirs_auroc) = results["ours"], results["torchattacks"]
    step_s, fwd_s = medians["fwd+bwd"], medians["fwd"]
    clean = auroc(detector.score_batched(x).numpy(), is_anomaly.numpy())
    print(
        f"detector {args.detector} on {args.dataset} class 0: {len(x)} test images {tuple(x.shape[1:])}, "
        f"threads {torch.get_num_threads()}, eps {args.eps}, steps {args.steps}, median of {args.repeats} rounds"
    )
    print(f"clean AUROC                              {100 * clean:6.2f}")
    print("attack + robust scores:")
    print(f"  ours pgd          robust AUROC {100 * ours_auroc:6.2f}   time {medians['ours']:8.4f} s")
    print(f"  torchattacks PGD  robust AUROC {100 * theirs_auroc:6.2f}   time {medians['torchattacks']:8.4f} s")
    print(f"time ratio ours / torchattacks           {medians['ours'] / medians['torchattacks']:6.3f}")
    print(f"one forward+backward of the score        {step_s:8.4f} s   one forward {fwd_s:8.4f} s")
    print(f"ours / (steps x forward+backward)        {medians['ours'] / (args.steps * step_s):6.3f}")
    print(f"ours / (steps x fwd+bwd + one forward)   {medians['ours'] / (args.steps * step_s + fwd_s):6.3f}")
    print(
        f"score passes counted by ours: {ours.passes.forward} forward, {ours.passes.backward} backward images "
        f"(= {ours.passes.backward / len(x):.0f} backward + {ours.passes.forward / len(x):.0f} forward per image)"
    )


if __name__ == "__main__":
    main()
