"""The sanity ladder: per-cell flags on toy detectors and cross-cell flags on synthetic records."""

from __future__ import annotations

import torch
from test_attack_toys import LinearScorer, MLPScorer, NoisyLinearScorer, single_thread, toy_data  # noqa: F401

from attacks import create_attack
from bench.merge import merge_grid_flags
from bench.sanity import (
    EPS0_MISMATCH,
    GRADIENT_MASKING,
    GRADIENT_MISMATCH,
    NON_MONOTONE_EPS,
    NOT_CONVERGED,
    SCORE_MISMATCH,
    STOCHASTIC_NO_EOT,
    ZERO_GRADIENTS,
    attack_steps,
    cell_flags,
    check_subset,
    grid_flags,
    zero_gradient_share,
)
from bench.store import Record


class DeadZoneScorer(LinearScorer):
    """relu(w.x - t): zero gradient wherever w.x < t."""

    def __init__(self, w, threshold: float) -> None:
        super().__init__(w)
        self.threshold = threshold

    def score(self, x):
        return torch.relu(x.flatten(1) @ self.w - self.threshold)


def flags_for(det, attack, x, is_anomaly, clean=None):
    x_adv = attack.perturb(det, x, is_anomaly, generator=torch.Generator().manual_seed(0))
    clean = det.score_batched(x).numpy() if clean is None else clean
    return cell_flags(det, attack, x, is_anomaly, clean, det.score_batched(x_adv).numpy())


def test_clean_cell_has_no_flags() -> None:
    x, is_anomaly = toy_data()
    assert flags_for(LinearScorer(torch.randn(16)), create_attack("pgd", eps=0.05), x, is_anomaly) == []


def test_eps0_mismatch_when_clean_scores_are_not_reproduced() -> None:
    x, is_anomaly = toy_data()
    det = LinearScorer(torch.randn(16, generator=torch.Generator().manual_seed(1)))
    wrong_clean = -det.score_batched(x).numpy()
    assert EPS0_MISMATCH in flags_for(det, create_attack("pgd", eps=0.05), x, is_anomaly, wrong_clean)
    assert EPS0_MISMATCH in flags_for(det, create_attack("pgd", eps=0.0), x, is_anomaly, wrong_clean)


def test_stochastic_detector_without_eot_is_flagged() -> None:
    x, is_anomaly = toy_data()
    w = torch.randn(16, generator=torch.Generator().manual_seed(2))
    assert STOCHASTIC_NO_EOT in flags_for(NoisyLinearScorer(w), create_attack("pgd", eps=0.05), x, is_anomaly)
    with_eot = flags_for(NoisyLinearScorer(w), create_attack("pgd", eps=0.05, eot_iter=8), x, is_anomaly)
    assert STOCHASTIC_NO_EOT not in with_eot
    rand_version = create_attack("autoattack", eps=0.05, apgd_steps=2)
    assert STOCHASTIC_NO_EOT not in flags_for(NoisyLinearScorer(w), rand_version, x, is_anomaly)


def test_zero_gradients_reports_the_share() -> None:
    x, is_anomaly = toy_data(n=40)
    w = torch.ones(16)
    det = DeadZoneScorer(w, threshold=float((x.flatten(1) @ w).quantile(0.75)))
    share = zero_gradient_share(det, x)
    assert abs(share - 0.75) <= 0.05
    flags = flags_for(det, create_attack("pgd", eps=0.01), x, is_anomaly)
    assert f"zero-gradients:{share:.2f}" in flags


def record(attack, eps, robust, clean=0.9, steps=None, key=None, **fields) -> Record:
    """An ok record of digits class 0, detector toy, seed 0, linf; ``fields`` override or add Record fields."""
    base = {"dataset": "digits", "normal_class": 0, "detector": "toy", "seed": 0, "norm": "linf"}
    return Record(
        **{**base, **fields},
        attack=attack,
        eps=eps,
        clean_auroc=clean,
        robust_auroc=robust,
        steps=steps,
        key=key or f"{attack}-{eps}-{steps}-{fields}",
    )


def test_grid_flags_monotonicity_and_eps0() -> None:
    records = [
        record("pgd", 0.0, 0.8, key="zero"),
        record("pgd", 0.01, 0.5, key="a"),
        record("pgd", 0.02, 0.503, key="b"),  # within tolerance
        record("pgd", 0.03, 0.6, key="c"),  # rises by 0.1 over eps 0.01
        record("pgd", 0.04, 0.95, key="d"),  # above clean
        record("pgd", 0.02, 0.9, key="other-class", normal_class=1),
    ]
    flags = grid_flags(records)
    assert flags["zero"] == [EPS0_MISMATCH]
    assert NON_MONOTONE_EPS in flags["c"] and NON_MONOTONE_EPS in flags["d"]
    assert "a" not in flags and "b" not in flags and "other-class" not in flags


def test_grid_flags_gradient_masking() -> None:
    records = [
        record("pgd", 0.01, 0.7, key="pgd"),
        record("apgd", 0.01, 0.68, key="apgd"),
        record("square", 0.01, 0.6, key="square"),
        record("autoattack", 0.01, 0.6, key="aa"),
        record("pgd", 0.02, 0.5, key="pgd2"),
        record("square", 0.02, 0.495, key="square2"),  # within 1 point
        record("pgd-in", 0.01, 0.7, key="pgd-in"),
    ]
    flags = grid_flags(records)
    assert {k for k, v in flags.items() if GRADIENT_MASKING in v} == {"pgd", "apgd", "square"}


def test_attack_steps_reads_the_budget() -> None:
    assert attack_steps(create_attack("pgd", steps=7)) == 7
    assert attack_steps(create_attack("autoattack", apgd_steps=20)) == 20
    assert attack_steps(create_attack("square", queries=30)) == 30


class BatchCentredScorer(LinearScorer):
    """w.x minus its batch mean: a score that depends on which other images share the batch."""

    def score(self, x):
        raw = x.flatten(1) @ self.w
        return raw - raw.mean()


def test_score_mismatch_when_tracked_scores_depend_on_the_batch() -> None:
    x, is_anomaly = toy_data()
    w = torch.randn(16, generator=torch.Generator().manual_seed(2))
    for det, expected in ((LinearScorer(w), False), (BatchCentredScorer(w), True)):
        attack = create_attack("pgd", eps=0.05, batch_size=7)
        result = attack.run(det, x, is_anomaly, generator=torch.Generator().manual_seed(0))
        clean = det.score_batched(x).numpy()
        flags = cell_flags(det, attack, x, is_anomaly, clean, result.completed_scores(det).numpy(), result=result)
        assert (SCORE_MISMATCH in flags) == expected


def test_merged_grid_flags_drop_a_cross_cell_flag_whose_cause_is_gone() -> None:
    stale = record("pgd", 0.01, 0.7, key="pgd")
    stale.flags = [ZERO_GRADIENTS + ":0.50", GRADIENT_MASKING]  # Square used to beat it; Square was rerun
    merged, changed = merge_grid_flags([stale, record("square", 0.01, 0.75, key="square")], {"pgd", "square"})
    assert changed and {r.key: r.flags for r in merged}["pgd"] == [ZERO_GRADIENTS + ":0.50"]
    assert merge_grid_flags(merged, {"pgd", "square"})[1] is False


class ShatteredScorer(LinearScorer):
    """w . (x + 0.6/255 sin(3000 x)): values nearly linear, input gradients dominated by the oscillation."""

    def score(self, x):
        return (x + 0.6 / 255 * torch.sin(3000 * x)).flatten(1) @ self.w


def test_eps0_mismatch_when_the_score_depends_on_the_batch() -> None:
    """The attack's own path at eps=0 on the check subset (64 of 100 samples) must give back the clean input and
    clean scores; a batch-centred score changes with the batch."""
    x, is_anomaly = toy_data(n=100)
    w = torch.randn(16, generator=torch.Generator().manual_seed(2))
    for det, expected in ((LinearScorer(w), False), (BatchCentredScorer(w), True)):
        assert (EPS0_MISMATCH in flags_for(det, create_attack("apgd", eps=0.05, steps=5), x, is_anomaly)) == expected


def test_not_converged_when_twice_the_steps_find_more() -> None:
    """PGD-2 with a step of eps/8 stops halfway to the linear optimum; PGD-2 with 2.5 eps / steps reaches it."""
    x, is_anomaly = toy_data(n=40)
    det = LinearScorer(torch.randn(16, generator=torch.Generator().manual_seed(4)))
    short = create_attack("pgd", eps=0.2, steps=2, step_size=0.2 / 8, random_start=False)
    assert NOT_CONVERGED in flags_for(det, short, x, is_anomaly)
    assert NOT_CONVERGED not in flags_for(det, create_attack("pgd", eps=0.2, steps=2), x, is_anomaly)


class WavyScorer(LinearScorer):
    """sum_i w_i sin(12 x_i): many local optima inside a 0.3 ball, so a short APGD stops early."""

    def score(self, x):
        return (torch.sin(12 * x.flatten(1)) * self.w).sum(1)


def test_not_converged_probes_the_strongest_white_box_member_of_an_ensemble() -> None:
    """A linear score is solved by APGD-4; on a wavy one APGD-1 stops short and APGD-2 (its rerun) finds more."""
    x, is_anomaly = toy_data(n=64)
    w = torch.randn(16, generator=torch.Generator().manual_seed(0))
    for det, steps, expected in ((LinearScorer(w), 4, False), (WavyScorer(w), 1, True)):
        attack = create_attack("autoattack", eps=0.3, apgd_steps=steps, square_queries=5)
        result = attack.run(det, x, is_anomaly, generator=torch.Generator().manual_seed(0))
        clean = det.score_batched(x).numpy()
        adv = result.completed_scores(det).numpy()
        flags = cell_flags(
            det, attack, x, is_anomaly, clean, adv, generator=torch.Generator().manual_seed(1), result=result
        )
        assert (NOT_CONVERGED in flags) == expected, type(det).__name__


def test_gradient_mismatch_on_shattered_gradients() -> None:
    x, is_anomaly = toy_data(n=40)
    w = torch.randn(16, generator=torch.Generator().manual_seed(5))
    assert GRADIENT_MISMATCH in flags_for(ShatteredScorer(w), create_attack("pgd", eps=8 / 255), x, is_anomaly)
    for smooth in (LinearScorer(w), MLPScorer(16, seed=1)):
        assert GRADIENT_MISMATCH not in flags_for(smooth, create_attack("pgd", eps=8 / 255), x, is_anomaly)


def test_gradient_masking_inside_an_ensemble() -> None:
    def members(apgd: float, square: float) -> list[dict]:
        return [
            {"attack": "apgd", "robust_auroc": apgd, "share": 0.5, "white_box": True},
            {"attack": "square", "robust_auroc": square, "share": 0.5, "white_box": False},
        ]

    masked = record("autoattack", 0.03, 0.48, key="masked", members=members(0.62, 0.48))
    fine = record("autoattack", 0.03, 0.45, key="fine", members=members(0.45, 0.455))
    worst = record("worst-case", 0.03, 0.45, key="worst", members=[{"attack": "pgd", "robust_auroc": 0.4}])
    flags = grid_flags([masked, fine, worst])
    assert flags == {"masked": [GRADIENT_MASKING]}


def test_check_subset_is_balanced_and_bounded() -> None:
    is_anomaly = torch.tensor([False] * 100 + [True] * 10)
    subset = check_subset(is_anomaly)
    assert subset.numel() == 32 + 10 and len(set(subset.tolist())) == subset.numel()
    assert is_anomaly[subset[:20]].sum() == 10  # the head alternates normal / anomalous


def test_autoattack_on_a_stochastic_detector_leaves_its_robust_scores_to_one_fresh_draw() -> None:
    """Members are compared on EOT means; the robust scores are then not tracked, so no score-mismatch fires."""
    x, is_anomaly = toy_data()
    det = NoisyLinearScorer(torch.randn(16, generator=torch.Generator().manual_seed(2)))
    attack = create_attack("autoattack", eps=0.05, apgd_steps=2)
    result = attack.run(det, x, is_anomaly, generator=torch.Generator().manual_seed(0))
    assert torch.isnan(result.scores).all() and len(result.members) == 1
    clean = det.score_batched(x).numpy()
    flags = cell_flags(det, attack, x, is_anomaly, clean, result.completed_scores(det).numpy(), result=result)
    assert SCORE_MISMATCH not in flags
