"""leaderboard.md: one Markdown table per dataset, best per column in bold, flagged cells marked with a dagger."""

from __future__ import annotations

from collections.abc import Iterable

from bench.report.model import (
    COLUMNS_NOTE,
    FLAG_MARK,
    MEMBERS_NOTE,
    DatasetTable,
    Leaderboard,
    describe_flag,
    format_cell,
    member_texts,
)


def _md_cell(table: DatasetTable, detector: str, column: int) -> str:
    cell = table.cell(detector, column)
    text = format_cell(cell)
    if cell is not None and table.rank(detector, column) == 1:
        text = f"**{text}**"
    if cell is not None and cell.flags:
        text += FLAG_MARK
    return text


_MD_SPECIALS = {ch: "\\" + ch for ch in "|*_`<"}


def _md_escape(text: str) -> str:
    """Plain text in a Markdown table: no emphasis, code spans or HTML tags (``apgd-<component>``)."""
    return "".join(_MD_SPECIALS.get(ch, ch) for ch in text)


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def render_table(table: DatasetTable) -> list[str]:
    """Lines of one dataset's table and its flag notes."""
    show_passes = bool(table.passes)
    header = ["Detector", *(_md_escape(c.label) for c in table.columns), *(["Passes/image"] if show_passes else [])]
    lines = [f"## {_md_escape(table.dataset)}", "", _md_row(header)]
    lines.append("|" + "|".join([":---", *["---:"] * (len(header) - 1)]) + "|")
    for detector in table.detectors:
        cells = [_md_cell(table, detector, i) for i in range(len(table.columns))]
        if show_passes:
            passes = table.passes.get(detector)
            cells.append(f"{passes:.1f}" if passes is not None else "—")
        lines.append(_md_row([_md_escape(detector), *cells]))
    notes = [f"- {FLAG_MARK} {_md_escape(d)}, {_md_escape(c.label)}: {', '.join(f)}" for d, c, f in table.flagged()]
    return [*lines, *(["", *notes] if notes else []), "", *render_members(table)]


def render_members(table: DatasetTable) -> list[str]:
    """Lines of one dataset's members table (ensemble and worst-case cells); none when there is no such cell."""
    rows = [
        _md_row(map(_md_escape, [d, c.label, m.attack, *member_texts(m)]))
        for d, c, members in table.member_rows()
        for m in members
    ]
    if not rows:
        return []
    return [
        f"### {_md_escape(table.dataset)}: members",
        "",
        f"Per ensemble or worst-case cell, {MEMBERS_NOTE}.",
        "",
        "| Detector | Column | Member | Robust | Share | Note |",
        "|:---|:---|:---|---:|---:|:---|",
        *rows,
        "",
    ]


def render_markdown(board: Leaderboard) -> str:
    """The whole Markdown leaderboard with a header naming the run and a legend of the flags."""
    seeds = f"mean ± std over {board.n_seeds} seeds" if board.n_seeds > 1 else "one seed"
    run = f" (run `{board.run_key}`, preset `{board.preset}`)" if board.run_key else ""
    lines = [
        f"# Leaderboard{run}",
        "",
        f"AUROC (%) averaged over normal classes, {seeds}. {COLUMNS_NOTE}. Best per column in **bold**. "
        "Passes/image = backbone passes per attacked image.",
        "",
    ]
    for table in board.tables:
        lines.extend(render_table(table))
    if board.flags:
        lines.extend([f"{FLAG_MARK} flagged by the sanity ladder (the robust number may be unreliable):", ""])
        lines.extend(f"- {describe_flag(flag)}" for flag in board.flags)
        lines.append("")
    return "\n".join(lines)
