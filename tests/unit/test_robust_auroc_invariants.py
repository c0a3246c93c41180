"""Invariants of robust AUROC on real data and every registered detector.

- an unbounded budget (L-inf eps=1 lets the attacker draw any image) drives robust AUROC to at most 1% for every
  differentiable detector;
- on digits with deepsvdd, AutoAttack's members differ and its robust AUROC is at most every member's (per-sample
  worst case).
"""

from __future__ import annotations

import itertools

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


def test_autoattack_members_differ_and_bound_the_ensemble_on_digits(split) -> None:
    """digits/deepsvdd at 8/255: no two members' outputs are equal, and AutoAttack is at most every member."""
    detector = fit("deepsvdd", split)
    x, is_anomaly = split.test, split.test_is_anomaly
    attack = create_attack("autoattack", eps=8 / 255, norm="linf", apgd_steps=20, square_queries=100)
    result = attack.run(detector, x, is_anomaly, generator=torch.Generator().manual_seed(0))
    members, _ = attack.members(detector, x)
    assert set(members) == {m.name for m in result.members} and len(members) >= 2
    outputs = {}
    for member in result.members:
        chosen = result.supplier == result.members.index(member)
        assert torch.allclose(result.scores[chosen], member.scores[chosen])
        outputs[member.name] = member.scores
    for a, b in itertools.combinations(outputs, 2):
        assert not torch.equal(outputs[a], outputs[b]), (a, b)
    ensemble = auroc(result.completed_scores(detector).numpy(), is_anomaly.numpy())
    assert all(ensemble <= auroc(m.scores.numpy(), is_anomaly.numpy()) + 1e-12 for m in result.members)
