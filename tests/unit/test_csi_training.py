"""CSI/COBRA training as released: the lr each optimiser step runs at, LARS, per-epoch resampling, ImageNet init."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from bench.errors import UsageError
from detectors import create_detector
from detectors.csi import CSIConfig, lars_optimiser, resample_indices
from detectors.nets import ResNet18

TINY = {"width": 2, "blocks": [1, 1, 1, 1], "score_samples": 1, "proj_dim": 4}


def released_lrs(lr: float, steps_per_epoch: int, warmup: int, epochs: int, steps: int) -> list[float]:
    """The lr of each step of the released loop, written from ``train.py`` and ``training/scheduler.py``.

    ``GradualWarmupScheduler(multiplier=10, total_epoch=warmup, after_scheduler=CosineAnnealingLR(T_max=epochs))``
    sets ``lr`` when built; after step i the loop calls ``.step(i / steps_per_epoch)``: the warm-up value while that
    epoch is <= warmup; the first time it is past, the hand-over returns the cosine's step-0 lr, which is the current
    one (torch 2.6); afterwards the cosine's closed form at (epoch - warmup) from a base of 10 x lr.
    """
    lrs, current, handed_over = [], lr, False
    for i in range(steps):
        lrs.append(current)
        epoch = i / steps_per_epoch
        if epoch <= warmup:
            current = lr * ((10.0 - 1.0) * epoch / warmup + 1.0)
        elif not handed_over:
            handed_over = True
        else:
            current = 10 * lr * (1 + math.cos(math.pi * (epoch - warmup) / epochs)) / 2
    return lrs


def applied_lrs(name: str, train: torch.Tensor, **options) -> tuple[list[float], object]:
    """Fit detector ``name`` and record the lr of its optimiser at every step it takes."""
    recorded: list[float] = []
    handle = register_optimizer_step_pre_hook(
        lambda optimiser, args, kwargs: recorded.append(optimiser.param_groups[0]["lr"])
    )
    try:
        det = create_detector(name, **TINY, **options)
        det.fit(train, generator=torch.Generator().manual_seed(0))
    finally:
        handle.remove()
    return recorded, det


def images(n: int, size: int = 8) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0))


def test_training_loop_applies_the_released_schedule_step_by_step():
    # 6 images, batch 2: 3 steps per epoch; 6 epochs cover the warm-up, the hand-over and the cosine.
    recorded, _ = applied_lrs("csi", images(6), epochs=6, warmup_epochs=2, batch_size=2, lr=0.1)
    expected = released_lrs(0.1, 3, 2, 6, 18)
    assert len(recorded) == 18 and expected[7] == expected[8] != expected[9]  # the hand-over step repeats its lr
    assert recorded == pytest.approx(expected, rel=1e-12, abs=0)


def test_schedule_matches_the_issue_numbers_at_100_epochs():
    lrs = released_lrs(0.1, 10, 10, 100, 1000)
    first_of = {epoch: lrs[(epoch - 1) * 10] for epoch in (1, 5, 12, 50, 100)}
    assert [round(v, 4) for v in first_of.values()] == [0.1, 0.451, 0.9998, 0.6708, 0.0301]


def test_cobra_fit_reaches_a_peak_lr_of_ten_times_lr_init():
    recorded, det = applied_lrs("cobra", images(4), epochs=2, warmup_epochs=1, batch_size=2, lr=0.05, attack_steps=1)
    assert type(det).name == "cobra" and len(recorded) == 4
    assert max(recorded) == pytest.approx(10 * 0.05, rel=1e-12)


def test_train_per_epoch_sets_the_steps_per_epoch():
    recorded, _ = applied_lrs("csi", images(6), epochs=2, warmup_epochs=1, batch_size=4, train_per_epoch=10)
    assert len(recorded) == 2 * 3  # ceil(10 / 4) steps in each epoch


def test_resampling_as_released_set_dataset_count():
    generator = torch.Generator().manual_seed(0)
    up = resample_indices(4, 10, generator)
    counts = torch.bincount(up, minlength=4)
    assert up.numel() == 10 and counts.min() == 2 and counts.max() == 3 and int((counts == 3).sum()) == 2
    down = resample_indices(10, 4, generator)
    assert down.numel() == 4 and down.unique().numel() == 4
    assert torch.equal(resample_indices(5, 5, generator), torch.arange(5))


def test_lars_step_is_the_torchlars_update():
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    cfg = CSIConfig(lr=0.5, momentum=0.9, weight_decay=1e-2, lars_trust=0.001)
    optimiser = lars_optimiser(layer.parameters(), cfg)
    weights = [p.detach().clone() for p in layer.parameters()]
    buffers = [torch.zeros_like(w) for w in weights]
    for step in range(2):
        grads = [torch.randn_like(w) for w in weights]
        for p, g in zip(layer.parameters(), grads, strict=True):
            p.grad = g.clone()
        optimiser.step()
        for i, (w, g) in enumerate(zip(weights, grads, strict=True)):
            # torchlars: grad += wd * w; grad *= trust * |w| / (|g| + wd * |w| + eps); then SGD with momentum.
            ratio = 0.001 * w.norm() / (g.norm() + 1e-2 * w.norm() + 1e-8)
            update = (g + 1e-2 * w) * ratio
            buffers[i] = update if step == 0 else 0.9 * buffers[i] + update
            weights[i] = w - 0.5 * buffers[i]
        for p, w in zip(layer.parameters(), weights, strict=True):
            assert torch.allclose(p.detach(), w, atol=1e-7)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"optimizer": "adam"}, "choose from: lars, sgd"),
        ({"train_per_epoch": 0}, "choose from: auto, all or a positive integer"),
        ({"train_per_epoch": "many"}, "choose from: auto, all or a positive integer"),
        ({"warmup_epochs": 0}, "warmup_epochs"),
    ],
)
def test_bad_training_options_are_usage_errors(options, message):
    det = create_detector("csi", **options)
    with pytest.raises(UsageError, match=message):
        det.setup((1, 8, 8))


def test_imagenet_stem_is_kaiming_fan_out_as_released():
    torch.manual_seed(0)
    for stem, expected_std in (("imagenet", None), ("cifar", 1 / math.sqrt(3 * 64 * 9))):  # cifar: PyTorch default
        conv = ResNet18(3, stem=stem, width=64, blocks=(1, 1, 1, 1)).stages[1][0].conv1  # 64 -> 128, 3x3
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        std = expected_std if expected_std is not None else math.sqrt(2 / fan_out)
        assert conv.weight.std().item() == pytest.approx(std, rel=0.05)
