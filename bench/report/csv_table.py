"""leaderboard.csv: the ranked leaderboards of every dataset, a row per (dataset, detector), columns as
``bench.results.leaderboard`` (intervals as ``ci low`` / ``ci high``, flags as one text column);
leaderboard_members.csv: the members of ensemble and worst-case cells; leaderboard_flags.csv: the flags' legend;
leaderboard_runs.csv: the runs reported. Numbers stay plain (no marks) so every column parses as a number."""

from __future__ import annotations

import pandas as pd

from bench.report.model import FLAG_DESCRIPTIONS, FLAG_MARK, Report, header
from bench.results import PAPER_COLUMNS, PAPER_NUMBERS, PASSES, auroc_columns


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, float_format="%.1f", lineterminator="\n")


def _flags_text(dataset: str, row: pd.Series, columns: list[str]) -> str:
    """``digits pgd 4/255†: flag,...; ...`` for each flagged cell of a row."""
    flagged = [(c, row[f"{c} flags"]) for c in columns if row[f"{c} flags"]]
    return "; ".join(f"{dataset} {header(c)}{FLAG_MARK}: {','.join(flags)}" for c, flags in flagged)


def _board_rows(dataset: str, board: pd.DataFrame) -> pd.DataFrame:
    """One dataset's leaderboard as CSV columns."""
    out = board[["rank", "detector", *PAPER_COLUMNS]].copy()
    out.insert(0, "dataset", dataset)
    columns = auroc_columns(board)
    for column in columns:
        out[column] = board[column]
        if f"{column} std" in board:
            out[f"{column} std"] = board[f"{column} std"]
        if f"{column} ci" in board:
            bounds = [ci if isinstance(ci, tuple) else (float("nan"),) * 2 for ci in board[f"{column} ci"]]
            out[f"{column} ci low"], out[f"{column} ci high"] = [b[0] for b in bounds], [b[1] for b in bounds]
    for column in (PASSES, *PAPER_NUMBERS):
        out[column] = board[column]
    out["flags"] = [_flags_text(dataset, row, columns) for _, row in board.iterrows()]
    return out


def render_csv(report: Report) -> str:
    """The CSV text: AUROC in percent (one decimal), ``std`` columns with several seeds, ``ci low`` / ``ci high``
    with one, a ``flags`` column naming each flagged cell (``digits pgd 4/255†: flag,...``)."""
    return _csv(pd.concat([_board_rows(d, b) for d, b in report.boards.items()], ignore_index=True))


def render_members_csv(report: Report) -> str:
    """leaderboard_members.csv: a row per (dataset, detector, column, member), robust AUROC and share in percent
    (means over classes and seeds), and why a member was skipped."""
    columns = ["dataset", "detector", "column", "member", "robust_auroc", "share", "skipped"]
    frames = [m.rename(columns={"robust": "robust_auroc"}).assign(dataset=d) for d, m in report.members.items()]
    return _csv(pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns))


def render_flags_csv(report: Report) -> str:
    """leaderboard_flags.csv: the legend, one row per kind of flag in the leaderboard and what it means."""
    flags = report.flags
    return _csv(pd.DataFrame({"flag": flags, "description": [FLAG_DESCRIPTIONS.get(f, "") for f in flags]}))


RUN_FIELDS = ("run", "run_key", "preset", "command", "git_sha", "git_dirty", "devices", "started", "finished")


def render_runs_csv(report: Report) -> str:
    """leaderboard_runs.csv: each reported run folder and its manifest's command, git commit, devices and times."""
    rows = [{name: manifest.get(name) for name in RUN_FIELDS} for manifest in report.manifests]
    for row in rows:
        row["devices"] = ", ".join(map(str, row["devices"] or []))
    return _csv(pd.DataFrame(rows, columns=list(RUN_FIELDS)))
