"""The detector contract, checked for every registered detector (``detectors.DETECTORS.names()``).

Each detector is fitted on digits class 0 with a tiny config (``TINY`` below; detectors without an entry get
``epochs=2, batch_size=32`` where their Config has those fields). Detectors that need weights the machine does
not have are skipped with the UsageError's message.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from sklearn.metrics import roc_auc_score

from bench.data import load_split
from bench.errors import UsageError
from detectors import DETECTORS, Detector, create_detector, list_detectors

CSI_TINY = {
    "epochs": 5,
    "max_train": 64,
    "batch_size": 32,
    # 10 LARS steps (trust 0.001) barely move the weights: plain SGD, lr_init 0.02 peaking at 0.2 after warm-up
    "optimizer": "sgd",
    "lr": 0.02,
    "warmup_epochs": 1,
    "width": 8,
    "blocks": [1, 1, 1, 1],
    "score_samples": 2,
}
#: Per-detector overrides that make a fit take a few seconds on 8x8 digits (on 2 CPU cores).
TINY: dict[str, dict] = {
    "deepsvdd": {"epochs": 10, "widths": (8, 16), "rep_dim": 16},
    "ae": {"epochs": 20, "widths": (8, 16), "rep_dim": 16},
    "knn-pretrained": {"backbone_size": 32},
    "patchcore": {"backbone_size": 32, "coreset_ratio": 0.5},
    "ocsdf": {"epochs": 10, "hidden": 64, "depth": 2},
    "apae": {"epochs": 20, "widths": (8, 16), "rep_dim": 16, "projection_steps": 3},
    "principals": {"epochs": 10, "widths": (8, 16), "rep_dim": 16},
    "at-deepsvdd": {"epochs": 6, "widths": (8, 16), "rep_dim": 16, "pgd_steps": 2},
    "zarnd": {"backbone_size": 32},
    "transformaly": {  # skipped here: no ViT weights file (tests/unit/test_transformaly.py saves a tiny one)
        "image_size": 32,
        "patch_size": 8,
        "num_layers": 2,
        "num_heads": 2,
        "hidden_dim": 32,
        "mlp_dim": 64,
        "epochs": 3,
        "first_block": 0,
    },
    "csi": {**CSI_TINY},
    "cobra": {**CSI_TINY, "attack_steps": 1},
    "cobra-noadv": {**CSI_TINY},
    "cobra-noopp": {**CSI_TINY, "attack_steps": 1},
}
GENERIC_TINY = {"epochs": 2, "batch_size": 32}
N_SCORED = 24
SEED = 0


def project_detectors() -> list[str]:
    """Registered detectors shipped in the detectors package (test modules may register toys of their own)."""
    return [name for name in DETECTORS.names() if DETECTORS.get(name).__module__.startswith("detectors.")]


def tiny_overrides(name: str) -> dict:
    """TINY[name], or the generic tiny settings restricted to the fields the detector's Config has."""
    if name in TINY:
        return dict(TINY[name])
    fields = {f.name for f in dataclasses.fields(DETECTORS.get(name).Config)}
    return {k: v for k, v in GENERIC_TINY.items() if k in fields}


def make(name: str) -> Detector:
    """A fresh detector with its tiny config (no preset, so other presets cannot slow the suite down)."""
    return create_detector(name, preset=None, **tiny_overrides(name))


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
