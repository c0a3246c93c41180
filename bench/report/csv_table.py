"""leaderboard.csv: a row per detector, per dataset Clean, worst-case and one robust column per attack budget;
leaderboard_members.csv: the members of ensemble and worst-case cells, long format; leaderboard_flags.csv: the
flags' legend. Numbers stay plain (no marks) so every column parses as a number."""

from __future__ import annotations

import csv
import io

from bench.report.model import FLAG_DESCRIPTIONS, FLAG_MARK, Leaderboard, pct


def _csv(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def render_csv(board: Leaderboard) -> str:
    """The CSV text: AUROC in percent (one decimal), ``_std`` columns with several seeds, a ``flags`` column naming
    each flagged cell (``digits pgd 4/255†: flag,...``)."""
    with_std = board.n_seeds > 1
    header = ["detector"]
    for table in board.tables:
        for column in table.columns:
            header.append(f"{table.dataset} {column.label}")
            if with_std:
                header.append(f"{table.dataset} {column.label} std")
        header.append(f"{table.dataset} passes/image")
    header.append("flags")
    rows = [header]
    for detector in board.detectors:
        row = [detector]
        notes = []
        for table in board.tables:
            for i, column in enumerate(table.columns):
                cell = table.cell(detector, i)
                row.append(pct(cell.mean) if cell else "")
                if with_std:
                    row.append(pct(cell.std) if cell and cell.std is not None else "")
                if cell and cell.flags:
                    notes.append(f"{table.dataset} {column.label}{FLAG_MARK}: {','.join(cell.flags)}")
            passes = table.passes.get(detector)
            row.append(f"{passes:.1f}" if passes is not None else "")
        row.append("; ".join(notes))
        rows.append(row)
    return _csv(rows)


def render_members_csv(board: Leaderboard) -> str:
    """leaderboard_members.csv: a row per (dataset, detector, column, member), robust AUROC and share in percent
    (means over classes and seeds), and why a member was skipped."""
    rows = [["dataset", "detector", "column", "member", "robust_auroc", "share", "skipped"]]
    for table in board.tables:
        for detector, column, members in table.member_rows():
            for member in members:
                robust = pct(member.robust.mean) if member.robust else ""
                share = pct(member.share.mean) if member.share else ""
                rows.append([table.dataset, detector, column.label, member.attack, robust, share, member.skipped])
    return _csv(rows)


def render_flags_csv(board: Leaderboard) -> str:
    """leaderboard_flags.csv: the legend, one row per kind of flag in the leaderboard and what it means."""
    return _csv([["flag", "description"], *([flag, FLAG_DESCRIPTIONS.get(flag, "")] for flag in board.flags)])
