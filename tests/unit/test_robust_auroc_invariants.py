"""Invariants of robust AUROC on real data and every registered detector.

- an unbounded budget (L-inf eps=1 lets the attacker draw any image) drives robust AUROC to at most 1% for every
  differentiable detector;
- on digits with deepsvdd, AutoAttack's robust AUROC is at most the minimum of its members' (per-sample worst case).
"""

from __future__ import annotations

import pytest
import torch
from test_detector_conformance import fit, project_detectors

from attacks import create_attack
from bench.data import load_split
from bench.metrics import auroc

UNBOUNDED_STEPS = 40


@pytest.fixture(scope="module")
def split():
    return load_split("digits", 0, max_test=60, seed=0)


def robust_auroc(detector, attack, split) -> float:
    x_adv = attack.perturb(detector, split.test, split.test_is_anomaly, generator=torch.Generator().manual_seed(0))
    return auroc(detector.score_batched(x_adv).numpy(), split.test_is_anomaly.numpy())


@pytest.mark.parametrize("name", project_detectors())
def test_unbounded_budget_breaks_every_detector(name: str, split) -> None:
    detector = fit(name, split)
    attack = create_attack("pgd", eps=1.0, norm="linf", steps=UNBOUNDED_STEPS, step_size=0.05)
    assert robust_auroc(detector, attack, split) <= 0.01


def test_autoattack_is_at_most_its_weakest_member_on_digits(split) -> None:
    detector = fit("deepsvdd", split)
    budget = {"eps": 8 / 255, "norm": "linf"}
    ensemble = robust_auroc(detector, create_attack("autoattack", **budget, apgd_steps=20, square_queries=100), split)
    members = [
        robust_auroc(detector, create_attack("apgd", **budget, steps=20, loss="ce"), split),
        robust_auroc(detector, create_attack("apgd", **budget, steps=20, loss="margin"), split),
        robust_auroc(detector, create_attack("square", **budget, queries=100), split),
    ]
    assert ensemble <= min(members) + 1e-12
