"""leaderboard.csv: a row per detector, per dataset a Clean column and one robust column per attack budget."""

from __future__ import annotations

import csv
import io

from bench.report.model import Leaderboard, pct


def render_csv(board: Leaderboard) -> str:
    """The CSV text: AUROC in percent (one decimal), ``_std`` columns with several seeds, a ``flags`` column."""
    with_std = board.n_seeds > 1
    header = ["detector"]
    for table in board.tables:
        for column in table.columns:
            header.append(f"{table.dataset} {column.label}")
            if with_std:
                header.append(f"{table.dataset} {column.label} std")
        header.append(f"{table.dataset} passes/image")
    header.append("flags")
    rows = []
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
                    notes.append(f"{table.dataset} {column.label}: {','.join(cell.flags)}")
            passes = table.passes.get(detector)
            row.append(f"{passes:.1f}" if passes is not None else "")
        row.append("; ".join(notes))
        rows.append(row)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()
