"""Reports of a run: leaderboard.{csv,md,tex,html}, leaderboard_members.csv, leaderboard_flags.csv,
leaderboard_macros.tex, leaderboard_perclass.tex, plots/*.png.

Everything is regenerated from the run's records (and, for score plots, its per-sample score files).
"""

from __future__ import annotations

from pathlib import Path

from bench.errors import UsageError
from bench.report.console import console_table
from bench.report.csv_table import render_csv, render_flags_csv, render_members_csv
from bench.report.html_page import render_html
from bench.report.latex import render_leaderboard_tex, render_macros, render_perclass_tex
from bench.report.markdown import render_markdown
from bench.report.model import Leaderboard, build_leaderboard
from bench.report.plots import write_plots
from bench.store import Record, RunStore, atomic_write_text, load_records

__all__ = ["Leaderboard", "build_leaderboard", "console_table", "write_reports"]


def write_reports(run_dir: str | Path, records: list[Record] | None = None) -> list[Path]:
    """Write every report of the run folder ``run_dir``; returns the paths written.

    Args:
        run_dir: the run's results folder (holds manifest.json, records.jsonl, scores/).
        records: the records to report; read from ``run_dir`` when None.

    Raises:
        UsageError: when there is no record to report.
    """
    run_dir = Path(run_dir)
    records = load_records(run_dir) if records is None else records
    if not records:
        raise UsageError(f"no records in {run_dir}: nothing to report")
    board = build_leaderboard(records, RunStore(run_dir).read_manifest())
    texts = {
        "leaderboard.csv": render_csv(board),
        "leaderboard_members.csv": render_members_csv(board),
        "leaderboard_flags.csv": render_flags_csv(board),
        "leaderboard.md": render_markdown(board),
        "leaderboard.tex": render_leaderboard_tex(board),
        "leaderboard_macros.tex": render_macros(board),
        "leaderboard_perclass.tex": render_perclass_tex(board, records),
        "leaderboard.html": render_html(board),
    }
    written = []
    for name, text in texts.items():
        atomic_write_text(run_dir / name, text)
        written.append(run_dir / name)
    return written + write_plots(records, run_dir)
