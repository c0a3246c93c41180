"""Properties of the baseline detectors beyond the shared conformance suite."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from bench.data import load_split
from bench.errors import UsageError
from detectors import create_detector
from detectors.at_deepsvdd import rotate_pseudo_anomalies
from detectors.common import knn_distance, load_state_file, seeded_init
from detectors.deepsvdd import fix_near_zero
from detectors.ocsdf import OrthoLinear, lipschitz_mlp
from detectors.patchcore import greedy_coreset
from detectors.principals import principal_components


@pytest.fixture(scope="module")
def digits():
    return load_split("digits", 0)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    with seeded_init(gen(3)):
        first = nn.Linear(4, 4).weight.detach().clone()
    with seeded_init(gen(3)):
        second = nn.Linear(4, 4).weight.detach().clone()
    assert torch.equal(first, second)
    assert torch.equal(torch.random.get_rng_state(), state)


@pytest.mark.parametrize("chunk", [5, 4096])
def test_knn_distance_matches_brute_force(chunk):
    query, bank = torch.randn(13, 6, generator=gen(1)), torch.randn(40, 6, generator=gen(2))
    expected = torch.cdist(query, bank).pow(2).topk(3, dim=1, largest=False).values.mean(1)
    torch.testing.assert_close(knn_distance(query, bank, 3, chunk_size=chunk), expected, rtol=1e-4, atol=1e-4)


def test_knn_pretrained_score_is_brute_force_knn_on_its_bank(digits):
    det = create_detector("knn-pretrained", backbone_size=32).fit(digits.train[:40])
    x = digits.test[:6]
    feats = det.features(x).detach()
    expected = torch.cdist(feats, det.feature_bank).pow(2).topk(2, dim=1, largest=False).values.mean(1)
    torch.testing.assert_close(det.score(x).detach(), expected, rtol=1e-3, atol=1e-3)
    assert det.feature_bank.shape[0] == 40


def test_pretrained_backbone_missing_package_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith("efficientnet") else real(name, *a)
    )
    with pytest.raises(UsageError, match=r"robust-ad-bench\[pretrained\]"):
        create_detector("knn-pretrained").setup((1, 8, 8))


def test_unknown_backbone_lists_choices():
    with pytest.raises(UsageError, match="efficientnet-lite0, resnet18"):
        create_detector("patchcore", backbone="vit").setup((1, 8, 8))


def test_deepsvdd_has_no_bias_and_centre_avoids_zero(digits):
    det = create_detector("deepsvdd", epochs=2, widths=(8, 16), rep_dim=16).fit(digits.train)
    for module in det.modules():
        assert getattr(module, "bias", None) is None, f"{module} has a bias"
    assert all(param.dim() > 1 for param in det.parameters())
    assert (det.center.abs() >= det.config.center_eps).all()


def test_fix_near_zero_keeps_sign():
    fixed = fix_near_zero(torch.tensor([-0.05, 0.0, 0.03, 0.5, -2.0]), 0.1)
    assert fixed.tolist() == pytest.approx([-0.1, 0.1, 0.1, 0.5, -2.0])


def test_ae_score_is_mean_squared_reconstruction_error(digits):
    det = create_detector("ae", epochs=1, widths=(8, 16), rep_dim=8).fit(digits.train)
    x = digits.test[:5]
    expected = (det.decoder(det.encoder(x)) - x).pow(2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(det.score(x), expected)


def test_principal_projection_is_idempotent_and_keeps_variance():
    latents = torch.randn(200, 3, generator=gen(0)) @ torch.randn(3, 10, generator=gen(1))
    latents += 0.01 * torch.randn(200, 10, generator=gen(2))
    mean, components = principal_components(latents, 0.95)
    assert components.shape == (10, 3)
    torch.testing.assert_close(components.T @ components, torch.eye(3), atol=1e-5, rtol=0)
    det = create_detector("principals", rep_dim=10)
    det.setup((1, 8, 8))
    det.latent_mean, det.components = mean, components
    once = det.project(latents)
    torch.testing.assert_close(det.project(once), once, atol=1e-4, rtol=0)
    kept = (once - mean).pow(2).sum() / (latents - mean).pow(2).sum()
    assert kept >= 0.95


def test_coreset_is_seeded_and_covers_the_bank():
    features = torch.randn(500, 8, generator=gen(0))
    first, again = greedy_coreset(features, 50, gen(1)), greedy_coreset(features, 50, gen(1))
    assert torch.equal(first, again)
    assert first.unique().numel() == 50

    def radius(idx: torch.Tensor) -> float:
        return float(torch.cdist(features, features[idx]).amin(1).max())

    random_subset = torch.randperm(500, generator=gen(2))[:50]
    assert radius(first) < radius(random_subset)


def test_patchcore_bank_is_a_coreset_of_training_patches(digits):
    det = create_detector("patchcore", backbone_size=32, coreset_ratio=0.25).fit(digits.train[:20])
    patches = det.patch_features(digits.train[:20]).detach().flatten(0, 1)
    assert det.feature_bank.shape[0] == -(-patches.shape[0] // 4)
    exact = torch.cdist(det.feature_bank, patches, compute_mode="donot_use_mm_for_euclid_dist")
    assert exact.amin(1).max() < 1e-3  # every bank row is a training patch
    per_patch = det.patch_scores(digits.train[:20]).detach()
    assert per_patch.min() < 1e-3 and (det.score(digits.train[:20]).detach() >= per_patch.amax(1) - 1e-6).all()


def test_ocsdf_network_is_1_lipschitz():
    with seeded_init(gen(0)):
        net = lipschitz_mlp(64, 32, 3)
    for layer in net.modules():
        if isinstance(layer, OrthoLinear):
            w = layer.weight()
            small = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
            torch.testing.assert_close(small, torch.eye(small.shape[0]), atol=1e-5, rtol=0)
    a, b = torch.rand(256, 1, 8, 8, generator=gen(1)), torch.rand(256, 1, 8, 8, generator=gen(2))
    gap = (net(a) - net(b)).abs().squeeze(1)
    assert (gap <= (a - b).flatten(1).norm(dim=1) + 1e-5).all()


def test_ocsdf_trained_score_is_1_lipschitz(digits):
    det = create_detector("ocsdf", epochs=3, hidden=32).fit(digits.train)
    a = digits.test[:64]
    b = (a + 0.2 * torch.randn(a.shape, generator=gen(3))).clamp(0, 1)
    gap = (det.score(a) - det.score(b)).abs().detach()
    assert (gap <= (a - b).flatten(1).norm(dim=1) + 1e-5).all()


def test_apae_projection_lowers_reconstruction_error_and_keeps_gradients(digits):
    det = create_detector("apae", epochs=2, widths=(8, 16), rep_dim=8, projection_steps=3)
    det.fit(digits.train[:64])
    x = digits.test[:16]
    plain = det.reconstruction_error(x, det.decoder(det.encoder(x))).detach()
    projected = det.score_batched(x)
    assert (projected <= plain + 1e-6).float().mean() > 0.8
    x_req = x.clone().requires_grad_(True)
    scores = det.score(x_req)
    torch.testing.assert_close(scores.detach(), projected, rtol=1e-5, atol=1e-6)
    (grad,) = torch.autograd.grad(scores.sum(), x_req)
    assert grad.abs().sum() > 0


def test_rotated_pseudo_anomalies_are_quarter_turns():
    x = torch.rand(6, 1, 5, 5, generator=gen(0))
    rotated = rotate_pseudo_anomalies(x, gen(1))
    for img, rot in zip(x, rotated, strict=True):
        turns = [k for k in (1, 2, 3) if torch.equal(torch.rot90(img, k, dims=(-2, -1)), rot)]
        assert turns, "not a 90/180/270 degree rotation"


def test_at_deepsvdd_pgd_stays_in_ball_and_raises_score(digits):
    det = create_detector("at-deepsvdd", epochs=1, widths=(8, 16), rep_dim=8, pgd_steps=3)
    det.fit(digits.train)
    x = digits.test[:16]
    x_adv = det.pgd(x, 1.0, gen(0))
    assert (x_adv - x).abs().max() <= det.config.train_eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert det.score(x_adv).mean() > det.score(x).mean()


def test_zarnd_needs_weights_and_loads_robustness_checkpoints(tmp_path, digits):
    with pytest.raises(UsageError, match="weights_path"):
        create_detector("zarnd").setup((1, 8, 8))
    from torchvision.models import resnet18

    with seeded_init(gen(0)):
        state = resnet18().state_dict()
    wrapped = {f"module.model.{k}": v for k, v in state.items()}
    wrapped.update({f"module.attacker.model.{k}": v for k, v in state.items()})
    wrapped["module.normalizer.new_mean"] = torch.zeros(3)
    path = tmp_path / "robust_r18.pt"
    torch.save({"model": wrapped, "epoch": 1}, path)
    assert set(load_state_file(str(path))) == set(state)
    det = create_detector("zarnd", weights_path=str(path), backbone_size=32).fit(digits.train[:20])
    assert det.feature_bank.shape == (20, 512)
    assert torch.isfinite(det.score(digits.test[:4])).all()
