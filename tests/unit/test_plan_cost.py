"""--plan's pass-count estimates: backbone passes of fits and attack cells over a measured throughput."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench import plan
from bench.cache import CheckpointCache
from bench.config import config_from_preset
from bench.grid import build_grid
from bench.history import TimingHistory
from bench.plan import PassCostModel, PassRates, format_plan, measure_rates, plan_groups
from detectors import create_detector

RATES = PassRates(train=100.0, forward=400.0)


@pytest.fixture
def fixed_rates(monkeypatch):
    monkeypatch.setattr(plan, "measure_rates", lambda net, shape, device: RATES)


def built(name: str, **options):
    det = create_detector(name, width=4, blocks=[1, 1, 1, 1], score_samples=2, epochs=3, **options)
    det.setup((1, 8, 8))
    return det


def test_csi_fit_is_two_views_per_shift_plus_the_feature_bank(fixed_rates):
    det = built("csi")
    seconds = PassCostModel(torch.device("cpu")).fit_seconds(det, (1, 8, 8), 50)
    assert seconds == pytest.approx(3 * 50 * 2 * 4 / RATES.train + 50 * 2 * 4 / RATES.forward)


def test_cobra_counts_its_inner_attacks():
    det = built("cobra", attack_steps=10)
    # per image and shift: 3 attacks x 10 steps, the loss over 4 contrastive views and the RTP view (fwd+bwd),
    # one target forward per contrastive attack
    assert det.passes_per_training_image() == (4 * (3 * 10 + 4 + 1), 4 * 2)
    assert built("cobra-noopp", attack_steps=10).passes_per_training_image() == (4 * (2 * 10 + 3 + 1), 4 * 1)
    assert built("cobra-noadv").passes_per_training_image() == (2 * 4, 0)


def test_industrial_fit_counts_the_resampled_epoch(fixed_rates):
    det = built("cobra", low_res=False, attack_steps=1, train_per_epoch="auto")
    train, forward = det.fit_passes(200)
    assert train == 3 * 10_000 * det.passes_per_training_image()[0]
    assert forward == 3 * 10_000 * det.passes_per_training_image()[1] + 200 * det.passes_per_score


def test_plan_marks_pass_count_estimates_and_lists_the_rates(tmp_path, fixed_rates):
    cfg = config_from_preset("quick")
    cfg.datasets, cfg.detectors, cfg.classes = ["digits"], ["cobra", "deepsvdd"], {"digits": [0]}
    groups = build_grid(cfg)
    history = TimingHistory(tmp_path / "history.json")
    planned = plan_groups(groups, set(), history=history, cache=CheckpointCache(tmp_path / "c"))
    cobra, deepsvdd = planned
    assert cobra.costs is not None and cobra.seconds > 0 and deepsvdd.seconds is None
    text = format_plan(planned, workers=1)
    assert "pgd@4/255 (10 steps)" in text and "~" in text and "100 images/s forward+backward, 400 forward" in text


def test_paper_preset_grid_is_fmnist_ten_classes_with_pgd_1000_at_4_over_255():
    cfg = config_from_preset("paper")
    from bench.cli import select_detectors

    cfg.detectors = select_detectors(cfg.detectors, cfg.detector_options)
    groups = [g for g in build_grid(cfg) if g.fit.detector == "cobra"]
    assert sorted(g.fit.normal_class for g in groups) == list(range(10))
    jobs = [job for g in groups for job in g.evals]
    assert {(job.attack, job.eps, job.build_attack().config.steps) for job in jobs} == {("pgd", 4 / 255, 1000)}
    assert {"cobra-noadv", "cobra-noopp", "csi", "deepsvdd"} <= set(cfg.detectors)


def test_measured_rates_are_positive():
    rates = measure_rates(nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), (1, 8, 8), torch.device("cpu"), 0.05)
    assert rates.train > 0 and rates.forward > 0
