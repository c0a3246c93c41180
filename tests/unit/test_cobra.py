"""COBRA and its ablations: contract properties, the chunked score, and the adversarial training step."""

from __future__ import annotations

import copy

import pytest
import torch

from bench.data import load_split
from detectors import create_detector
from detectors.cobra import COBRA, HIGH_RES_EPS, LOW_RES_EPS

TINY = {"epochs": 1, "batch_size": 32, "width": 4, "blocks": [1, 1, 1, 1], "score_samples": 2, "attack_steps": 1}


def fit(name: str = "cobra", seed: int = 0, **overrides):
    split = load_split("digits", 0, max_test=60)
    det = create_detector(name, **{**TINY, "max_train": 32, **overrides})
    return det.fit(split.train, generator=torch.Generator().manual_seed(seed)), split


@pytest.fixture(scope="module")
def fitted():
    return fit()


def test_score_shape_finite_deterministic_and_batch_independent(fitted):
    det, split = fitted
    x = split.test[:12]
    scores = det.score(x)
    assert scores.shape == (12,) and torch.isfinite(scores).all()
    assert torch.equal(scores, det.score(x))
    singles = torch.cat([det.score(x[i : i + 1]) for i in range(4)])
    assert torch.allclose(singles, scores[:4], atol=1e-5)
    assert det.passes_per_score == 2 * 4 and not det.stochastic


def test_input_gradient_nonzero_on_most_samples(fitted):
    det, split = fitted
    x = split.test[:12].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(det.score(x).sum(), x)
    assert (grad.flatten(1).abs().sum(1) > 0).float().mean() >= 0.9


def test_components_sum_to_score_and_features_match_bank(fitted):
    det, split = fitted
    x = split.test[:6]
    parts = det.score_components(x)
    assert torch.allclose(parts["similarity"] + parts["shift"], det.score(x), atol=1e-5)
    assert det.features(x).shape[1] == det.feature_bank.shape[1]
    assert det.feature_bank.shape[0] == 32
    k = det.shift.num_shifts
    for vectors in (det.features(x), det.feature_bank):  # both unit-norm per shift: the same space
        torch.testing.assert_close(vectors.view(vectors.shape[0], k, -1).norm(dim=2), torch.ones(vectors.shape[0], k))


def test_chunked_equals_unchunked_scores_and_gradients(fitted):
    det, split = fitted
    det = copy.deepcopy(det).double()  # float64: compare the computations, not float32 reduction orders
    x = split.test[:4].double()
    results = []
    for budget in (1e-3, 1e6):  # one image per chunk vs everything at once
        det.config.max_memory_mb = budget
        xr = x.clone().requires_grad_(True)
        s = det.score(xr)
        results.append((s.detach(), torch.autograd.grad((s * torch.arange(4.0, dtype=torch.float64)).sum(), xr)[0]))
    xr = x.clone().requires_grad_(True)
    plain = -det._normality_terms(xr).sum(1)  # ordinary autograd, no chunking, no custom backward
    plain_grad = torch.autograd.grad((plain * torch.arange(4.0, dtype=torch.float64)).sum(), xr)[0]
    for s, g in results:
        assert torch.allclose(s, plain.detach(), atol=1e-5)
        assert torch.allclose(g, plain_grad, atol=1e-5)


def test_state_dict_round_trip(fitted):
    det, split = fitted
    det2 = create_detector("cobra", **{**TINY, "max_train": 32})
    det2.setup(tuple(split.train.shape[1:]))
    det2.load_state_dict(det.state_dict())
    det2.eval()
    assert torch.equal(det2.score(split.test[:8]), det.score(split.test[:8]))


def test_same_seed_same_scores(fitted):
    det, split = fitted
    again, _ = fit()
    assert torch.equal(again.score(split.test[:8]), det.score(split.test[:8]))


@pytest.mark.parametrize(("name", "attacks"), [("cobra-noadv", []), ("cobra-noopp", [True, True])])
def test_ablation_training_steps(name, attacks):
    det = create_detector(name, **TINY)
    det.setup((1, 8, 8))
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    calls = []
    original = det._inner_attack
    det._inner_attack = lambda *a, **k: calls.append(k["maximise"]) or original(*a, **k)
    assert torch.isfinite(det.training_loss(x, torch.Generator().manual_seed(0)))
    assert calls == attacks  # no-adv: none; no-opp: RTP and ATPT but no ATNT


def test_auto_settings_by_image_size_without_a_dataset_kind():
    low = COBRA(COBRA.Config(width=4, blocks=[1, 1, 1, 1]))
    low.setup((1, 28, 28))
    assert low.shift.num_shifts == 4 and low.train_eps == LOW_RES_EPS and low.crop
    high = COBRA(COBRA.Config(width=4, blocks=[1, 1, 1, 1], score_samples=1))
    high.setup((3, 96, 96))
    assert high.shift.num_shifts == 2 and high.train_eps == HIGH_RES_EPS and not high.crop
    assert high.passes_per_score == 2


@pytest.mark.parametrize("size", [16, 32, 224])
def test_auto_settings_follow_the_dataset_kind_whatever_the_size(size):
    industrial = COBRA(COBRA.Config(width=4, blocks=[1, 1, 1, 1], low_res=False))
    industrial.setup((3, size, size))
    assert industrial.shift.num_shifts == 2 and industrial.train_eps == HIGH_RES_EPS and not industrial.crop
    assert industrial.train_per_epoch(300) == 10_000
    low = COBRA(COBRA.Config(width=4, blocks=[1, 1, 1, 1], low_res=True))
    low.setup((3, size, size))
    assert low.shift.num_shifts == 4 and low.train_eps == LOW_RES_EPS and low.crop and low.train_per_epoch(300) == 300


def test_explicit_options_override_the_dataset_kind():
    det = COBRA(
        COBRA.Config(width=4, blocks=[1, 1, 1, 1], low_res=False, shift="rotation", crop=True, train_eps=0.01,
                     train_per_epoch="all")
    )  # fmt: skip
    det.setup((3, 32, 32))
    assert det.shift.num_shifts == 4 and det.crop and det.train_eps == 0.01 and det.train_per_epoch(300) == 300


def test_training_step_uses_adversarial_views():
    det = COBRA(COBRA.Config(**TINY))
    det.setup((1, 8, 8))
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    calls = []
    original = det._inner_attack
    det._inner_attack = lambda *a, **k: calls.append(k["maximise"]) or original(*a, **k)
    loss = det.training_loss(x, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and calls == [False, True, True]  # ATNT minimises, RTP and ATPT maximise
