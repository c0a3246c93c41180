"""Benchmark script: our PGD against torchattacks' PGD on a small trained detector (benchmarks/test_bench_attacks.py
asserts its ratios under pytest-benchmark).

Both sides produce a robust AUROC from the same budget and seed: ours runs the attack and reuses the scores it
tracked for its returned iterates, torchattacks' attack is followed by one score pass. Prints the median wall time
of each over ``--repeats`` rounds, measured side by side (every round times each candidate once, in turn, so
machine noise hits all alike), their time ratio and robust AUROCs, and our cost relative to ``steps`` x (one
forward+backward of the score on the same test set) and to the bare score passes it counted.

    python -m benchmarks.bench_attacks [--detector deepsvdd] [--dataset digits] [--steps 10] [--eps 8/255]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from attacks import create_attack
from bench.config import load_preset, parse_eps
from bench.data import load_split
from bench.metrics import auroc
from benchmarks.helpers import interleaved_medians
from detectors import create_detector


def forward_backward(detector, x: torch.Tensor) -> None:
    """One forward+backward of the score w.r.t. the inputs (what one attack step costs at least)."""
    x_req = x.detach().requires_grad_(True)
    torch.autograd.grad(detector.score(x_req).sum(), x_req)


def forward(detector, x: torch.Tensor) -> None:
    """One forward of the score without gradients."""
    with torch.no_grad():
        detector.score(x)


@dataclass
class Setup:
    """A fitted detector and the test images its attacks run on."""

    name: str
    dataset: str
    detector: Any
    x: torch.Tensor
    is_anomaly: torch.Tensor


def fitted(detector: str = "deepsvdd", dataset: str = "digits", preset: str = "quick") -> Setup:
    """The preset's detector fitted on ``dataset`` class 0 (up to 200 test images), in eval mode."""
    split = load_split(dataset, normal_class=0, max_test=200)
    det = create_detector(detector, **load_preset(preset).detector_options(detector))
    det.fit(split.train, device="cpu", generator=torch.Generator().manual_seed(0))
    det.eval()
    return Setup(detector, dataset, det, split.test, split.test_is_anomaly)


def robust_auroc(setup: Setup, attack: str, eps: float, steps: int) -> Callable[[], tuple[Any, float]]:
    """A function running ``attack`` (seed 0) and returning it (its pass counts) with the robust AUROC."""

    def run() -> tuple[Any, float]:
        atk = create_attack(attack, eps=eps, steps=steps, batch_size=len(setup.x))
        result = atk.run(setup.detector, setup.x, setup.is_anomaly, generator=torch.Generator().manual_seed(0))
        return atk, auroc(result.completed_scores(setup.detector).numpy(), setup.is_anomaly.numpy())

    return run


def counted_passes(attack: Any, n_images: int) -> tuple[float, float]:
    """The score passes over the test set ``attack`` counted: forward+backward ones and forward-only ones (every
    backward image was also counted as a forward)."""
    backward = attack.passes.backward / n_images
    return backward, (attack.passes.forward - attack.passes.backward) / n_images


def bare_seconds(attack: Any, n_images: int, fwd_bwd_s: float, fwd_s: float) -> float:
    """Seconds of the bare score passes ``attack`` counted, from one forward+backward and one forward's seconds."""
    backward, forward_only = counted_passes(attack, n_images)
    return backward * fwd_bwd_s + forward_only * fwd_s


def bare_passes(setup: Setup, attack: Any) -> Callable[[], None]:
    """A function running the bare score passes ``attack`` counted (whole ones), back to back."""
    backward, forward_only = (round(n) for n in counted_passes(attack, len(setup.x)))

    def run() -> None:
        for _ in range(backward):
            forward_backward(setup.detector, setup.x)
        for _ in range(forward_only):
            forward(setup.detector, setup.x)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="deepsvdd")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--eps", default="8/255")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    eps = parse_eps(args.eps)[0]
    setup = fitted(args.detector, args.dataset)
    det, x, is_anomaly = setup.detector, setup.x, setup.is_anomaly
    medians, results = interleaved_medians(
        {
            "ours": robust_auroc(setup, "pgd", eps, args.steps),
            "torchattacks": robust_auroc(setup, "ta-pgd", eps, args.steps),
            "fwd+bwd": lambda: forward_backward(det, x),
            "fwd": lambda: forward(det, x),
        },
        args.repeats,
    )
    (ours, ours_auroc), (_, theirs_auroc) = results["ours"], results["torchattacks"]
    step_s, fwd_s = medians["fwd+bwd"], medians["fwd"]
    clean = auroc(det.score_batched(x).numpy(), is_anomaly.numpy())
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
    bare = bare_seconds(ours, len(x), step_s, fwd_s)
    print(f"ours / (the bare passes it counted)      {medians['ours'] / bare:6.3f}")
    print(
        f"score passes counted by ours: {ours.passes.forward} forward, {ours.passes.backward} backward images "
        f"(= {ours.passes.backward / len(x):.0f} backward + {ours.passes.forward / len(x):.0f} forward per image)"
    )


if __name__ == "__main__":
    main()
