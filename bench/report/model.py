"""What every report format shares: the ``Report`` (a results frame's ranked leaderboards, per-class and members
tables, the runs' manifests), flag legends, caption notes, cell texts and the best / second marks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench import results

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
MISSING = "—"
#: What the columns are, for every format's caption.
COLUMNS_NOTE = (
    "Clean = no attack; worst-case = per sample, the worst score over every attack run on the cell (the headline "
    "number); other columns = robust AUROC under each attack at its eps"
)
#: How rows are ordered, for captions.
RANKING_NOTE = "Rows ranked by worst-case robust AUROC, ties by clean"
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


def header(column: str) -> str:
    """A leaderboard column's heading: ``Clean``, ``Passes/image``, ``Paper clean``; robust columns as they are."""
    return column[0].upper() + column[1:] if column in ("clean", results.PASSES, *results.PAPER_NUMBERS) else column


def yes(value: Any) -> str:
    """``yes`` for a true flag such as ``adv_trained``; empty for false or unknown."""
    return "yes" if value is not None and not pd.isna(value) and bool(value) else ""


def number(value: Any) -> str:
    """A percentage with one decimal; an em dash when missing."""
    return MISSING if value is None or pd.isna(value) else f"{value:.1f}"


def half_width(row: pd.Series, column: str) -> float | None:
    """The ± of a cell: its std over seeds, else the larger side of its 95% bootstrap interval (conservative where
    the interval is not symmetric), else None."""
    std = row.get(f"{column} std")
    if std is not None and pd.notna(std):
        return float(std)
    ci = row.get(f"{column} ci")
    return max(row[column] - ci[0], ci[1] - row[column]) if isinstance(ci, tuple) else None


def spread_text(row: pd.Series, column: str, *, intervals: bool = True) -> str:
    """What follows a cell's number: `` ± 0.7`` (std over seeds, or with ``intervals`` the bootstrap half-width),
    or nothing."""
    has_std = pd.notna(row.get(f"{column} std", None))
    spread = half_width(row, column) if intervals or has_std else None
    return f" ± {spread:.1f}" if spread is not None else ""


def cell_text(row: pd.Series, column: str, *, intervals: bool = True) -> str:
    """``81.2`` or ``81.2 ± 0.7`` (std over seeds, or the bootstrap half-width); an em dash when there is no result."""
    value = row[column]
    return MISSING if pd.isna(value) else number(value) + spread_text(row, column, intervals=intervals)


def flagged(row: pd.Series, column: str) -> list[str]:
    """The flags of one cell (none for a column without flags)."""
    return list(row.get(f"{column} flags") or [])


def marks(values: pd.Series) -> pd.Series:
    """1 for the best of a column, 2 for the second, else 0, decided on unrounded values.

    Ties share a mark; a column where every value ties marks nothing. Best is marked when at least two rows have a
    value, second when at least three.
    """
    distinct = sorted(set(values.dropna()), reverse=True)
    out = pd.Series(0, index=values.index)
    if len(distinct) < 2:
        return out
    out[values == distinct[0]] = 1
    if values.notna().sum() >= 3:
        out[values == distinct[1]] = 2
    return out


#: What ± means with one seed.
INTERVAL_NOTE = (
    f"± = half-width of the {results.LEVEL:.0%} bootstrap interval over the test set "
    f"({results.N_RESAMPLES} resamples; its larger side)"
)


def seeds_note(n_seeds: int) -> str:
    """What follows a number, for captions."""
    if n_seeds > 1:
        return f"mean ± std over {n_seeds} seeds"
    return f"one seed; {INTERVAL_NOTE}"


def flags_of(tables: list[pd.DataFrame]) -> list[str]:
    """Every kind of flag (details such as a share dropped) in any ``<col> flags`` cell of the tables, sorted."""
    return sorted(
        {flag_base(f) for t in tables for c in t.columns if c.endswith(" flags") for fs in t[c] for f in fs or ()}
    )


@dataclass
class Report:
    """A results frame's tables per dataset (first-seen order) and the manifests of the runs it comes from."""

    frame: pd.DataFrame
    boards: dict[str, pd.DataFrame]
    per_class: dict[str, pd.DataFrame]
    members: dict[str, pd.DataFrame]
    manifests: list[dict[str, Any]]

    @property
    def run_dirs(self) -> list[str]:
        return [str(m["run"]) for m in self.manifests if m.get("run")]

    @property
    def run_keys(self) -> list[str]:
        """Each run's key (or folder, where the manifest has none)."""
        return [str(m.get("run_key") or m.get("run") or "") for m in self.manifests]

    @property
    def presets(self) -> list[str]:
        values = [m.get("preset") for m in self.manifests] or list(self.frame["preset"].dropna())
        return list(dict.fromkeys(str(v) for v in values if v))

    @property
    def flags(self) -> list[str]:
        return flags_of(list(self.boards.values()))

    def n_seeds(self, dataset: str | None = None) -> int:
        rows = self.frame if dataset is None else self.frame[self.frame["dataset"] == dataset]
        return int(rows["seed"].nunique())


def build_report(frame: pd.DataFrame, manifests: list[dict[str, Any]] | None = None) -> Report:
    """The ``Report`` of a results frame (``bench.results.load``) and its runs' manifests."""
    datasets = list(dict.fromkeys(frame["dataset"]))
    return Report(
        frame=frame,
        boards={d: results.leaderboard(frame, d) for d in datasets},
        per_class={d: results.per_class(frame, d) for d in datasets},
        members={d: results.members(frame, d) for d in datasets},
        manifests=list(manifests or []),
    )
