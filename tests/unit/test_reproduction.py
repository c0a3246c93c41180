"""The reproduction report: ours vs the paper's AUROC, the gap and the protocol differences of the run's config."""

from __future__ import annotations

import pandas as pd

from bench.config import config_from_preset, format_eps
from bench.report.reproduction import comparisons, manifest_for, render_reproduction
from bench.store import Record

LOW_RES_EPS = 4 / 255


def records(
    classes, *, detector="cobra", dataset="fmnist", eps=LOW_RES_EPS, clean=0.93, pgd=0.90, worst=0.89, steps=1000
):
    """A PGD and a worst-case record per class (AUROCs as fractions, as the store keeps them)."""
    out = []
    for c in classes:
        for attack, robust in (("pgd", pgd), ("worst-case", worst)):
            out.append(
                Record(
                    dataset=dataset,
                    normal_class=c,
                    detector=detector,
                    seed=0,
                    attack=attack,
                    norm="linf",
                    eps=eps,
                    key=f"{dataset}-{detector}-{c}-{attack}-{eps}",
                    clean_auroc=clean,
                    robust_auroc=robust,
                    steps=steps if attack == "pgd" else None,
                )
            )
    return out


def frame_of(recs, run="results/runs/a"):
    """What ``bench.results.load`` gives: one row per record, plus ``eps_label`` and ``run``."""
    frame = pd.DataFrame([r.to_dict() for r in recs])
    frame["eps_label"] = frame["eps"].map(format_eps)
    frame["run"] = run
    return frame


def manifest(preset, run="results/runs/a"):
    return {"run": run, "preset": preset, "command": f"python run_bench.py --preset {preset}",
            "config": config_from_preset(preset).to_dict()}  # fmt: skip


def test_quick_settings_list_the_differences_and_the_gap():
    frame = frame_of(records([0, 1], clean=0.89, pgd=0.80, worst=0.78, steps=10))
    text = render_reproduction(frame, [manifest("quick")])
    assert "fmnist · cobra · eps 4/255" in text
    assert "clean 93.1, robust 89.6 (PGD-1000 at 4/255)" in text
    assert "clean 89.0, PGD 80.0 (PGD-10), worst case 78.0" in text
    assert "Gap (ours - paper): clean -4.1, robust -9.6 (PGD)" in text
    for difference in (
        "PGD-10 (paper PGD-1000)",
        "2 of 10 classes (0, 1) (paper: all 10)",
        "image size 16 px (paper 32 px)",
        "1 channel (paper 3: grey images repeated to RGB)",
        "training set (the normal class) subsampled to 1000 images",
        "test set subsampled to 500 images",
        "`epochs` 3 (paper 100)",
        "`attack_steps` 1 (paper 10)",
        "`width` 8 (paper 64)",
    ):
        assert difference in text, difference
    assert "Verdict: **reproduced**" not in text
    assert "protocol differs" in text


def test_paper_protocol_within_tolerance_is_reproduced():
    frame = frame_of(records(range(10)))
    text = render_reproduction(frame, [manifest("paper")])
    assert "Protocol differences: none found" in text
    assert "Verdict: **reproduced**" in text
    (item,) = comparisons(frame, [manifest("paper")])
    assert round(item.clean_gap, 6) == -0.1 and round(item.robust_gap, 6) == 0.4


def test_paper_protocol_with_a_large_gap_is_not_reproduced():
    frame = frame_of(records(range(10), pgd=0.70))
    assert "Verdict: **not reproduced (gap beyond ±2)**" in render_reproduction(frame, [manifest("paper")])


def test_eps_other_than_the_papers_is_a_difference():
    frame = frame_of(records(range(10), eps=8 / 255))
    text = render_reproduction(frame, [manifest("paper")])
    assert "eps 8/255 (paper 4/255)" in text and "Verdict: **reproduced**" not in text


def test_without_a_manifest_nothing_is_reproduced():
    text = render_reproduction(frame_of(records(range(10))), [])
    assert "run config unknown" in text and "Verdict: **reproduced**" not in text


def test_only_rows_with_a_paper_result_are_reported():
    recs = records([0], detector="ae") + records([0], dataset="digits")
    text = render_reproduction(frame_of(recs), [manifest("quick")])
    assert "No result of these runs has a paper counterpart" in text
    assert comparisons(frame_of(recs), []) == []


def test_missing_pgd_cell_compares_the_worst_case_and_says_so():
    recs = [r for r in records(range(10)) if r.attack == "worst-case"]
    text = render_reproduction(frame_of(recs), [manifest("paper")])
    assert "no PGD cell (paper PGD-1000)" in text
    assert "robust -0.6 (worst case)" in text


def test_merged_runs_name_the_run_a_difference_comes_from():
    frame = pd.concat(
        [frame_of(records(range(5)), run="runs/paper"), frame_of(records(range(5, 10), steps=10), run="runs/quick")]
    )
    text = render_reproduction(frame, [manifest("paper", "runs/paper"), manifest("quick", "runs/quick")])
    assert "run `runs/quick`: image size 16 px (paper 32 px)" in text
    assert "PGD-10/1000 (paper PGD-1000)" in text
    assert "run `runs/paper`:" not in text


def test_report_is_byte_stable():
    frame = frame_of(records([0, 1], steps=10))
    assert render_reproduction(frame, [manifest("quick")]) == render_reproduction(frame, [manifest("quick")])


def test_manifest_matching():
    a, b = manifest("paper", "runs/a"), manifest("quick", "runs/b")
    assert manifest_for("runs/b", None, [a, b]) is b
    assert manifest_for("runs/x", None, {"runs/x": a}) is a
    assert manifest_for("elsewhere", None, [b]) is b  # the only manifest given
    unnamed = [{k: v for k, v in m.items() if k != "run"} for m in (a, b)]
    assert manifest_for("elsewhere", "quick", unnamed) is unnamed[1]  # by the records' preset
    assert manifest_for("elsewhere", None, unnamed) is None


def test_a_failed_pgd_class_or_a_flag_or_a_replaced_record_keeps_it_from_being_reproduced():
    import dataclasses

    recs = records(range(10))
    failed = [dataclasses.replace(r, status="failed", robust_auroc=None) if r.normal_class == 1 and r.attack == "pgd"
              else r for r in recs]  # fmt: skip
    text = render_reproduction(frame_of(failed), [manifest("paper")])
    assert "1 failed cell(s)" in text and "PGD covers classes" in text and "Verdict: **reproduced**" not in text
    flagged = [dataclasses.replace(r, flags=["not-converged"]) if r.attack == "pgd" else r for r in recs]
    text = render_reproduction(frame_of(flagged), [manifest("paper")])
    assert "sanity flags" in text and "Verdict: **reproduced**" not in text
    stale = [dataclasses.replace(recs[0], key="old", robust_auroc=0.1), *recs]  # an older record of one cell
    (item,) = comparisons(frame_of(stale), [manifest("paper")])
    assert round(item.robust_gap, 6) == 0.4, "the older record of a cell must not count"
