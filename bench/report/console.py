"""The leaderboard as a rich Table for the terminal."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from bench.report.model import FLAG_MARK, build_leaderboard, describe_flag, format_cell
from bench.store import Record

RANK_STYLES = {1: "bold", 2: "underline"}


def console_table(records: list[Record], title: str = "AUROC (%)") -> RenderableType:
    """A rich Table: a row per detector, per dataset Clean, worst-case and one column per attack budget; best bold,
    second underlined, flagged cells marked; under it, each flag explained on one line."""
    board = build_leaderboard(records)
    table = Table(title=title + (f", mean ± std over {board.n_seeds} seeds" if board.n_seeds > 1 else ""))
    table.add_column("Detector", style="cyan")
    for dataset_table in board.tables:
        for column in dataset_table.columns:
            table.add_column(f"{dataset_table.dataset}\n{column.label}", justify="right")
    for detector in board.detectors:
        cells = []
        for dataset_table in board.tables:
            for i in range(len(dataset_table.columns)):
                cell = dataset_table.cell(detector, i)
                text = format_cell(cell) + (FLAG_MARK if cell is not None and cell.flags else "")
                cells.append(Text(text, style=RANK_STYLES.get(dataset_table.rank(detector, i), "")))
        table.add_row(Text(detector), *cells)
    if not board.flags:
        return table
    legend = [f"{FLAG_MARK} flagged by the sanity ladder (the robust number may be unreliable):"]
    return Group(table, Text("\n".join([*legend, *(f"- {describe_flag(flag)}" for flag in board.flags)])))
