"""Transformaly with a tiny random ViT teacher saved as a torchvision state dict (no pretrained weights needed)."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.vision_transformer import VisionTransformer

from bench.data import load_split
from bench.errors import UsageError
from detectors import create_detector
from detectors.transformaly import Transformaly, mahalanobis, whitening

TINY_VIT = {"image_size": 32, "patch_size": 8, "num_layers": 2, "num_heads": 2, "hidden_dim": 32, "mlp_dim": 64}
TINY_FIT = {"epochs": 3, "batch_size": 32, "lr": 1e-3, "first_block": 0}
N_SCORED = 24


@pytest.fixture(scope="module")
def weights_path(tmp_path_factory) -> str:
    """A random tiny ViT's state dict, saved like torchvision's pretrained files."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        vit = VisionTransformer(**TINY_VIT)
    path = tmp_path_factory.mktemp("vit") / "tiny_vit.pth"
    torch.save(vit.state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def split():
    return load_split("digits", 0)


def make(weights_path: str, **overrides) -> Transformaly:
    options = {**TINY_VIT, **TINY_FIT, **overrides}
    return create_detector("transformaly", weights_path=weights_path, **options)


def fit(weights_path: str, split, seed: int = 0) -> Transformaly:
    return make(weights_path).fit(split.train, device="cpu", generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def fitted(weights_path, split) -> Transformaly:
    return fit(weights_path, split)


@pytest.fixture(scope="module")
def images(split) -> torch.Tensor:
    """Held-out normals and anomalies, half and half."""
    normals, anomalies = split.test[~split.test_is_anomaly], split.test[split.test_is_anomaly]
    return torch.cat([normals[: N_SCORED // 2], anomalies[: N_SCORED // 2]])


def test_score_shape_and_finite(fitted, images):
    scores = fitted.score(images)
    assert scores.shape == (N_SCORED,)
    assert torch.isfinite(scores).all()
    assert not fitted.training


def test_input_gradient_is_nonzero(fitted, images):
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fitted.score(x).sum(), x)
    assert torch.isfinite(grad).all()
    assert (grad.flatten(1).abs().amax(1) > 0).all()


def test_both_terms_contribute(fitted, images):
    """The score is half the sum of the pretrained and the fine-tuned Mahalanobis terms, both non-trivial."""
    pretrained, finetuned = fitted._pretrained_and_finetuned(images)
    assert finetuned.shape == (N_SCORED, TINY_VIT["num_layers"])
    assert fitted.pretrained_projection.shape[0] == TINY_VIT["hidden_dim"]
    assert 1 <= fitted.pretrained_projection.shape[1] < TINY_VIT["hidden_dim"]  # whitened to 90% of the variance
    terms = [
        ((pretrained - fitted.pretrained_mean) @ fitted.pretrained_projection).pow(2).sum(1),
        ((finetuned - fitted.finetuned_mean) @ fitted.finetuned_projection).pow(2).sum(1),
    ]
    assert all((term > 0).all() for term in terms)
    torch.testing.assert_close(fitted.score(images), 0.5 * (terms[0] + terms[1]))


def test_student_learns_the_teacher(weights_path, split, fitted):
    """Training shrinks the discrepancy on held-out normals below that of the same student untrained."""
    fresh = make(weights_path, epochs=0).fit(split.train, generator=torch.Generator().manual_seed(0))
    held_out = split.test[~split.test_is_anomaly][:N_SCORED]
    with torch.no_grad():
        before = fresh._pretrained_and_finetuned(held_out)[1].mean()
        after = fitted._pretrained_and_finetuned(held_out)[1].mean()
    assert after < 0.5 * before


def test_teacher_stays_frozen(weights_path, fitted):
    saved = torch.load(weights_path, weights_only=True)
    teacher = fitted.teacher.net.state_dict()
    for key, value in teacher.items():
        assert torch.equal(value, saved[key]), f"teacher parameter {key} changed during fit"
    assert not any(p.requires_grad for p in fitted.teacher.parameters())


def test_state_dict_round_trip(weights_path, fitted, images):
    det2 = make(weights_path)
    det2.setup(fitted.input_shape)
    det2.load_state_dict(fitted.state_dict())
    det2.eval()
    torch.testing.assert_close(det2.score(images).detach(), fitted.score(images).detach(), rtol=0, atol=0)


def test_same_seed_same_scores_other_seed_differs(weights_path, split, fitted, images):
    again = fit(weights_path, split, seed=0)
    torch.testing.assert_close(again.score(images).detach(), fitted.score(images).detach(), rtol=0, atol=0)
    other = fit(weights_path, split, seed=1)
    assert not torch.equal(other.score(images).detach(), fitted.score(images).detach())


def test_missing_weights_is_a_usage_error(split, tmp_path):
    det = create_detector("transformaly")
    with pytest.raises(UsageError, match="weights_path"):
        det.check_requirements()
    with pytest.raises(UsageError, match="weights_path"):
        det.fit(split.train)
    with pytest.raises(UsageError, match="not found"):
        create_detector("transformaly", weights_path=str(tmp_path / "none.pth")).check_requirements()


def test_wrong_architecture_is_a_usage_error(weights_path, split):
    det = make(weights_path, hidden_dim=48)
    with pytest.raises(UsageError, match="does not fit a torchvision VisionTransformer"):
        det.fit(split.train)


def test_whitening_is_the_gaussian_mahalanobis_distance():
    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(4, 4, generator=generator, dtype=torch.float64)
    features = torch.randn(200, 4, generator=generator, dtype=torch.float64) @ mixing
    query = torch.randn(5, 4, generator=generator, dtype=torch.float64)
    mean, projection = whitening(features, 1.0, eps=0.0)
    centred = query - features.mean(0)
    expected = (centred @ torch.linalg.inv(torch.cov(features.T, correction=0)) * centred).sum(1)
    torch.testing.assert_close(mahalanobis(query.float(), mean, projection).double(), expected, rtol=1e-4, atol=1e-4)
    _, top = whitening(features, 0.5, eps=0.0)
    assert 1 <= top.shape[1] < 4
