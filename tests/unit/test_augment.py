"""Shared CSI/COBRA ops: shifts and SimCLR augmentation (detectors.augment), contrastive losses (detectors.contrastive)
and the inner PGD (detectors.adversarial)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from detectors.adversarial import pgd_linf
from detectors.augment import (
    CutPasteScarShift,
    RotationShift,
    SimCLRParams,
    augment_view,
    draw_simclr,
    draw_view,
    hsv_to_rgb,
    resolve_shift,
    rgb_to_hsv,
    shifted_views,
    simclr_augment,
)
from detectors.contrastive import nt_xent, pairwise_nt_xent, sattolo_permutation


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_rotation_shift_is_rot90_and_cycles():
    x = torch.rand(3, 1, 8, 8, generator=gen())
    shift = RotationShift()
    assert torch.equal(shift.apply(x, 0, None), x)
    assert torch.equal(shift.apply(x, 1, None), torch.rot90(x, 1, (2, 3)))
    assert torch.equal(shift.apply(shift.apply(x, 2, None), 2, None), x)
    assert not torch.equal(shift.apply(x, 3, None), x)


def test_auto_shift_by_dataset_kind():
    assert resolve_shift("auto", low_res=True).num_shifts == 4
    assert resolve_shift("auto", low_res=False).num_shifts == 2
    with pytest.raises(ValueError, match="unknown shift"):
        resolve_shift("elastic", True)


def test_cutpaste_changes_one_bounded_region():
    x = torch.full((4, 3, 64, 64), 0.5)
    x[:, :, :, 32:] = torch.rand(4, 3, 64, 32, generator=gen())
    shift = CutPasteScarShift()
    params = shift.draw(4, 64, gen(1))
    assert torch.equal(shift.apply(x, 0, params), x)
    out = shift.apply(x, 1, params)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    changed = (out - x).abs().amax(1) > 1e-6
    max_side = 40 * 64 / 224 + 1
    assert changed.flatten(1).sum(1).max() <= 2 * max_side**2  # a rotated patch, nothing else
    assert changed.any()
    assert torch.equal(out, shift.apply(x, 1, params))  # deterministic given the draw


def test_cutpaste_black_scar_and_destination_rule():
    x = torch.zeros(1, 1, 64, 64)
    x[:, :, :32] = 0.5  # only the top half has a mean intensity in (0.15, 0.8)
    shift = CutPasteScarShift()
    params = shift.draw(1, 64, gen(3))
    params.black[:] = True
    params.angle[:] = 0.0
    params.candidates[0, :, 0] = torch.tensor([50.0] * 5 + [2.0] + [50.0] * 15)  # 6th candidate is the first valid
    out = shift.apply(x, 1, params)
    changed = torch.nonzero((out - x).abs()[0, 0] > 0)
    assert changed.numel() > 0 and (out[0, 0][changed[:, 0], changed[:, 1]] == 0).all()
    assert changed[:, 0].min() >= 2 and changed[:, 0].max() < 2 + params.size[0, 0]


def test_hsv_round_trip_and_gradient():
    x = torch.rand(2, 3, 8, 8, generator=gen()).requires_grad_(True)
    back = hsv_to_rgb(rgb_to_hsv(x))
    assert (back - x).abs().max() < 0.03  # atan2 hue differs from the hexagonal one by at most ~1.2 degrees
    gray = torch.full((1, 3, 4, 4), 0.3, requires_grad=True)
    (grad,) = torch.autograd.grad(hsv_to_rgb(rgb_to_hsv(gray)).sum(), gray)
    assert torch.isfinite(grad).all()


def test_simclr_augment_is_seeded_differentiable_and_in_range():
    x = torch.rand(5, 3, 16, 16, generator=gen()).requires_grad_(True)
    a = simclr_augment(x, draw_simclr(5, gen(7)), crop=True)
    b = simclr_augment(x, draw_simclr(5, gen(7)), crop=True)
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1 + 1e-6
    (grad,) = torch.autograd.grad(a.sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    views = shifted_views(x.detach(), RotationShift(), gen(), crop=True)
    assert views.shape == (20, 3, 16, 16)


def reference_nt_xent(z: torch.Tensor, chunks: int, tau: float) -> torch.Tensor:
    """The definition, written out pair by pair."""
    n = z.shape[0]
    b = n // chunks
    total = 0.0
    for i in range(n):
        denom = sum(math.exp(float(z[i] @ z[j]) / tau) for j in range(n) if j != i)
        for j in range(n):
            if j != i and j % b == i % b:
                total += -math.log(math.exp(float(z[i] @ z[j]) / tau) / denom)
    return torch.tensor(total / n)


@pytest.mark.parametrize("seed", range(8))
def test_shared_draw_selects_the_branch_the_per_image_blend_would(seed):
    """A one-row draw (the test score's views) takes branches; the same draw repeated per image blends them."""
    x = torch.rand(5, 3, 12, 12, generator=gen(1))
    shared = draw_view(1, RotationShift(), 12, gen(seed), (0.54, 0.54))
    rows = {
        f: getattr(shared.simclr, f).expand(5, *getattr(shared.simclr, f).shape[1:])
        for f in shared.simclr.__dataclass_fields__
    }
    per_image = type(shared)(SimCLRParams(**rows), shared.shift)
    outputs, grads = [], []
    for params in (shared, per_image):
        leaf = x.clone().requires_grad_(True)
        out = augment_view(leaf, RotationShift(), 1, params, crop=True)
        (grad,) = torch.autograd.grad(out.square().sum(), leaf)
        outputs.append(out)
        grads.append(grad)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-5)


def test_nt_xent_hand_computed():
    angles = torch.tensor([0.0, 0.3, 2.0, 2.5])
    z = torch.stack([angles.cos(), angles.sin()], 1)  # chunks [z0, z1] and [z2, z3]: positives (0,2), (1,3)
    e = lambda a: math.exp(math.cos(a) / 0.5)  # noqa: E731
    row0 = -math.log(e(2.0) / (e(0.3) + e(2.0) + e(2.5)))
    row1 = -math.log(e(2.2) / (e(0.3) + e(1.7) + e(2.2)))
    row2 = -math.log(e(2.0) / (e(2.0) + e(1.7) + e(0.5)))
    row3 = -math.log(e(2.2) / (e(2.5) + e(2.2) + e(0.5)))
    expected = (row0 + row1 + row2 + row3) / 4
    assert nt_xent(z, 2, 0.5).item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("chunks", [2, 3, 4])
def test_nt_xent_matches_definition(chunks):
    z = F.normalize(torch.randn(chunks * 3, 5, generator=gen(chunks)), dim=1)
    assert nt_xent(z, chunks, 0.5).item() == pytest.approx(reference_nt_xent(z, chunks, 0.5).item(), abs=1e-5)


def test_pairwise_nt_xent_detaches_columns():
    z = torch.randn(6, 4, generator=gen()).requires_grad_(True)
    loss = pairwise_nt_xent(z)
    assert loss.item() == pytest.approx(nt_xent(F.normalize(z, dim=1), 2, 0.5).item(), abs=1e-5)
    (grad,) = torch.autograd.grad(loss, z)
    (full,) = torch.autograd.grad(nt_xent(F.normalize(z, dim=1), 2, 0.5), z)
    assert not torch.allclose(grad, full)


def test_sattolo_is_a_cyclic_derangement():
    for seed in range(10):
        order = sattolo_permutation(4, gen(seed))
        assert sorted(order) == [0, 1, 2, 3] and all(order[i] != i for i in range(4))


def test_pgd_stays_in_ball_and_increases_loss():
    x = torch.rand(4, 1, 6, 6, generator=gen())
    w = torch.randn(1, 1, 6, 6, generator=gen(1))
    loss = lambda t: (t * w).sum()  # noqa: E731
    eps = 4 / 255
    adv = pgd_linf(loss, x, eps=eps, steps=5, step_size=eps / 2, generator=gen(2))
    assert (adv - x).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert loss(adv) > loss(x)
    low = pgd_linf(loss, x, eps=eps, steps=5, step_size=eps / 2, generator=gen(2), maximise=False)
    assert loss(low) < loss(x)
