"""The leaderboard as data: one table per dataset, a row per detector, Clean plus one column per attack budget.

Every output format (CSV, Markdown, LaTeX, HTML, console) renders this model, so they agree on numbers, on
which cell is best (bold) or second (underlined), and on which cells carry sanity flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.config import format_eps
from bench.metrics import Summary, aggregate_clean, aggregate_robust, passes_per_image

#: What each sanity flag (bench/sanity.py) means, for legends and tooltips; unknown flags are shown by name.
FLAG_DESCRIPTIONS = {
    "possible-gradient-masking": "a gradient-free attack (Square) beat the white-box attacks (gradients may be masked)",
    "eps0-mismatch": "the attack at eps=0 did not reproduce the clean AUROC",
    "stochastic-no-eot": "a stochastic detector was attacked with one random draw per step (no EOT)",
    "non-monotone-eps": "robust AUROC rose with a larger eps (the attack may not have converged)",
    "non-monotone-steps": "robust AUROC rose with more attack steps (the attack may not have converged)",
    "zero-gradients": "many inputs had all-zero or non-finite score gradients (the number is their share)",
    "score-mismatch": "the robust scores the attack tracked differ from a fresh scoring of its adversarial inputs",
    "incomplete": "some cells of this average failed; the mean covers fewer classes",
}
FLAG_MARK = "†"


def flag_base(flag: str) -> str:
    """A flag without its detail: ``zero-gradients:0.42`` -> ``zero-gradients``."""
    return flag.split(":", 1)[0]


def describe_flag(flag: str) -> str:
    """``flag: explanation`` for a legend or tooltip."""
    description = FLAG_DESCRIPTIONS.get(flag_base(flag))
    return f"{flag}: {description}" if description else flag


def pct(value: float) -> str:
    """A fraction printed as a percentage with one decimal."""
    return f"{100 * value:.1f}"


@dataclass(frozen=True)
class Column:
    """Clean AUROC (attack None) or robust AUROC under one (attack, norm, eps)."""

    label: str
    attack: tuple[str, str, float] | None = None

    @property
    def is_clean(self) -> bool:
        return self.attack is None


@dataclass
class DatasetTable:
    """One dataset's leaderboard: ``cells[(detector, column_index)]``; a missing key means no result."""

    dataset: str
    detectors: list[str]
    columns: list[Column]
    cells: dict[tuple[str, int], Summary]
    passes: dict[str, float] = field(default_factory=dict)

    def cell(self, detector: str, column: int) -> Summary | None:
        return self.cells.get((detector, column))

    def rank(self, detector: str, column: int) -> int | None:
        """1 for the best detector of a column, 2 for the second, else None (decided on unrounded means).

        Ties share a rank; a column where every value ties marks nothing. Best is marked when at least two
        detectors have a value, second when at least three.
        """
        values = {d: s.mean for (d, c), s in self.cells.items() if c == column}
        distinct = sorted(set(values.values()), reverse=True)
        if detector not in values or len(distinct) < 2:
            return None
        position = distinct.index(values[detector]) + 1
        if position == 1 or (position == 2 and len(values) >= 3):
            return position
        return None

    def flagged(self) -> list[tuple[str, Column, tuple[str, ...]]]:
        """(detector, column, flags) of every flagged cell, in table order."""
        return [
            (d, col, self.cells[d, i].flags)
            for d in self.detectors
            for i, col in enumerate(self.columns)
            if (d, i) in self.cells and self.cells[d, i].flags
        ]


@dataclass
class Leaderboard:
    """All datasets' tables plus what the run was (for captions)."""

    tables: list[DatasetTable]
    detectors: list[str]
    n_seeds: int
    run_key: str = ""
    preset: str = ""
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def flags(self) -> list[str]:
        """Every kind of flag (details such as a share dropped) that appears in any table, sorted."""
        return sorted({flag_base(f) for t in self.tables for _, _, flags in t.flagged() for f in flags})


def column_labels(attacks: list[tuple[str, str, float]]) -> list[str]:
    """Attack names, with the budget when an attack has several and the norm when the run mixes norms."""
    norms = {norm for _, norm, _ in attacks}
    labels = []
    for name, norm, eps in attacks:
        several_eps = len({e for a, n, e in attacks if a == name and n == norm}) > 1
        parts = [name, *([norm] if len(norms) > 1 else []), *([format_eps(eps)] if several_eps else [])]
        labels.append(" ".join(parts))
    return labels


def build_table(dataset: str, records: list[dict[str, Any]]) -> DatasetTable:
    """One dataset's table from its records."""
    detectors = sorted({r["detector"] for r in records})
    attacks = sorted({(r["attack"], r.get("norm") or "", float(r["eps"])) for r in records})
    columns = [Column("Clean"), *(Column(lbl, a) for lbl, a in zip(column_labels(attacks), attacks, strict=True))]
    clean, robust = aggregate_clean(records), aggregate_robust(records)
    cells: dict[tuple[str, int], Summary] = {}
    for detector in detectors:
        if (dataset, detector) in clean:
            cells[detector, 0] = clean[dataset, detector]
        for i, column in enumerate(columns[1:], start=1):
            if (dataset, detector, column.attack) in robust:
                cells[detector, i] = robust[dataset, detector, column.attack]
    passes = {det: value for (_, det), value in passes_per_image(records).items()}
    return DatasetTable(dataset, detectors, columns, cells, passes)


def build_leaderboard(records: list[dict[str, Any]], manifest: dict[str, Any] | None = None) -> Leaderboard:
    """The leaderboard of a run's records (datasets in first-seen order, detectors sorted)."""
    manifest = manifest or {}
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    tables = [build_table(ds, [r for r in records if r["dataset"] == ds]) for ds in datasets]
    n_seeds = len({r["seed"] for r in records})
    preset = manifest.get("preset") or next((r.get("preset") for r in records if r.get("preset")), "")
    return Leaderboard(
        tables=tables,
        detectors=sorted({r["detector"] for r in records}),
        n_seeds=n_seeds,
        run_key=str(manifest.get("run_key") or ""),
        preset=str(preset or ""),
        manifest=manifest,
    )


def format_cell(summary: Summary | None, *, with_std: bool = True) -> str:
    """``81.2`` or ``81.2 ± 0.4`` (several seeds); an em dash when there is no result."""
    if summary is None:
        return "—"
    if with_std and summary.std is not None:
        return f"{pct(summary.mean)} ± {pct(summary.std)}"
    return pct(summary.mean)
