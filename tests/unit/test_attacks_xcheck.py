"""Cross-checks: our attacks are at least as strong as torchattacks / reference AutoAttack at the same budget."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
from test_attack_toys import ToyDetector, auroc, single_thread  # noqa: F401
from torch import nn

from attacks import create_attack
from bench.data import load_split
from bench.errors import UsageError

HAS_TORCHATTACKS = importlib.util.find_spec("torchattacks") is not None
HAS_AUTOATTACK = any(importlib.util.find_spec(m) is not None for m in ("autoattack", "pyautoattack"))
EPS = 8 / 255
TOLERANCE = 0.005  # ours may be at most 0.5 AUROC points weaker than the library


class TinySVDD(ToyDetector):
    """A DeepSVDD-style MLP on 8x8 digits: score = squared distance of the embedding to the centre."""

    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(64, 32, generator=generator) / 8)
        self.w2 = nn.Parameter(torch.randn(32, 8, generator=generator) / 32**0.5)
        self.register_buffer("centre", torch.zeros(8))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh((x.flatten(1) - 0.5) @ self.w1) @ self.w2

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return ((self.embed(x) - self.centre) ** 2).sum(dim=1)

    def fit(self, train: torch.Tensor, epochs: int = 150) -> TinySVDD:
        with torch.no_grad():
            self.centre.copy_(self.embed(train).mean(0))
        optimiser = torch.optim.Adam(self.parameters(), lr=1e-2)
        for _ in range(epochs):
            optimiser.zero_grad()
            self.score(train).mean().backward()
            optimiser.step()
        return self.requires_grad_(False).eval()


@pytest.fixture(scope="module")
def trained():
    split = load_split("digits", normal_class=0, max_test=100)
    detector = TinySVDD(torch.Generator().manual_seed(0)).fit(split.train)
    assert auroc(detector.score(split.test), split.test_is_anomaly) > 0.9
    return detector, split.test, split.test_is_anomaly


def robust_auroc(name: str, trained, **budget) -> float:
    detector, x, is_anomaly = trained
    attack = create_attack(name, eps=EPS, **budget)
    x_adv = attack.perturb(detector, x, is_anomaly, generator=torch.Generator().manual_seed(0))
    return auroc(detector.score(x_adv), is_anomaly)


@pytest.mark.skipif(not HAS_TORCHATTACKS, reason="torchattacks not installed (pip install -e .[xcheck])")
@pytest.mark.parametrize(
    ("ours", "theirs", "budget"), [("pgd", "ta-pgd", {"steps": 10}), ("apgd", "ta-apgd", {"steps": 30})]
)
def test_at_least_as_strong_as_torchattacks(trained, ours, theirs, budget) -> None:
    mine, library = robust_auroc(ours, trained, **budget), robust_auroc(theirs, trained, **budget)
    assert mine <= library + TOLERANCE, (mine, library)
    assert library < auroc(trained[0].score(trained[1]), trained[2])  # the backend does attack


@pytest.mark.skipif(not HAS_AUTOATTACK, reason="autoattack/pyautoattack not installed (pip install -e .[xcheck])")
@pytest.mark.parametrize(
    ("ours", "theirs", "budget"), [("apgd", "aa-apgd", {"steps": 30}), ("square", "aa-square", {"queries": 300})]
)
def test_at_least_as_strong_as_reference_autoattack(trained, ours, theirs, budget) -> None:
    mine, library = robust_auroc(ours, trained, **budget), robust_auroc(theirs, trained, **budget)
    assert mine <= library + TOLERANCE, (mine, library)
    assert library < auroc(trained[0].score(trained[1]), trained[2])


@pytest.mark.parametrize("name", ["ta-pgd", "ta-apgd", "aa-apgd", "aa-square"])
def test_missing_library_says_how_to_install(name, monkeypatch, trained) -> None:
    for module in ("torchattacks", "autoattack", "pyautoattack"):
        monkeypatch.setitem(sys.modules, module, None)
        monkeypatch.setitem(sys.modules, f"{module}.autopgd_base", None)
        monkeypatch.setitem(sys.modules, f"{module}.square", None)
    with pytest.raises(UsageError, match=r"pip install -e \.\[xcheck\]"):
        robust_auroc(name, trained)


@pytest.mark.skipif(not HAS_TORCHATTACKS, reason="torchattacks not installed (pip install -e .[xcheck])")
def test_backends_leave_the_global_rng_alone(trained) -> None:
    state = torch.random.get_rng_state()
    robust_auroc("ta-pgd", trained, steps=2)
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.skipif(not HAS_AUTOATTACK, reason="autoattack/pyautoattack not installed (pip install -e .[xcheck])")
def test_standard_autoattack_at_least_as_strong_as_reference_apgd_and_square(trained) -> None:
    """Ours against the per-sample worst case of the reference APGD-CE (5 restarts) and Square, same budget."""
    detector, x, is_anomaly = trained
    generator = torch.Generator().manual_seed(0)
    ours = create_attack("autoattack", eps=EPS, version="standard", apgd_steps=30, square_queries=300)
    mine = auroc(ours.run(detector, x, is_anomaly, generator=generator).completed_scores(detector), is_anomaly)
    sign = torch.where(is_anomaly, -1.0, 1.0)
    worst = torch.full((x.shape[0],), -torch.inf)
    for name, budget in (("aa-apgd", {"steps": 30, "restarts": 5}), ("aa-square", {"queries": 300})):
        x_adv = create_attack(name, eps=EPS, **budget).perturb(detector, x, is_anomaly, generator=generator)
        worst = torch.maximum(worst, sign * detector.score(x_adv))
    reference = auroc(sign * worst, is_anomaly)
    assert mine <= reference + TOLERANCE, (mine, reference)
    assert reference < auroc(detector.score(x), is_anomaly)
