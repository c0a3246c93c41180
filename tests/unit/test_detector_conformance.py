"""The detector contract, checked for every registered detector (``detectors.DETECTORS.names()``).

Each detector is fitted on digits class 0 with the tiny config it declares (``Detector.tiny_config``). Detectors
that need weights the machine does not have are skipped with the UsageError's message.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from sklearn.metrics import roc_auc_score

from bench.data import load_split
from bench.errors import UsageError
from detectors import DETECTORS, Detector, create_detector, list_detectors

N_SCORED = 24
SEED = 0


def project_detectors() -> list[str]:
    """Registered detectors shipped in the detectors package (test modules may register toys of their own)."""
    return [name for name in DETECTORS.names() if DETECTORS.get(name).__module__.startswith("detectors.")]


def make(name: str) -> Detector:
    """A fresh detector with its tiny config (no preset, so other presets cannot slow the suite down)."""
    return create_detector(name, **DETECTORS.get(name).tiny_config)


def fit(name: str, split, seed: int = SEED) -> Detector:
    """Fit with the tiny config, skipping the test when the detector's weights are unavailable."""
    try:
        return make(name).fit(split.train, device="cpu", generator=torch.Generator().manual_seed(seed))
    except UsageError as error:
        pytest.skip(f"{name}: {error}")


@pytest.fixture(scope="module")
def split():
    return load_split("digits", 0)


@pytest.fixture(scope="module")
def held_out(split):
    """Held-out normal test images."""
    return split.test[~split.test_is_anomaly]


@pytest.fixture(scope="module")
def fitted(split):
    """Fitted detectors, one fit per name for the whole module."""
    cache: dict[str, Detector] = {}

    def get(name: str) -> Detector:
        if name not in cache:
            cache[name] = fit(name, split)
        return cache[name]

    return get


NAMES = project_detectors()


def test_registry_is_not_empty():
    assert NAMES, "no detector registered"


@pytest.mark.parametrize("name", NAMES)
def test_description_and_config(name):
    cls = DETECTORS.get(name)
    assert list_detectors()[name].strip(), f"{name} has no one-line description (first docstring line)"
    assert dataclasses.is_dataclass(cls.Config)
    assert isinstance(cls.stochastic, bool)


@pytest.mark.parametrize("name", NAMES)
def test_declares_its_tiny_config(name):
    cls = DETECTORS.get(name)
    assert cls.tiny_config and "tiny_config" in vars(cls), f"{name} declares no tiny_config of its own"
    assert set(cls.tiny_config) <= {f.name for f in dataclasses.fields(cls.Config)}


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_self_in_eval_mode(name, fitted):
    det = fitted(name)
    assert isinstance(det, Detector)
    assert not det.training, "fit must leave the detector in eval mode"
    assert det.input_shape == (1, 8, 8)


@pytest.mark.parametrize("name", NAMES)
def test_score_shape_and_finite(name, fitted, held_out):
    scores = fitted(name).score(held_out[:N_SCORED])
    assert scores.shape == (N_SCORED,)
    assert torch.isfinite(scores).all()


@pytest.mark.parametrize("name", NAMES)
def test_score_is_batched(name, fitted, held_out):
    det = fitted(name)
    if det.stochastic:
        pytest.skip("stochastic score")
    x = held_out[:N_SCORED]
    whole = det.score(x).detach()
    parts = torch.cat([det.score(x[:5]).detach(), det.score(x[5:]).detach()])
    torch.testing.assert_close(parts, whole, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_stochastic_flag_is_truthful(name, fitted, held_out):
    det = fitted(name)
    x = held_out[:N_SCORED]
    first, second = det.score(x).detach(), det.score(x).detach()
    if det.stochastic:
        assert not torch.equal(first, second), "stochastic=True but two scorings are identical"
    else:
        assert torch.equal(first, second), "stochastic=False but two scorings differ"


@pytest.mark.parametrize("name", NAMES)
def test_input_gradient_is_nonzero(name, fitted, held_out):
    x = held_out[:N_SCORED].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fitted(name).score(x).sum(), x)
    assert torch.isfinite(grad).all()
    nonzero = grad.flatten(1).abs().amax(1) > 0
    assert nonzero.float().mean() >= 0.9, f"zero input gradient on {int((~nonzero).sum())}/{N_SCORED} samples"


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_scores(name, fitted, split, held_out):
    again = fit(name, split)
    if again.stochastic:
        pytest.skip("stochastic score")
    x = held_out[:N_SCORED]
    torch.testing.assert_close(again.score(x).detach(), fitted(name).score(x).detach(), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name, fitted, held_out):
    det = fitted(name)
    if det.stochastic:
        pytest.skip("stochastic score")
    det2 = make(name)
    det2.setup(det.input_shape)
    det2.load_state_dict(det.state_dict())
    det2.eval()
    x = held_out[:N_SCORED]
    torch.testing.assert_close(det2.score(x).detach(), det.score(x).detach(), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_obvious_anomalies_score_higher(name, fitted, held_out):
    det = fitted(name)
    normals = held_out[:60]
    noise = torch.rand(normals.shape, generator=torch.Generator().manual_seed(1))
    for kind, anomalies in (("inverted", 1 - normals), ("uniform noise", noise)):
        scores = det.score_batched(torch.cat([normals, anomalies])).numpy()
        labels = [0] * len(normals) + [1] * len(anomalies)
        auroc = roc_auc_score(labels, scores)
        assert auroc > 0.8, f"{kind} images vs held-out normals: AUROC {auroc:.3f}"
