"""Adaptive attacks (feature, knn, component) on toys that expose features, a feature bank or score components."""

from __future__ import annotations

import itertools

import pytest
import torch
from test_attack_toys import (  # noqa: F401 - single_thread is an autouse fixture
    FeatureBankScorer,
    LinearScorer,
    TwoTermScorer,
    auroc,
    linear_optimum,
    single_thread,
    toy_data,
)

from attacks import create_attack
from attacks.base import AttackNotApplicable
from attacks.common import objective_sign
from attacks.knn import annealed, knn_distance, soft_min


def run(name: str, det, x, is_anomaly, seed: int = 0, **kwargs):
    attack = create_attack(name, **kwargs)
    return attack.perturb(det, x, is_anomaly, generator=torch.Generator().manual_seed(seed)), attack


@pytest.fixture(scope="module")
def bank_detector():
    gen = torch.Generator().manual_seed(0)
    train = 0.5 + 0.1 * torch.randn(50, 1, 6, 6, generator=gen)
    a = torch.randn(36, 8, generator=gen) / 6
    x, is_anomaly = toy_data(shape=(1, 6, 6), n=30, seed=1)
    x = torch.where(is_anomaly.view(-1, 1, 1, 1), x, 0.5 + 0.1 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    return FeatureBankScorer(a, train.clamp(0, 1)), x, is_anomaly


@pytest.mark.parametrize("name", ["feature", "knn"])
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_feature_space_attacks_move_scores_the_right_way(name, metric, bank_detector) -> None:
    det, x, is_anomaly = bank_detector
    x_adv, attack = run(name, det, x, is_anomaly, eps=0.1, metric=metric, steps=10)
    sign = objective_sign(is_anomaly)
    gain = sign * (det.score(x_adv) - det.score(x))
    assert (gain >= 0).all() and gain.mean() > 0
    assert auroc(det.score(x_adv), is_anomaly) < auroc(det.score(x), is_anomaly)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    # one feature forward+backward per step for the surrogate, one score forward per iterate for bookkeeping
    assert attack.passes.backward == x.shape[0] * 10


def test_feature_attack_pulls_anomalies_to_the_bank(bank_detector) -> None:
    det, x, is_anomaly = bank_detector
    x_adv, _ = run("feature-out", det, x, is_anomaly, eps=0.2, steps=30)
    before, after = det.score(x)[is_anomaly], det.score(x_adv)[is_anomaly]
    assert (after <= before).all() and after.mean() < 0.8 * before.mean()


def test_knn_surrogate_is_hard_forward_soft_backward() -> None:
    d = torch.tensor([[3.0, 1.0, 2.0, 5.0]], requires_grad=True)
    hard = knn_distance(d, 2)
    smooth = soft_min(d, torch.tensor(1.0))
    surrogate = hard.detach() + smooth - smooth.detach()
    assert torch.allclose(surrogate, torch.tensor([1.5]))
    (grad,) = torch.autograd.grad(surrogate.sum(), d)
    (soft_grad,) = torch.autograd.grad(soft_min(d, torch.tensor(1.0)).sum(), d)
    assert torch.allclose(grad, soft_grad) and (grad != 0).all()


@pytest.mark.parametrize("name", ["feature", "knn", "component"])
def test_not_applicable_is_a_clear_error(name) -> None:
    x, is_anomaly = toy_data()
    with pytest.raises(AttackNotApplicable, match=name):
        run(name, LinearScorer(torch.ones(16)), x, is_anomaly, eps=0.1)


def test_component_attack_reaches_linear_closed_form() -> None:
    """score = w.x + softplus(w.x) is monotone in w.x: its optimum is the linear one."""
    w = torch.randn(16, generator=torch.Generator().manual_seed(3))
    x, is_anomaly = toy_data()
    x_adv, attack = run("component", TwoTermScorer(w, w), x, is_anomaly, eps=0.1, steps=10)
    assert (x_adv - linear_optimum(x, is_anomaly, w, 0.1, "linf")).abs().max() < 1e-6
    assert attack.passes.backward == x.shape[0] * 10 * 3  # two components + the total


def test_component_attack_keeps_best_full_score_per_sample() -> None:
    gen = torch.Generator().manual_seed(5)
    det = TwoTermScorer(torch.randn(16, generator=gen), 3 * torch.randn(16, generator=gen))
    x, is_anomaly = toy_data()
    sign = objective_sign(is_anomaly)
    x_adv, _ = run("component", det, x, is_anomaly, eps=0.05, seed=1)
    x_total, _ = run("component", det, x, is_anomaly, eps=0.05, seed=1, include_total=False)
    assert (sign * det.score(x_adv) >= sign * det.score(x)).all()
    assert (sign * det.score(x_total) >= sign * det.score(x)).all()
    assert auroc(det.score(x_adv), is_anomaly) < auroc(det.score(x), is_anomaly)


class PatchBankScorer(torch.nn.Module):
    """PatchCore-like toy: 2x2 patches projected to 3-d, score = max over patches of the distance to the nearest
    bank patch (``config.k`` = 1)."""

    stochastic = False

    def __init__(self, train: torch.Tensor, seed: int = 0) -> None:
        super().__init__()
        self.register_buffer("a", torch.randn(4, 3, generator=torch.Generator().manual_seed(seed)))
        self.config = type("Config", (), {"k": 1})()
        with torch.no_grad():
            self.register_buffer("feature_bank", self.patch_features(train).flatten(0, 1))

    @property
    def device(self) -> torch.device:
        return self.a.device

    def patch_features(self, x: torch.Tensor) -> torch.Tensor:
        patches = torch.nn.functional.unfold(x, 2, stride=2).transpose(1, 2)  # [N, P, 4]
        return patches @ self.a

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cdist(self.patch_features(x), self.feature_bank.unsqueeze(0)).amin(dim=2).amax(dim=1)

    @torch.no_grad()
    def score_batched(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(x)


@pytest.mark.parametrize("name", ["feature", "knn"])
def test_patch_detectors_are_attacked_through_their_patch_features(name) -> None:
    gen = torch.Generator().manual_seed(0)
    train = (0.5 + 0.1 * torch.randn(30, 1, 6, 6, generator=gen)).clamp(0, 1)
    x, is_anomaly = toy_data(shape=(1, 6, 6), n=30, seed=1)
    x = torch.where(is_anomaly.view(-1, 1, 1, 1), x, 0.5 + 0.1 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    det = PatchBankScorer(train)
    options = {"targets": 2} if name == "feature" else {}
    x_adv, _ = run(name, det, x, is_anomaly, eps=0.1, steps=10, **options)
    gain = objective_sign(is_anomaly) * (det.score(x_adv) - det.score(x))
    assert (gain >= 0).all() and gain.mean() > 0
    assert auroc(det.score(x_adv), is_anomaly) < auroc(det.score(x), is_anomaly)


def test_knn_attack_matches_the_detectors_k_and_anneals() -> None:
    attack = create_attack("knn")
    det = torch.nn.Module()
    det.config = type("Config", (), {"k": 3})()
    assert attack.neighbours(det) == 3 and create_attack("knn", k=2).neighbours(det) == 2
    start = torch.tensor(2.0)
    schedule = [float(annealed(start, 0.05, step, 10)) for step in range(10)]
    assert schedule[0] == 2.0 and abs(schedule[-1] - 0.1) < 1e-6
    assert all(a > b for a, b in itertools.pairwise(schedule))


def test_feature_attack_runs_one_apgd_per_target(bank_detector) -> None:
    det, x, is_anomaly = bank_detector
    _, one = run("feature", det, x, is_anomaly, eps=0.1, steps=5)
    _, three = run("feature", det, x, is_anomaly, eps=0.1, steps=5, targets=3)
    assert three.passes.backward == 3 * one.passes.backward == 3 * x.shape[0] * 5
