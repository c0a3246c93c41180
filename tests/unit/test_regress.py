"""The regression gate: baselines keyed by human-readable cells, two-sided tolerances, --update."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from bench import regress
from bench.cli import build_parser, main
from bench.store import Record, RunStore


def record(cls=0, detector="cobra", attack="pgd", clean=0.9, robust=0.5, status="ok", key=None) -> Record:
    """A minimal store record (digits, seed 0, linf, eps 4/255)."""
    return Record(
        dataset="digits", normal_class=cls, class_name=str(cls), detector=detector, seed=0, attack=attack,
        norm="linf", eps=4 / 255, clean_auroc=clean if status == "ok" else None,
        robust_auroc=robust if status == "ok" else None, status=status,
        error=None if status == "ok" else "CUDA out of memory", key=key or f"h{cls}{detector}{attack}",
    )  # fmt: skip


def write_run(run_dir: Path, records: list[Record]) -> str:
    store = RunStore(run_dir)
    store.write_manifest({"run_key": "r1", "preset": "smoke"})
    for rec in records:
        store.append_record(rec)
    return str(run_dir)


BASE = [record(0), record(1, robust=0.6), record(0, detector="deepsvdd", clean=0.8, robust=0.2)]


@pytest.fixture()
def baseline(tmp_path: Path) -> Path:
    path = tmp_path / "baselines" / "smoke.json"
    run = write_run(tmp_path / "base_run", BASE)
    assert main(["check", "--baseline", str(path), "--results", run, "--update"]) == 0
    return path


def test_update_baseline_writes_every_cell_and_refuses_a_run_with_failed_cells(tmp_path: Path, capsys) -> None:
    path, run = tmp_path / "baselines" / "smoke.json", tmp_path / "run"
    write_run(run, BASE)
    assert regress.update_baseline(path, run, BASE, None, None) == 0
    assert capsys.readouterr().out == f"baseline {path} rewritten: 3 cell(s) from {run}\n"
    data = json.loads(path.read_text())
    assert data["tolerances"] == {"abs": 0.01, "rel": 0.02} and data["source"] == {"run_key": "r1", "preset": "smoke"}
    assert regress.update_baseline(path, run, BASE, 0.005, None) == 0
    assert json.loads(path.read_text())["tolerances"] == {"abs": 0.005, "rel": 0.02}
    assert regress.update_baseline(path, run, BASE, None, None) == 0  # the old tolerances are kept
    assert json.loads(path.read_text())["tolerances"] == {"abs": 0.005, "rel": 0.02}
    before = path.read_text()
    assert regress.update_baseline(path, run, [*BASE, record(2, status="failed")], None, None) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == [
        "FAIL dataset=digits class=2 detector=cobra seed=0 attack=pgd norm=linf eps=4/255: the cell failed "
        "(CUDA out of memory)",
        f"baseline {path} not rewritten",
    ]
    assert path.read_text() == before


def test_baseline_is_keyed_by_readable_cells(baseline: Path) -> None:
    data = json.loads(baseline.read_text())
    ident = "dataset=digits class=1 detector=cobra seed=0 attack=pgd norm=linf eps=4/255"
    assert data["cells"][ident] == {"class_name": "1", "clean_auroc": 0.9, "robust_auroc": 0.6}
    assert data["tolerances"] == {"abs": 0.01, "rel": 0.02} and data["source"]["run_key"] == "r1"
    assert len(data["cells"]) == 3


def test_identical_and_within_tolerance_runs_pass(baseline: Path, tmp_path: Path, capsys) -> None:
    moved = [record(0, robust=0.509), record(1, robust=0.591), record(0, "deepsvdd", clean=0.815, robust=0.2)]
    assert main(["check", "--baseline", str(baseline), "--results", write_run(tmp_path / "a", BASE)]) == 0
    # 0.015 on a clean AUROC of 0.8 is within max(0.01, 0.02 * 0.8 = 0.016)
    assert main(["check", "--baseline", str(baseline), "--results", write_run(tmp_path / "b", moved)]) == 0
    assert "regression gate passed: 3 baseline cell(s) checked" in capsys.readouterr().out


@pytest.mark.parametrize("robust", [0.52, 0.48])
def test_a_move_beyond_tolerance_in_either_direction_fails_and_names_the_cell(
    baseline: Path, tmp_path: Path, capsys, robust: float
) -> None:
    run = write_run(tmp_path / "run", [record(0, robust=robust), *BASE[1:]])
    assert main(["check", "--baseline", str(baseline), "--results", run]) == 1
    out = capsys.readouterr().out
    direction = "rose" if robust > 0.5 else "fell"
    line = f"FAIL dataset=digits class=0 detector=cobra seed=0 attack=pgd norm=linf eps=4/255: robust_auroc {direction}"
    assert f"{line} 50.00% -> {100 * robust:.2f}%" in out
    assert out.count("FAIL ") == 1 and "FAILED (1 problem(s))" in out


def test_clean_auroc_is_gated_too_and_cli_tolerances_override(baseline: Path, tmp_path: Path, capsys) -> None:
    run = write_run(tmp_path / "run", [*BASE[:2], record(0, "deepsvdd", clean=0.78, robust=0.2)])
    assert main(["check", "--baseline", str(baseline), "--results", run]) == 1
    assert "detector=deepsvdd seed=0 attack=pgd norm=linf eps=4/255: clean_auroc fell 80.00% -> 78.00%" in (
        capsys.readouterr().out
    )
    assert main(["check", "--baseline", str(baseline), "--results", run, "--abs-tol", "0.03"]) == 0
    assert main(["check", "--baseline", str(baseline), "--results", run, "--abs-tol", "0", "--rel-tol", "0.03"]) == 0


def test_missing_cell_fails_and_new_cell_only_warns(baseline: Path, tmp_path: Path, capsys) -> None:
    missing = write_run(tmp_path / "missing", BASE[:2])
    assert main(["check", "--baseline", str(baseline), "--results", missing]) == 1
    assert "FAIL dataset=digits class=0 detector=deepsvdd" in capsys.readouterr().out
    extra = write_run(tmp_path / "extra", [*BASE, record(2)])
    assert main(["check", "--baseline", str(baseline), "--results", extra]) == 0
    out = capsys.readouterr().out
    assert "WARN dataset=digits class=2 detector=cobra seed=0 attack=pgd norm=linf eps=4/255: new cell" in out


def test_failed_records_fail_the_gate_and_block_update(baseline: Path, tmp_path: Path, capsys) -> None:
    run = write_run(tmp_path / "run", [*BASE, record(2, status="failed")])
    assert main(["check", "--baseline", str(baseline), "--results", run]) == 1
    assert "class=2 detector=cobra seed=0 attack=pgd norm=linf eps=4/255: the cell failed (CUDA out of memory)" in (
        capsys.readouterr().out
    )
    before = baseline.read_text()
    assert main(["check", "--baseline", str(baseline), "--results", run, "--update"]) == 1
    assert baseline.read_text() == before


def test_update_rewrites_the_baseline_and_keeps_its_tolerances(baseline: Path, tmp_path: Path) -> None:
    data = json.loads(baseline.read_text())
    data["tolerances"] = {"abs": 0.005, "rel": 0.0}
    baseline.write_text(json.dumps(data))
    run = write_run(tmp_path / "run", [record(0, robust=0.3), *BASE[1:]])
    assert main(["check", "--baseline", str(baseline), "--results", run]) == 1
    assert main(["check", "--baseline", str(baseline), "--results", run, "--update"]) == 0
    updated = json.loads(baseline.read_text())
    assert updated["tolerances"] == {"abs": 0.005, "rel": 0.0}
    assert updated["cells"]["dataset=digits class=0 detector=cobra seed=0 attack=pgd norm=linf eps=4/255"][
        "robust_auroc"
    ] == pytest.approx(0.3)
    assert main(["check", "--baseline", str(baseline), "--results", run]) == 0


def test_latest_record_of_a_cell_wins_with_a_warning() -> None:
    data = regress.build_baseline(BASE)
    rerun = [*BASE, record(0, robust=0.9, key="new-hash")]
    report = regress.compare(data, rerun)
    assert not report.passed and any("several records" in w for w in report.warnings)
    assert regress.tolerance(0.9, 0.01, 0.02) == pytest.approx(0.018)


def test_usage_errors_exit_2_with_one_line(tmp_path: Path, capsys) -> None:
    run = write_run(tmp_path / "run", BASE)
    assert main(["check", "--baseline", str(tmp_path / "none.json"), "--results", run]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not found; create it with --update" in err
    assert main(["check", "--baseline", str(tmp_path / "none.json"), "--results", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    (tmp_path / "bad.json").write_text("{")
    assert main(["check", "--baseline", str(tmp_path / "bad.json"), "--results", run]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    for argv in (["--results", run], ["--baseline", "b.json", "--results", run, "--abs-tol", "x"]):
        assert main(["check", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error:")


def test_workflow_runs_the_smoke_preset_then_a_gate_command_the_parser_accepts() -> None:
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((Path(__file__).parents[2] / ".github/workflows/robustness.yml").read_text())
    runs = [step.get("run", "") for step in workflow["jobs"]["gate"]["steps"]]
    smoke = next(i for i, run in enumerate(runs) if "--preset smoke" in run)
    gate = next(i for i, run in enumerate(runs) if "run_bench.py check" in run)
    assert smoke < gate
    argv = shlex.split(runs[gate].replace('"$RUN_DIR"', "results/runs/ci"))
    args = build_parser().parse_args(argv[argv.index("check") :])
    assert args.baseline == "results/baselines/smoke.json" and not args.update


def worst(robust: float, members: list[str]) -> Record:
    """A worst-case record of class 0 combining ``members``."""
    rec = record(0, attack="worst-case", robust=robust, key=f"wc-{'-'.join(members)}")
    rec.members = [{"attack": name, "robust_auroc": robust, "share": 1 / len(members)} for name in members]
    return rec


def test_worst_case_cells_are_gated_and_a_change_of_their_members_is_named(tmp_path: Path, capsys) -> None:
    path = tmp_path / "baseline.json"
    base = write_run(tmp_path / "base", [*BASE, worst(0.45, ["pgd"])])
    assert main(["check", "--baseline", str(path), "--results", base, "--update"]) == 0
    ident = "dataset=digits class=0 detector=cobra seed=0 attack=worst-case norm=linf eps=4/255"
    assert json.loads(path.read_text())["cells"][ident]["members"] == ["pgd"]
    assert "members" not in json.loads(path.read_text())["cells"][ident.replace("worst-case", "pgd")]
    capsys.readouterr()
    added = write_run(tmp_path / "added", [*BASE, worst(0.40, ["pgd", "square"])])
    assert main(["check", "--baseline", str(path), "--results", added]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {ident}: robust_auroc fell 45.00% -> 40.00%" in out and out.count("FAIL ") == 1
    assert f"WARN {ident}: members changed: pgd -> pgd, square" in out
    assert (
        main(
            ["check", "--baseline", str(path), "--results", write_run(tmp_path / "same", [*BASE, worst(0.45, ["pgd"])])]
        )
        == 0
    )
    assert "members changed" not in capsys.readouterr().out
