"""Tiny analytic detectors for the attack tests (imported by test_attack*.py), and checks of the toys themselves."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny tensors: one intra-op thread avoids oversubscription stalls on a loaded 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class ToyDetector(nn.Module):
    """Base of the toys: ``score`` over flattened inputs, CPU, deterministic unless told otherwise."""

    stochastic = False

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def score_batched(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.score(x).detach()


class LinearScorer(ToyDetector):
    """s(x) = w . x: the L-inf optimum is x + eps * sign(w) for normals, minus for anomalies (clipped)."""

    def __init__(self, w: Tensor) -> None:
        super().__init__()
        self.register_buffer("w", w.flatten().clone())

    def score(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.w


class QuadraticScorer(ToyDetector):
    """s(x) = ||x - mu||^2: convex; anomalies' optimum is the projection of mu onto the ball and [0, 1]."""

    def __init__(self, mu: Tensor) -> None:
        super().__init__()
        self.register_buffer("mu", mu.flatten().clone())

    def score(self, x: Tensor) -> Tensor:
        return ((x.flatten(1) - self.mu) ** 2).sum(dim=1)


class TwoTermScorer(LinearScorer):
    """s = w . x + softplus(v . x): exposes ``score_components`` for the component attack."""

    def __init__(self, w: Tensor, v: Tensor) -> None:
        super().__init__(w)
        self.register_buffer("v", v.flatten().clone())

    def score_components(self, x: Tensor) -> dict[str, Tensor]:
        return {"linear": x.flatten(1) @ self.w, "soft": nn.functional.softplus(x.flatten(1) @ self.v)}

    def score(self, x: Tensor) -> Tensor:
        return sum(self.score_components(x).values())


class MLPScorer(ToyDetector):
    """A fixed random smooth network (non-convex, differentiable everywhere)."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w1 = nn.Parameter(torch.randn(dim, 32, generator=gen) / dim**0.5)
        self.w2 = nn.Parameter(torch.randn(32, generator=gen) / 32**0.5)

    def score(self, x: Tensor) -> Tensor:
        return torch.tanh(x.flatten(1) @ self.w1) @ self.w2


class NoisyLinearScorer(LinearScorer):
    """Stochastic s(x) = (1 + xi) w . x with xi ~ U(-2.5, 1.5): E[s] = 0.5 w . x, single gradients often flip."""

    stochastic = True

    def __init__(self, w: Tensor, seed: int = 0) -> None:
        super().__init__(w)
        self.gen = torch.Generator().manual_seed(seed)

    def score(self, x: Tensor) -> Tensor:
        xi = torch.rand(x.shape[0], generator=self.gen) * 4 - 2.5
        return (1 + xi) * (x.flatten(1) @ self.w)


class FeatureBankScorer(ToyDetector):
    """Memory-bank detector: features f(x) = A x, score = distance to the nearest training feature."""

    def __init__(self, a: Tensor, train: Tensor) -> None:
        super().__init__()
        self.register_buffer("a", a.clone())
        self.register_buffer("feature_bank", (train.flatten(1) @ a).detach())

    def features(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.a

    def score(self, x: Tensor) -> Tensor:
        return torch.cdist(self.features(x), self.feature_bank).amin(dim=1)


def toy_data(n: int = 40, shape: tuple[int, ...] = (1, 4, 4), seed: int = 0, low: float = 0.0, high: float = 1.0):
    """Inputs in [low, high] and an alternating anomaly mask."""
    gen = torch.Generator().manual_seed(seed)
    x = low + (high - low) * torch.rand(n, *shape, generator=gen)
    is_anomaly = torch.arange(n) % 2 == 1
    return x, is_anomaly


def auroc(scores: Tensor, is_anomaly: Tensor) -> float:
    """AUROC with anomalies as positives (higher score = more anomalous)."""
    return float(roc_auc_score(is_anomaly.numpy().astype(int), scores.detach().numpy()))


def linear_optimum(x: Tensor, is_anomaly: Tensor, w: Tensor, eps: float, norm: str) -> Tensor:
    """Closed-form maximiser of sign * w . x' over the eps-ball (L2: assumes the ball stays inside [0, 1])."""
    sign = torch.where(is_anomaly, -1.0, 1.0).view(-1, *[1] * (x.dim() - 1))
    w = w.view(1, *x.shape[1:])
    if norm == "linf":
        return (x + eps * sign * w.sign()).clamp(0, 1)
    return x + eps * sign * w / w.norm()


def test_toys_score_as_documented() -> None:
    x, is_anomaly = toy_data()
    w = torch.randn(16, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(LinearScorer(w).score(x), x.flatten(1) @ w)
    assert (QuadraticScorer(torch.full((16,), 0.5)).score(x) >= 0).all()
    assert 0.0 <= auroc(LinearScorer(w).score(x), is_anomaly) <= 1.0
    noisy = NoisyLinearScorer(w)
    assert not torch.equal(noisy.score(x), noisy.score(x))
