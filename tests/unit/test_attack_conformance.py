"""Registry-driven conformance: every registered attack (one-sided variants included) honours the contract.

Each attack runs with the small budget it declares (``Attack.tiny_config``; none = its defaults).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from test_attack_toys import FeatureBankScorer, single_thread, toy_data  # noqa: F401
from torch import nn

from attacks import ATTACKS, create_attack
from attacks.common import objective_sign

LIBRARIES = {"ta-": ("torchattacks",), "aa-": ("autoattack", "pyautoattack")}


class EverythingScorer(FeatureBankScorer):
    """Exposes features, a feature bank and score components, so every attack applies."""

    def score_components(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        distance = torch.cdist(self.features(x), self.feature_bank).amin(dim=1)
        return {"distance": distance, "brightness": x.flatten(1).mean(dim=1)}

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return sum(self.score_components(x).values())


def available(name: str) -> bool:
    needs = next((mods for prefix, mods in LIBRARIES.items() if name.startswith(prefix)), ())
    return not needs or any(importlib.util.find_spec(m) is not None for m in needs)


@pytest.fixture(scope="module")
def setup():
    gen = torch.Generator().manual_seed(0)
    train = torch.rand(20, 1, 6, 6, generator=gen)
    det = EverythingScorer(nn.init.normal_(torch.empty(36, 4), generator=gen), train)
    x, is_anomaly = toy_data(shape=(1, 6, 6), n=12)
    return det, x, is_anomaly


@pytest.mark.parametrize("name", ATTACKS.names())
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_attack_contract(name, norm, setup) -> None:
    if not available(name):
        pytest.skip(f"{name} needs the xcheck extra")
    det, x, is_anomaly = setup
    eps = 0.05 if norm == "linf" else 0.3
    outputs = []
    for _ in range(2):
        attack = create_attack(name, eps=eps, norm=norm, batch_size=5, **ATTACKS.get(name).tiny_config)
        outputs.append(attack.perturb(det, x, is_anomaly, generator=torch.Generator().manual_seed(1)))
    x_adv = outputs[0]
    assert torch.equal(outputs[0], outputs[1]), "same seed must give the same output"
    delta = (x_adv - x).flatten(1)
    dist = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert dist.max() <= eps + 1e-5 and x_adv.min() >= 0 and x_adv.max() <= 1
    sign = objective_sign(is_anomaly)
    assert (sign * (det.score(x_adv) - det.score(x))).sum() > 0, "the attack must move scores the wrong way"
    assert attack.passes.forward > 0
    zero = create_attack(name, eps=0.0, norm=norm, **ATTACKS.get(name).tiny_config)
    assert torch.equal(zero.perturb(det, x, is_anomaly, generator=torch.Generator().manual_seed(1)), x)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_one_sided_variants_touch_one_group(name, setup) -> None:
    if not available(name):
        pytest.skip(f"{name} needs the xcheck extra")
    det, x, is_anomaly = setup
    for side, untouched in (("in", is_anomaly), ("out", ~is_anomaly)):
        attack = create_attack(f"{name}-{side}", eps=0.05, **ATTACKS.get(name).tiny_config)
        assert attack.config.side == side and attack.label == f"{name}-{side}"
        x_adv = attack.perturb(det, x, is_anomaly, generator=torch.Generator().manual_seed(1))
        assert torch.equal(x_adv[untouched], x[untouched])


@pytest.mark.parametrize("name", ATTACKS.names())
def test_tracked_robust_scores_are_the_scores_of_the_returned_inputs(name, setup) -> None:
    if not available(name):
        pytest.skip(f"{name} needs the xcheck extra")
    det, x, is_anomaly = setup
    attack = create_attack(name, eps=0.05, batch_size=5, **ATTACKS.get(name).tiny_config)
    result = attack.run(det, x, is_anomaly, generator=torch.Generator().manual_seed(1))
    tracked = ~torch.isnan(result.scores)
    if not getattr(ATTACKS.get(name), "cross_check", False):
        assert tracked.all(), "an attack returning best iterates must report the score of every one"
    fresh = det.score_batched(result.x_adv)
    torch.testing.assert_close(result.scores[tracked], fresh[tracked].float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(result.completed_scores(det), fresh.float(), rtol=1e-5, atol=1e-6)


def test_untracked_scores_stay_nan(setup) -> None:
    det, x, is_anomaly = setup
    one_sided = create_attack("pgd-in", eps=0.05).run(det, x, is_anomaly, generator=torch.Generator().manual_seed(1))
    assert torch.isnan(one_sided.scores[is_anomaly]).all() and not torch.isnan(one_sided.scores[~is_anomaly]).any()
    assert torch.equal(one_sided.attacked, ~is_anomaly)
    given_clean = det.score_batched(x).float() + 1000  # marked, to see that untouched samples take it unscored
    completed = one_sided.completed_scores(det, given_clean)
    assert torch.equal(completed[is_anomaly], given_clean[is_anomaly])
    assert torch.equal(completed[~is_anomaly], one_sided.scores[~is_anomaly])
    zero = create_attack("pgd", eps=0.0).run(det, x, is_anomaly)  # eps=0 runs the attack's own code path
    assert torch.equal(zero.x_adv, x)
    torch.testing.assert_close(zero.scores, det.score_batched(x).float())
