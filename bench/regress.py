"""The regression gate: compare a run's clean and robust AUROC with a committed baseline.

A baseline (``results/baselines/<preset>.json``) maps a human-readable cell id (dataset, class, detector, seed,
attack, norm, eps; stable across code changes, unlike the content hash) to its clean and robust AUROC, plus the
tolerances. A number moving beyond ``max(abs_tol, rel_tol * |baseline|)`` in EITHER direction fails the gate:
a robust AUROC that rises may mean a weakened attack, one that falls a weakened defence. A baseline cell missing
from the run fails; a failed record fails; a cell new to the run only warns. Worst-case and ensemble cells are
gated like any other; their baseline also names their members, and a cell whose members changed (an attack added
to the grid, an ensemble member skipped) gets a warning, since that alone can move its number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import format_eps
from bench.errors import UsageError
from bench.store import Record, RunStore, atomic_write_text

BASELINE_FORMAT = 1
DEFAULT_ABS_TOL = 0.01
DEFAULT_REL_TOL = 0.02


def cell_id(record: Record) -> str:
    """The stable, human-readable id of a record's cell, e.g.
    ``dataset=digits class=0 detector=cobra seed=0 attack=pgd norm=linf eps=4/255``."""
    return (
        f"dataset={record.dataset} class={record.normal_class} detector={record.detector} "
        f"seed={record.seed} attack={record.attack} norm={record.norm or '-'} eps={format_eps(float(record.eps))}"
    )


def gated_numbers(record: Record) -> dict[str, float | None]:
    """The numbers the gate compares, by their name in a baseline cell."""
    return {"clean_auroc": record.clean_auroc, "robust_auroc": record.robust_auroc}


@dataclass
class GateReport:
    """What the gate found: failures make it fail, warnings only inform."""

    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    n_checked: int = 0

    @property
    def passed(self) -> bool:
        return not self.failures

    def lines(self) -> list[str]:
        """Human-readable lines: each failure and warning, then a verdict."""
        out = [f"FAIL {line}" for line in self.failures] + [f"WARN {line}" for line in self.warnings]
        verdict = "passed" if self.passed else f"FAILED ({len(self.failures)} problem(s))"
        return [*out, f"regression gate {verdict}: {self.n_checked} baseline cell(s) checked"]


def tolerance(old: float, abs_tol: float, rel_tol: float) -> float:
    """The allowed move of a number whose baseline value is ``old``."""
    return max(abs_tol, rel_tol * abs(old))


def load_baseline(path: str | Path) -> dict[str, Any]:
    """Read a baseline file; a missing or malformed one raises UsageError."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"baseline {path} not found; create it with --update")
    try:
        baseline = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UsageError(f"baseline {path} is not valid JSON: {err}") from None
    if not isinstance(baseline, dict) or not isinstance(baseline.get("cells"), dict):
        raise UsageError(f"baseline {path} has no 'cells' mapping")
    return baseline


def latest_by_cell(records: list[Record]) -> tuple[dict[str, Record], list[str]]:
    """Records by cell id (the last one wins) and the ids that appear more than once."""
    by_id: dict[str, Record] = {}
    repeated = []
    for record in records:
        ident = cell_id(record)
        if ident in by_id and ident not in repeated:
            repeated.append(ident)
        by_id[ident] = record
    return by_id, repeated


def failed_cells(records: list[Record]) -> list[str]:
    """``<cell id>: the cell failed (<error>)`` for every failed record (the latest per cell)."""
    by_id, _ = latest_by_cell(records)
    return [
        f"{ident}: the cell failed ({r.error or 'no error message'})"
        for ident, r in by_id.items()
        if r.status == "failed"
    ]


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{100 * value:.2f}%"


def compare(
    baseline: dict[str, Any],
    records: list[Record],
    abs_tol: float | None = None,
    rel_tol: float | None = None,
) -> GateReport:
    """Check ``records`` against ``baseline``; explicit tolerances override the baseline's own."""
    tolerances = baseline.get("tolerances", {})
    abs_tol = tolerances.get("abs", DEFAULT_ABS_TOL) if abs_tol is None else abs_tol
    rel_tol = tolerances.get("rel", DEFAULT_REL_TOL) if rel_tol is None else rel_tol
    by_id, repeated = latest_by_cell(records)
    report = GateReport(n_checked=len(baseline["cells"]))
    report.warnings += [f"{ident}: several records, the last one is checked" for ident in repeated]
    report.failures += failed_cells(records)
    for ident, expected in baseline["cells"].items():
        record = by_id.get(ident)
        if record is None:
            report.failures.append(f"{ident}: missing from the results (baseline cell not run)")
            continue
        if not record.ok:
            continue
        for metric, new in gated_numbers(record).items():
            old = expected.get(metric)
            if old is None:
                continue
            if new is None:
                report.failures.append(f"{ident}: {metric} missing (baseline {_fmt(old)})")
            elif abs(new - old) > tolerance(old, abs_tol, rel_tol) + 1e-12:
                direction = "rose" if new > old else "fell"
                report.failures.append(
                    f"{ident}: {metric} {direction} {_fmt(old)} -> {_fmt(new)} "
                    f"(|Δ| {100 * abs(new - old):.2f} > tolerance {100 * tolerance(old, abs_tol, rel_tol):.2f} points)"
                )
    report.warnings += [f"{ident}: new cell, not in the baseline" for ident in by_id if ident not in baseline["cells"]]
    report.warnings += members_changed(baseline["cells"], by_id)
    return report


def members_changed(cells: dict[str, dict[str, Any]], by_id: dict[str, Record]) -> list[str]:
    """``<cell id>: members changed: a, b -> a, b, c`` for baseline cells whose record combines other members."""
    lines = []
    for ident, expected in cells.items():
        now = member_names(by_id[ident]) if ident in by_id else None
        if now is not None and "members" in expected and expected["members"] != now:
            lines.append(f"{ident}: members changed: {', '.join(expected['members'])} -> {', '.join(now) or 'none'}")
    return lines


def member_names(record: Record) -> list[str]:
    """The attacks a worst-case or ensemble record combines (empty for a single attack)."""
    return [member["attack"] for member in record.members or ()]


def baseline_cell(record: Record) -> dict[str, Any]:
    """What a baseline keeps of a record: class name, the gated numbers, and the members it combines if any."""
    members = {"members": member_names(record)} if record.members else {}
    return {"class_name": record.class_name, **gated_numbers(record), **members}


def build_baseline(
    records: list[Record],
    abs_tol: float = DEFAULT_ABS_TOL,
    rel_tol: float = DEFAULT_REL_TOL,
    manifest: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A baseline holding every cell of ``records``; failed cells raise ValueError (never baseline a failure)."""
    by_id, _ = latest_by_cell(records)
    failed = failed_cells(records)
    if failed:
        raise ValueError(f"refusing to write a baseline: {len(failed)} cell(s) failed, e.g. {failed[0]}")
    if not by_id:
        raise UsageError("refusing to write an empty baseline: the run has no records")
    manifest = manifest or {}
    cells = {ident: baseline_cell(r) for ident, r in sorted(by_id.items())}
    keys = ("run_key", "preset", "git_sha", "command", "devices")
    source = {k: manifest.get(k) for k in keys if manifest.get(k) is not None}
    return {
        "format": BASELINE_FORMAT,
        "tolerances": {"abs": abs_tol, "rel": rel_tol},
        "source": source,
        "cells": cells,
    }


def write_baseline(path: str | Path, baseline: dict[str, Any]) -> None:
    """Write a baseline as stable, diff-friendly JSON (sorted keys, one cell per block)."""
    atomic_write_text(Path(path), json.dumps(baseline, indent=2, sort_keys=True) + "\n")


def update_baseline(
    path: Path, run_dir: Path, records: list[Record], abs_tol: float | None, rel_tol: float | None
) -> int:
    """Rewrite the baseline at ``path`` from the run's records, keeping the old tolerances unless new ones are given;
    returns the exit code. Never from a run with failed cells: those are listed and the exit code is 1."""
    failed = failed_cells(records)
    if failed:
        print("\n".join([*(f"FAIL {line}" for line in failed), f"baseline {path} not rewritten"]))
        return 1
    old = load_baseline(path).get("tolerances", {}) if path.is_file() else {}
    baseline = build_baseline(
        records,
        abs_tol=old.get("abs", DEFAULT_ABS_TOL) if abs_tol is None else abs_tol,
        rel_tol=old.get("rel", DEFAULT_REL_TOL) if rel_tol is None else rel_tol,
        manifest=RunStore(run_dir).read_manifest(),
    )
    write_baseline(path, baseline)
    print(f"baseline {path} rewritten: {len(baseline['cells'])} cell(s) from {run_dir}")
    return 0
