"""leaderboard.md: per dataset a ranked table (``DataFrame.to_markdown``), its flagged cells and members; then the
flags' legend and the runs reported."""

from __future__ import annotations

import pandas as pd

from bench.report.model import (
    COLUMNS_NOTE,
    FLAG_MARK,
    MEMBERS_NOTE,
    RANKING_NOTE,
    Report,
    cell_text,
    describe_flag,
    flagged,
    header,
    marks,
    number,
    seeds_note,
    yes,
)
from bench.results import PAPER_NUMBERS, PASSES, auroc_columns

_MD_SPECIALS = {ch: "\\" + ch for ch in "|*_`<[]"}


def md_escape(text: object) -> str:
    """Plain text in a Markdown table: no emphasis, links, code spans or HTML tags (``apgd-<component>``)."""
    return "".join(_MD_SPECIALS.get(ch, ch) for ch in str(text))


def to_markdown(table: pd.DataFrame, right: set[str]) -> list[str]:
    """Lines of a string table as a pipe table: the ``right`` columns right-aligned, the others left."""
    align = ["right" if name in right else "left" for name in table.columns]
    return table.to_markdown(index=False, disable_numparse=True, colalign=align).splitlines()


def _paper(title: object, link: object) -> str:
    if pd.isna(title):
        return ""
    return f"[{md_escape(title)}]({link})" if pd.notna(link) and link else md_escape(title)


def _cells(board: pd.DataFrame, column: str) -> list[str]:
    """A column's texts: best in bold, a dagger on flagged cells."""
    out = []
    for (_, row), mark in zip(board.iterrows(), marks(board[column]), strict=True):
        text = cell_text(row, column)
        text = f"**{text}**" if mark == 1 else text
        out.append(text + (FLAG_MARK if flagged(row, column) else ""))
    return out


def board_table(board: pd.DataFrame) -> pd.DataFrame:
    """A leaderboard frame as Markdown cell texts: Rank, Detector, the paper's columns where any row has them, the
    AUROC columns, Passes/image, the paper's numbers where known."""
    table = pd.DataFrame({"Rank": board["rank"].astype(str), "Detector": board["detector"].map(md_escape)})
    if board["paper"].notna().any():
        table["Paper"] = [_paper(t, link) for t, link in zip(board["paper"], board["link"], strict=True)]
        table["Venue"] = board["venue"].fillna("").map(md_escape)
        table["Adv. trained"] = board["adv_trained"].map(yes)
    for column in auroc_columns(board):
        table[md_escape(header(column))] = _cells(board, column)
    for column in (PASSES, *PAPER_NUMBERS):
        if board[column].notna().any():
            table[header(column)] = board[column].map(number)
    return table


def render_table(dataset: str, board: pd.DataFrame, members: pd.DataFrame) -> list[str]:
    """Lines of one dataset's section: its table, its flagged cells and its members table."""
    table = board_table(board)
    right = {"Rank", *table.columns[table.columns.get_loc("Detector") + 1 :]} - {"Paper", "Venue", "Adv. trained"}
    notes = [
        f"- {FLAG_MARK} {md_escape(row['detector'])}, {md_escape(header(column))}: {', '.join(flagged(row, column))}"
        for _, row in board.iterrows()
        for column in auroc_columns(board)
        if flagged(row, column)
    ]
    return [f"## {md_escape(dataset)}", "", *to_markdown(table, right), *(["", *notes] if notes else []), "",
            *render_members(dataset, members)]  # fmt: skip


def render_members(dataset: str, members: pd.DataFrame) -> list[str]:
    """Lines of one dataset's members table (ensemble and worst-case cells); none when there is no such cell."""
    if members.empty:
        return []
    table = pd.DataFrame({
        "Detector": members["detector"].map(md_escape),
        "Column": members["column"].map(md_escape),
        "Member": members["member"].map(md_escape),
        "Robust": [cell_text(row, "robust") for _, row in members.iterrows()],
        "Share": [cell_text(row, "share") for _, row in members.iterrows()],
        "Note": [f"skipped: {md_escape(reason)}" if reason else "" for reason in members["skipped"]],
    })  # fmt: skip
    return [f"### {md_escape(dataset)}: members", "", f"Per ensemble or worst-case cell, {MEMBERS_NOTE}.", "",
            *to_markdown(table, {"Robust", "Share"}), ""]  # fmt: skip


def render_runs(report: Report) -> list[str]:
    """Lines of the runs section: each reported run folder with its command, git commit and devices."""
    rows = []
    for manifest in report.manifests:
        sha = str(manifest.get("git_sha") or "")[:12] + (" (dirty)" if manifest.get("git_dirty") else "")
        devices = manifest.get("devices") or []
        rows.append({
            "Folder": md_escape(manifest.get("run", "")), "Run key": md_escape(manifest.get("run_key") or ""),
            "Preset": md_escape(manifest.get("preset") or ""), "Command": md_escape(manifest.get("command") or ""),
            "Git": md_escape(sha), "Devices": md_escape(", ".join(map(str, devices))),
        })  # fmt: skip
    if not rows:
        return []
    return ["## Runs", "", *to_markdown(pd.DataFrame(rows), set()), ""]


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


def _title(report: Report) -> str:
    keys, presets = [k for k in report.run_keys if k], report.presets
    if not keys:
        return "# Leaderboard"
    runs = ("run " if len(keys) == 1 else "runs ") + ", ".join(map(_code, keys))
    return f"# Leaderboard ({runs}" + (f", preset {', '.join(map(_code, presets))})" if presets else ")")


def render_markdown(report: Report) -> str:
    """The whole Markdown leaderboard: a header naming the runs, a section per dataset, the flags' legend, the runs."""
    lines = [
        _title(report),
        "",
        f"AUROC (%) averaged over normal classes, {seeds_note(report.n_seeds())}. {RANKING_NOTE}. {COLUMNS_NOTE}. "
        "Best per column in **bold**. Passes/image = backbone passes per attacked image.",
        "",
    ]
    for dataset, board in report.boards.items():
        lines.extend(render_table(dataset, board, report.members[dataset]))
    if report.flags:
        lines.extend([f"{FLAG_MARK} flagged by the sanity ladder (the robust number may be unreliable):", ""])
        lines.extend(f"- {describe_flag(flag)}" for flag in report.flags)
        lines.append("")
    lines.extend(render_runs(report))
    return "\n".join(lines)
