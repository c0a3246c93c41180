"""The leaderboard as data: one table per dataset, a row per detector, Clean, then worst-case and one column per
attack at each budget (labels always name the eps: datasets may run at different ones), plus the members of
ensemble and worst-case cells.

Every output format (CSV, Markdown, LaTeX, HTML, console) renders this model, so they agree on numbers, on
which cell is best (bold) or second (underlined), and on which cells carry sanity flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.config import format_eps
from bench.metrics import (
    WORST_CASE,
    MemberSummary,
    Summary,
    aggregate_clean,
    aggregate_members,
    aggregate_robust,
    attack_key,
    passes_per_image,
)
from bench.store import Record

#: What each sanity flag (bench/sanity.py) means, for legends and tooltips; unknown flags are shown by name.
FLAG_DESCRIPTIONS = {
    "possible-gradient-masking": (
        "Square beat every white-box attack, inside AutoAttack or across the cell's attacks, by more than 1 point"
    ),
    "eps0-mismatch": "the attack at eps=0 did not return the clean input and clean scores",
    "not-converged": (
        "the strongest white-box attack rerun with twice the iterations lowered AUROC by more than 1 point"
    ),
    "gradient-mismatch": (
        "autograd's directional derivative disagrees with finite differences: gradients may be shattered or obfuscated"
    ),
    "stochastic-no-eot": "a stochastic detector was attacked with one random draw per step (no EOT)",
    "non-monotone-eps": "robust AUROC rose with a larger eps (the attack may not have converged)",
    "zero-gradients": "many inputs had all-zero or non-finite score gradients (the number is their share)",
    "score-mismatch": "the robust scores the attack tracked differ from a fresh scoring of its adversarial inputs",
    "incomplete": "some cells behind this number failed: a mean over fewer classes or a worst case over fewer attacks",
}
FLAG_MARK = "†"
#: What the columns are, for every format's caption.
COLUMNS_NOTE = (
    "Clean = no attack; worst-case = per sample, the worst score over every attack run on the cell (the headline "
    "number); other columns = robust AUROC under each attack at its eps"
)
#: What the members tables show.
MEMBERS_NOTE = (
    "each member's own robust AUROC (%) and the share (%) of samples whose worst case it supplied, averaged over "
    "classes and seeds"
)


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
    members: dict[tuple[str, int], list[MemberSummary]] = field(default_factory=dict)

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

    def member_rows(self) -> list[tuple[str, Column, list[MemberSummary]]]:
        """(detector, column, members) of every ensemble or worst-case cell, column by column."""
        return [
            (d, col, self.members[d, i])
            for i, col in enumerate(self.columns)
            for d in self.detectors
            if (d, i) in self.members
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


def column_order(attack: tuple[str, str, float]) -> tuple:
    """Leaderboard order of robust columns: worst-case first (the headline number), then attacks by name."""
    name, norm, eps = attack
    return name != WORST_CASE, name, norm, eps


def column_labels(attacks: list[tuple[str, str, float]]) -> list[str]:
    """Attack names with their budget (datasets may run at different eps), and the norm when the run mixes norms."""
    several_norms = len({norm for _, norm, _ in attacks}) > 1
    return [" ".join([name, *([norm] if several_norms else []), format_eps(eps)]) for name, norm, eps in attacks]


def build_table(dataset: str, records: list[Record]) -> DatasetTable:
    """One dataset's table from its records."""
    detectors = sorted({r.detector for r in records})
    attacks = sorted({attack_key(r) for r in records}, key=column_order)
    columns = [Column("Clean"), *(Column(lbl, a) for lbl, a in zip(column_labels(attacks), attacks, strict=True))]
    clean, robust, members = aggregate_clean(records), aggregate_robust(records), aggregate_members(records)
    cells: dict[tuple[str, int], Summary] = {}
    member_cells: dict[tuple[str, int], list[MemberSummary]] = {}
    for detector in detectors:
        if (dataset, detector) in clean:
            cells[detector, 0] = clean[dataset, detector]
        for i, column in enumerate(columns[1:], start=1):
            key = (dataset, detector, column.attack)
            if key in robust:
                cells[detector, i] = robust[key]
            if key in members:
                member_cells[detector, i] = members[key]
    passes = {det: value for (_, det), value in passes_per_image(records).items()}
    return DatasetTable(dataset, detectors, columns, cells, passes, member_cells)


def build_leaderboard(records: list[Record], manifest: dict[str, Any] | None = None) -> Leaderboard:
    """The leaderboard of a run's records (datasets in first-seen order, detectors sorted)."""
    manifest = manifest or {}
    datasets = list(dict.fromkeys(r.dataset for r in records))
    tables = [build_table(ds, [r for r in records if r.dataset == ds]) for ds in datasets]
    n_seeds = len({r.seed for r in records})
    preset = manifest.get("preset") or next((r.preset for r in records if r.preset), "")
    return Leaderboard(
        tables=tables,
        detectors=sorted({r.detector for r in records}),
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


def member_texts(member: MemberSummary) -> tuple[str, str, str]:
    """(robust AUROC, share, note) of one member for a members table (percentages; the note names a skip)."""
    note = f"skipped: {member.skipped}" if member.skipped else ""
    return format_cell(member.robust), format_cell(member.share), note
