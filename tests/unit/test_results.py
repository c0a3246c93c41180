"""bench.results: a run's records as a typed frame, the ranked leaderboard, bootstrap intervals, seeds, merged runs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from bench import results
from bench.cli import main
from bench.store import Record, RunStore


def record(detector: str = "a", attack: str = "worst-case", cls: int = 0, seed: int = 0, clean: float | None = 0.9,
           robust: float | None = 0.5, status: str = "ok", key: str | None = None,
           dataset: str = "digits") -> Record:  # fmt: skip
    return Record(
        dataset=dataset, normal_class=cls, class_name=f"c{cls}", detector=detector, seed=seed, attack=attack,
        norm="linf", eps=4 / 255, key=key or f"{dataset}-{detector}-{attack}-{cls}-{seed}", status=status,
        clean_auroc=clean, robust_auroc=robust, n_normal=30, n_anomaly=20, backbone_passes=500,
    )  # fmt: skip


def save_scores(run: Path, rec: Record, shift: float) -> tuple[float, float]:
    """Seeded scores for ``rec`` in ``run``; returns their (clean, robust) AUROC."""
    gen = torch.Generator().manual_seed(rec.normal_class + 10 * rec.seed)
    labels = np.r_[np.zeros(30, bool), np.ones(20, bool)]
    clean = torch.randn(50, generator=gen).numpy() + 2.0 * labels
    adv = clean + shift * np.where(labels, -1.0, 1.0)
    RunStore(run).save_scores(rec.key, clean=clean, adv=adv, is_anomaly=labels)
    return roc_auc_score(labels, clean), roc_auc_score(labels, adv)


def write(run: Path, records: list[Record], manifest: dict | None = None) -> Path:
    store = RunStore(run)
    store.write_manifest(manifest or {"run_key": run.name})
    for rec in records:
        store.append_record(rec)
    return run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of the smoke preset: one class, DeepSVDD, FGSM (and its worst case)."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    argv = ["--preset", "smoke", "--classes", "0", "--detectors", "deepsvdd", "--attacks", "fgsm", "--quiet"]
    assert main([*argv, "--out", str(out)]) == 0
    return out


def test_load_gives_a_typed_row_per_record_of_a_finished_run(tiny_run: Path) -> None:
    frame = results.load(tiny_run)
    records = RunStore(tiny_run).records()
    assert len(frame) == len(records) == 2 and list(frame["key"]) == [r.key for r in records]
    assert sorted(frame["attack"]) == ["fgsm", "worst-case"]
    assert frame["normal_class"].dtype == "int64" and frame["eps"].dtype == "float64"
    assert frame["robust_auroc"].dtype == "float64" and frame["n_normal"].dtype == "Int64"
    assert isinstance(frame["detector"].dtype, pd.StringDtype) and frame["flags"].dtype == object
    assert set(frame["eps_label"]) == {"2/255"} and set(frame["run"]) == {str(tiny_run)}
    assert frame["robust_auroc"].tolist() == [r.robust_auroc for r in records]


def test_leaderboard_of_a_finished_run(tiny_run: Path) -> None:
    board = results.leaderboard(results.load(tiny_run), "digits")
    assert len(board) == 1 and board.loc[0, "rank"] == 1 and board.loc[0, "detector"] == "deepsvdd"
    assert list(board.columns[:10]) == ["rank", "detector", "paper", "venue", "link", "adv_trained", "clean",
                                        "worst-case 2/255", "fgsm 2/255", "passes/image"]  # fmt: skip
    assert board.loc[0, "paper"] == "Deep One-Class Classification" and board.loc[0, "venue"] == "ICML 2018"
    assert not board.loc[0, "adv_trained"] and np.isnan(board.loc[0, "paper clean"])  # no paper number on digits
    for column in results.auroc_columns(board):
        low, high = board.loc[0, f"{column} ci"]
        assert low <= board.loc[0, column] <= high and high - low < 30


def test_rows_are_ranked_by_worst_case_then_clean_and_ties_share_a_rank() -> None:
    frame = results.frame_of([
        record("a", robust=0.5, clean=0.9), record("b", robust=0.5, clean=0.95), record("c", robust=0.7),
        record("d", robust=0.5, clean=0.9), record("e", status="failed", clean=None, robust=None),
        record("a", attack="pgd", robust=0.1), record("c", attack="pgd", robust=0.75),
    ])  # fmt: skip
    board = results.leaderboard(frame, "digits")
    assert list(board["detector"]) == ["c", "b", "a", "d", "e"]
    assert list(board["rank"]) == [1, 2, 3, 3, 5]
    assert list(board.columns[6:9]) == ["clean", "worst-case 4/255", "pgd 4/255"]
    assert board["worst-case 4/255"].tolist()[:4] == [70.0, 50.0, 50.0, 50.0] and np.isnan(board.iloc[4]["clean"])
    assert board.iloc[4]["worst-case 4/255 flags"] == [] and board.iloc[0]["pgd 4/255 ci"] is None


def test_without_a_worst_case_column_the_lowest_robust_auroc_ranks() -> None:
    frame = results.frame_of([record("a", "pgd", robust=0.6), record("a", "fgsm", robust=0.2),
                              record("b", "pgd", robust=0.3), record("b", "fgsm", robust=0.4)])  # fmt: skip
    assert list(results.leaderboard(frame, "digits")["detector"]) == ["b", "a"]


def test_means_over_classes_then_seeds_with_std_over_seeds() -> None:
    frame = results.frame_of([
        record(cls=0, seed=0, robust=0.2), record(cls=1, seed=0, robust=0.4),
        record(cls=0, seed=1, robust=0.6), record(cls=1, seed=1, robust=0.8, clean=0.7),
    ])  # fmt: skip
    board = results.leaderboard(frame, "digits")
    assert board.loc[0, "worst-case 4/255"] == pytest.approx(50.0)
    assert board.loc[0, "worst-case 4/255 std"] == pytest.approx(np.std([30.0, 70.0], ddof=1))
    assert board.loc[0, "clean"] == pytest.approx(85.0) and board.loc[0, "clean std"] == pytest.approx(7.0710678)
    assert not any(c.endswith(" ci") for c in board.columns)


def test_clean_counts_each_fit_once_and_failed_cells_mark_incomplete() -> None:
    frame = results.frame_of([
        record(cls=0, attack="pgd", clean=0.9), record(cls=0, attack="apgd", clean=0.9),
        record(cls=1, attack="pgd", clean=0.7), record(cls=1, attack="apgd", status="failed", clean=None, robust=None),
    ])  # fmt: skip
    board = results.leaderboard(frame, "digits")
    assert board.loc[0, "clean"] == pytest.approx(80.0) and board.loc[0, "clean flags"] == []
    assert board.loc[0, "apgd 4/255"] == pytest.approx(50.0) and board.loc[0, "apgd 4/255 flags"] == ["incomplete"]
    assert board.loc[0, "pgd 4/255 flags"] == []


def test_intervals_bracket_the_estimate_and_are_seeded(tmp_path: Path) -> None:
    records, expected = [], {}
    for cls in (0, 1):
        for detector, shift in (("a", 0.3), ("b", 1.5)):
            rec = record(detector, cls=cls)
            expected[detector, cls] = save_scores(tmp_path, rec, shift)
            rec.clean_auroc, rec.robust_auroc = expected[detector, cls]
            records.append(rec)
    write(tmp_path, records)
    board = results.leaderboard(results.load(tmp_path), "digits")
    assert list(board["detector"]) == ["a", "b"]
    for _, row in board.iterrows():
        for column, index in (("clean", 0), ("worst-case 4/255", 1)):
            mean = 100 * np.mean([expected[row["detector"], c][index] for c in (0, 1)])
            low, high = row[f"{column} ci"]
            assert row[column] == pytest.approx(mean) and low < mean < high and 1 < high - low < 40
    classes = results.per_class(results.load(tmp_path), "digits")
    assert list(zip(classes["normal_class"], classes["detector"], classes["rank"], strict=True)) == [
        (0, "a", 1), (0, "b", 2), (1, "a", 1), (1, "b", 2)
    ]  # fmt: skip
    single = classes.iloc[0]["worst-case 4/255 ci"]
    assert single[0] < 100 * expected["a", 0][1] < single[1]
    # the mean's interval is narrower than its classes' (two test sets resampled independently)
    assert np.diff(board.loc[0, "worst-case 4/255 ci"]) < np.diff(single)
    results._bootstrap.cache_clear()
    again = results.leaderboard(results.load(tmp_path), "digits")
    assert again["worst-case 4/255 ci"].tolist() == board["worst-case 4/255 ci"].tolist()


def test_merged_runs_latest_record_per_key_wins(tmp_path: Path) -> None:
    first = write(tmp_path / "first", [record("a", robust=0.5, key="k1"), record("b", robust=0.6, key="k2")])
    second = write(tmp_path / "second", [record("a", robust=0.7, key="k1"), record("c", robust=0.1, key="k3")])
    frame = results.load(first, second)
    assert len(frame) == 3 and frame.set_index("key").loc["k1", "robust_auroc"] == 0.7
    assert frame.set_index("key").loc["k1", "run"] == str(second)
    assert results.load(second, first).set_index("key").loc["k1", "robust_auroc"] == 0.5
    board = results.leaderboard(frame, "digits")
    assert list(board["detector"]) == ["a", "b", "c"] and board.loc[0, "worst-case 4/255"] == 70.0
    # one cell under another key (other settings): the later record counts
    third = write(tmp_path / "third", [record("b", robust=0.2, key="k2-new")])
    assert results.leaderboard(results.load(first, second, third), "digits").set_index("detector").loc[
        "b", "worst-case 4/255"
    ] == pytest.approx(20.0)  # fmt: skip
    assert [m["run"] for m in results.manifests(first, second)] == [str(first), str(second)]
    assert results.manifests(first)[0]["run_key"] == "first"


def test_report_merges_run_folders_into_out_citing_each_run(tmp_path: Path, capsys) -> None:
    first = write(tmp_path / "first", [record("a", robust=0.5, key="k1")], {"run_key": "r1", "command": "one"})
    second = write(tmp_path / "second", [record("a", robust=0.7, key="k1")], {"run_key": "r2", "git_sha": "abc"})
    assert main(["report", "--results", str(first), str(second), "--quiet"]) == 2
    assert "need --out" in capsys.readouterr().err
    out = tmp_path / "merged"
    assert main(["report", "--results", str(first), str(second), "--out", str(out), "--quiet"]) == 0
    runs = list(csv.DictReader((out / "leaderboard_runs.csv").read_text().splitlines()))
    assert [(r["run"], r["run_key"], r["command"], r["git_sha"]) for r in runs] == [
        (str(first), "r1", "one", ""), (str(second), "r2", "", "abc")
    ]  # fmt: skip
    md = (out / "leaderboard.md").read_text()
    assert "runs `r1`, `r2`" in md and "## Runs" in md
    assert next(csv.DictReader((out / "leaderboard.csv").read_text().splitlines()))["worst-case 4/255"] == "70.0"
    assert not (first / "leaderboard.md").exists()
    assert main(["report", "--results", str(first), str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_members_in_leaderboard_order() -> None:
    recs = [record("a", robust=0.3), record("b", robust=0.6)]
    for rec, offset in zip(recs, (0.0, 0.3), strict=True):
        rec.members = [{"attack": "pgd", "robust_auroc": 0.3 + offset, "share": 0.8},
                       {"attack": "square", "robust_auroc": 0.5 + offset, "share": 0.2}]  # fmt: skip
        rec.skipped_members = [{"attack": "apgd-ce", "reason": "no gradients"}]
    table = results.members(results.frame_of(recs), "digits")
    assert list(zip(table["detector"], table["member"], strict=True)) == [
        ("b", "pgd"), ("b", "square"), ("b", "apgd-ce"), ("a", "pgd"), ("a", "square"), ("a", "apgd-ce")
    ]  # fmt: skip
    assert table.loc[0, "robust"] == pytest.approx(60.0) and table.loc[0, "share"] == pytest.approx(80.0)
    assert np.isnan(table.loc[2, "robust"]) and table.loc[2, "skipped"] == "no gradients"


def test_paper_columns_come_from_the_detector_registry() -> None:
    frame = results.frame_of([record("cobra", dataset="fmnist"), record("toy", dataset="fmnist")])
    board = results.leaderboard(frame, "fmnist").set_index("detector")
    assert (board.loc["cobra", "paper clean"], board.loc["cobra", "paper robust"]) == (93.1, 89.6)
    assert board.loc["cobra", "venue"] == "ICLR 2025" and bool(board.loc["cobra", "adv_trained"])
    assert pd.isna(board.loc["toy", "paper"]) and pd.isna(board.loc["toy", "adv_trained"])
    assert np.isnan(board.loc["toy", "paper clean"])
