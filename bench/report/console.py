"""The leaderboards as rich Tables for the terminal."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from bench.report.model import FLAG_MARK, Report, cell_text, describe_flag, flagged, header, marks
from bench.results import PAPER_NUMBERS, auroc_columns

RANK_STYLES = {1: "bold", 2: "underline"}


def console_table(report: Report, title: str = "AUROC (%)") -> RenderableType:
    """Per dataset a rich Table, ranked: Rank, Detector, Clean, worst-case and one column per attack budget, the
    paper's numbers where known; best bold, second underlined, flagged cells marked; under them, each flag explained
    on one line."""
    tables: list[RenderableType] = []
    for dataset, board in report.boards.items():
        n_seeds = report.n_seeds(dataset)
        table = Table(title=f"{dataset}: {title}" + (f", mean ± std over {n_seeds} seeds" if n_seeds > 1 else ""))
        table.add_column("Rank", justify="right")
        table.add_column("Detector", style="cyan", no_wrap=True)
        columns = auroc_columns(board)
        papers = [c for c in PAPER_NUMBERS if board[c].notna().any()]
        for column in [*columns, *papers]:
            table.add_column(header(column), justify="right")
        styles = {c: [RANK_STYLES.get(m, "") for m in marks(board[c])] for c in columns}
        for i, (_, row) in enumerate(board.iterrows()):
            cells = [
                Text(cell_text(row, c) + (FLAG_MARK if flagged(row, c) else ""), style=styles[c][i]) for c in columns
            ]
            cells += [Text(cell_text(row, c)) for c in papers]
            table.add_row(str(row["rank"]), Text(str(row["detector"])), *cells)
        tables.append(table)
    if report.flags:
        legend = [f"{FLAG_MARK} flagged by the sanity ladder (the robust number may be unreliable):"]
        tables.append(Text("\n".join([*legend, *(f"- {describe_flag(flag)}" for flag in report.flags)])))
    return Group(*tables)
