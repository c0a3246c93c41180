"""The worst-case record: per sample, the worst score over every attack of a (dataset, class, detector, seed,
norm, eps) group, recomputed when its sources change and written only then."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from attacks import ATTACKS
from bench import sanity
from bench.merge import merge_worst_case
from bench.metrics import WORST_CASE, auroc, worst_case
from bench.store import Record, RunStore

N_NORMAL, N_ANOMALY = 12, 8
LABELS = np.r_[np.zeros(N_NORMAL, bool), np.ones(N_ANOMALY, bool)]
CLEAN = torch.randn(len(LABELS), generator=torch.Generator().manual_seed(0)).double().numpy() + 1.5 * LABELS


def attacked(seed: int, side: str = "both", strength: float = 1.0) -> np.ndarray:
    """Seeded adversarial scores: normals pushed up, anomalies down (one side left at its clean score)."""
    push = strength * torch.rand(len(LABELS), generator=torch.Generator().manual_seed(seed)).double().numpy()
    moved = np.where(LABELS, CLEAN - push, CLEAN + push)
    keep = {"both": np.zeros_like(LABELS), "in": LABELS, "out": ~LABELS}[side]
    return np.where(keep, CLEAN, moved)


def cell(attack: str, adv: np.ndarray | None, *, eps: float = 4 / 255, cls: int = 0, flags=(), status="ok") -> Record:
    """A grid cell's record (robust AUROC from ``adv``)."""
    return Record(
        dataset="digits", normal_class=cls, class_name=str(cls), detector="deepsvdd", seed=0,
        attack=attack, norm="linf", eps=eps, clean_auroc=auroc(CLEAN, LABELS) if status == "ok" else None,
        robust_auroc=auroc(adv, LABELS) if status == "ok" else None, n_normal=N_NORMAL, n_anomaly=N_ANOMALY,
        flags=list(flags), key=f"{attack}-{cls}-{eps:.4f}", fit_key=f"fit-{cls}", status=status,
        error=None if status == "ok" else "boom", preset="quick",
    )  # fmt: skip


def add(store: RunStore, record: Record, adv: np.ndarray | None = None) -> str:
    """Append ``record`` and, for an ok cell, its per-sample scores with examples tagged by the attack's name."""
    store.append_record(record)
    if adv is not None:
        tag = np.full((2, 1, 4, 4), float(len(record.attack)), np.float16)
        store.save_scores(record.key, clean=CLEAN, adv=adv, is_anomaly=LABELS, examples_clean=tag, examples_adv=tag)
    return record.key


def merge(store: RunStore, keys: set[str], fresh: set[str] | None = None) -> tuple[list[Record], bool]:
    """The worst-case merge as a run applies it: over the store's records, rewritten when anything changed."""
    records, worst, changed = merge_worst_case(store, store.records(), keys, fresh)
    if changed:
        store.rewrite(records)
    return worst, changed


def worst_records(store: RunStore) -> list[Record]:
    return [r for r in store.records() if r.attack == WORST_CASE]


def test_worst_case_is_at_most_every_attack_per_sample_and_in_auroc(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    advs = {"pgd": attacked(1), "apgd": attacked(2), "pgd-in": attacked(3, "in"), "knn": attacked(4, "out")}
    flags = {"pgd": ["zero-gradients:0.20"], "knn": ["score-mismatch"]}
    keys = {add(store, cell(name, adv, flags=flags.get(name, ())), adv) for name, adv in advs.items()}
    [record], changed = merge(store, keys)
    assert changed and worst_records(store) == [record]
    adv = store.load_scores(record.key)["adv"]
    for name, other in advs.items():
        assert (adv[~LABELS] >= other[~LABELS]).all() and (adv[LABELS] <= other[LABELS]).all(), name
        assert record.robust_auroc <= auroc(other, LABELS)
    assert record.robust_auroc == auroc(worst_case(list(advs.values()), LABELS), LABELS)
    assert record.robust_auroc < min(auroc(a, LABELS) for a in advs.values())
    assert [m["attack"] for m in record.members] == sorted(advs)
    assert sum(m["share"] for m in record.members) == pytest.approx(1.0)
    assert {m["attack"]: m["robust_auroc"] for m in record.members} == {n: auroc(a, LABELS) for n, a in advs.items()}
    assert record.sources == sorted(keys) and record.flags == ["score-mismatch", "zero-gradients:0.20"]
    assert record.clean_auroc == auroc(CLEAN, LABELS) and (record.n_normal, record.n_anomaly) == (12, 8)
    top = max(record.members, key=lambda m: m["share"])["attack"]
    assert store.load_scores(record.key)["examples_adv"][0, 0, 0, 0] == len(top)


def test_a_single_attack_is_its_own_worst_case_at_every_eps(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    keys = {add(store, cell("pgd", attacked(1), eps=eps), attacked(1)) for eps in (0.0, 4 / 255)}
    records, _ = merge(store, keys)
    assert sorted(r.eps for r in records) == [0.0, 4 / 255]
    for record in records:
        assert record.robust_auroc == auroc(attacked(1), LABELS)
        assert record.members == [{"attack": "pgd", "robust_auroc": auroc(attacked(1), LABELS), "share": 1.0}]
        np.testing.assert_array_equal(store.load_scores(record.key)["adv"], attacked(1))


def test_ties_go_to_the_first_attack_by_name(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    keys = {add(store, cell(name, attacked(1)), attacked(1)) for name in ("square", "apgd")}
    [record], _ = merge(store, keys)
    assert [(m["attack"], m["share"]) for m in record.members] == [("apgd", 1.0), ("square", 0.0)]


def test_an_added_attack_replaces_the_worst_case_and_a_rerun_of_a_finished_grid_writes_nothing(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    keys = {add(store, cell("pgd", attacked(1), cls=c), attacked(1)) for c in (0, 1)}
    first, _ = merge(store, keys)
    keys |= {add(store, cell("square", attacked(2), cls=c), attacked(2)) for c in (0, 1)}
    second, changed = merge(store, keys)
    assert changed and len(worst_records(store)) == 2 and {r.key for r in first}.isdisjoint(r.key for r in second)
    assert all(len(r.sources) == 2 and r.robust_auroc < first[0].robust_auroc for r in second)
    assert not any(store.scores_path(r.key).exists() for r in first)
    assert all(store.scores_path(r.key).is_file() for r in second)
    files = [store.records_path, *(store.root / "scores").glob("*.npz")]
    before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in files]
    again, changed = merge(store, keys, fresh=set())
    assert not changed and again == second
    assert [(p.read_bytes(), p.stat().st_mtime_ns) for p in files] == before


def test_a_rerun_cell_updates_its_worst_case_in_place(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    keys = {add(store, cell("pgd", attacked(1)), attacked(1))}
    [before], _ = merge(store, keys)
    add(store, cell("pgd", attacked(5)), attacked(5))  # --force: same key, new numbers
    [after], changed = merge(store, keys, fresh=keys)
    assert changed and after.key == before.key and after.robust_auroc == auroc(attacked(5), LABELS)
    assert [r.robust_auroc for r in worst_records(store)] == [after.robust_auroc]


def test_failed_and_missing_sources_never_give_an_overstated_number(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    keys = {
        add(store, cell("apgd", None, cls=0, status="failed")),
        add(store, cell("pgd", attacked(1), cls=0), attacked(1)),
        add(store, cell("pgd", None, cls=1, status="failed")),
        add(store, cell("knn", None, cls=2, status="not-applicable")),
        add(store, cell("pgd", attacked(1), cls=3)),  # its scores file is missing
    }  # fmt: skip
    records = {r.normal_class: r for r in merge(store, keys)[0]}
    assert set(records) == {0, 1, 3}
    assert records[0].status == "ok" and records[0].flags == ["incomplete"]
    assert records[0].clean_auroc == auroc(CLEAN, LABELS) and records[0].fit_key == "fit-0"
    assert [m["attack"] for m in records[0].members] == ["pgd"]
    assert records[1].status == "failed" and records[1].robust_auroc is None
    assert records[3].status == "failed" and "scores of pgd are missing" in records[3].error


def test_worst_case_is_not_an_attack_and_cross_cell_checks_accept_it(tmp_path: Path) -> None:
    assert WORST_CASE not in ATTACKS and sanity.attack_kind(WORST_CASE) is None
    store = RunStore(tmp_path)
    runs = ((2 / 255, attacked(9, strength=3)), (4 / 255, attacked(1)))
    keys = {add(store, cell("pgd", adv, eps=eps), adv) for eps, adv in runs}
    records = {r.eps: r for r in merge(store, keys)[0]}
    assert records[2 / 255].robust_auroc < records[4 / 255].robust_auroc  # rose with eps: flagged
    assert records[4 / 255].flags == ["non-monotone-eps"] and records[2 / 255].flags == []


def test_worst_case_inherits_flags_only_from_attacks_that_supplied_a_sample(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    strong, weak = attacked(1), attacked(2, strength=0.001)
    keys = {
        add(store, cell("apgd", strong, flags=["zero-gradients:0.20"]), strong),
        add(store, cell("fgsm", weak, flags=["not-converged"]), weak),
    }
    [record], _ = merge(store, keys)
    assert {m["attack"]: m["share"] for m in record.members}["fgsm"] == 0.0
    assert record.flags == ["zero-gradients:0.20"]


def test_a_group_with_no_fresh_cell_reads_no_scores_and_follows_its_sources_flags(tmp_path: Path, monkeypatch) -> None:
    store = RunStore(tmp_path)
    keys = {add(store, cell("pgd", attacked(1)), attacked(1))}
    [before], _ = merge(store, keys)
    store.append_record(cell("pgd", attacked(1), flags=["not-converged"]))  # the grid merge flagged the source

    def no_scores(*args, **kwargs):
        raise AssertionError("a worst case whose sources did not run again must not read scores")

    monkeypatch.setattr(store, "load_scores", no_scores)
    [after], changed = merge(store, keys, fresh=set())
    assert changed and after.key == before.key and after.robust_auroc == before.robust_auroc
    assert after.flags == ["not-converged"]


def test_a_source_recomputed_by_an_interrupted_run_rebuilds_its_worst_case_even_when_not_fresh(tmp_path: Path) -> None:
    """A --force run killed after recomputing a cell, then a plain rerun (nothing fresh): the worst case must follow
    the new scores, never keep the old, higher number."""
    store = RunStore(tmp_path)
    weak, strong = attacked(1, strength=0.1), attacked(1, strength=3.0)
    keys = {add(store, cell("pgd", weak), weak)}
    [before], _ = merge(store, keys)
    add(store, cell("pgd", strong), strong)  # same key, new record and scores file
    [after], changed = merge(store, keys, fresh=set())
    assert changed and after.key == before.key
    assert after.robust_auroc == auroc(strong, LABELS) < before.robust_auroc
