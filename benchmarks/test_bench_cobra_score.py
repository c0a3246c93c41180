"""pytest-benchmark: one PGD step on COBRA's ensemble score against the bare backbone passes it implies.

CPU-sized (benchmarks/bench_cobra_score.py's defaults at a batch of 16: ResNet-18 width 16, T=10, K=4, i.e. 640
backbone passes forward and backward, bank of 5000), both in one process, interleaved; the median over rounds of
one round's ratio of CPU seconds (one thread); times only (the script measures peak memory, each kind in its own
process).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest
import torch

from benchmarks.bench_cobra_score import bare_passes, make_detector, parse_args, pgd_step, step_batch, synchronise
from detectors.cobra import COBRA

ARGV = ["--device", "cpu", "--batch", "16"]
ROUNDS = 5
#: PGD step / bare passes. The script's target is 1.05 at the paper's width 64 (measured 0.981); at width 16 the
#: score's own work (kNN over the bank, the ensemble) weighs more against the narrower backbone: measured 1.07 to
#: 1.13 (0.78 under a load of 5); the bound leaves room for noise.
MAX_OVER_BARE = 1.25


@pytest.fixture(scope="module")
def cobra() -> tuple[COBRA, torch.Tensor, argparse.Namespace]:
    args = parse_args(ARGV)
    det, x = make_detector(args), step_batch(args)
    with torch.no_grad():
        det.score(x[:2])  # warm-up
    return det, x, args


def test_cobra_pgd_step_against_bare_backbone_passes(side_by_side, report_ratio, cobra) -> None:
    det, x, args = cobra

    def step(kind: Callable[[COBRA, torch.Tensor], None]) -> None:
        kind(det, x)
        synchronise(args.device)

    run = side_by_side("pgd step", lambda: step(pgd_step), {"bare": lambda: step(bare_passes)}, ROUNDS)
    ratio, wall = (run.per_round(lambda t: t["pgd step"] / t["bare"], clock) for clock in ("cpu", "wall"))
    passes = det.passes_per_score * len(x)
    detail = (
        f"CPU s, median of {ROUNDS} rounds: PGD step {run.median('pgd step'):.3f}, bare {run.median('bare'):.3f} "
        f"(wall-clock ratio {wall:.3f}; width {args.width}, {passes} backbone passes, "
        f"{det._images_per_chunk()} images per chunk)"
    )
    report_ratio("COBRA PGD step / bare passes", ratio, f"<= {MAX_OVER_BARE}", detail)
    assert ratio <= MAX_OVER_BARE, detail
