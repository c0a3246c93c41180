"""Reports of one run or of several merged: leaderboard.{csv,md,tex,html}, leaderboard_members.csv,
leaderboard_flags.csv, leaderboard_runs.csv, leaderboard_macros.tex, leaderboard_perclass.tex, plots/*.png.

Everything is regenerated from the records (``bench.results``) and, for intervals and score plots, the runs'
per-sample score files.
"""

from __future__ import annotations

from pathlib import Path

from bench import results
from bench.errors import UsageError
from bench.report.console import console_table
from bench.report.csv_table import render_csv, render_flags_csv, render_members_csv, render_runs_csv
from bench.report.html_page import render_html
from bench.report.latex import render_leaderboard_tex, render_macros, render_perclass_tex
from bench.report.markdown import render_markdown
from bench.report.model import Report, build_report
from bench.report.plots import figures, save_figures
from bench.store import Record, atomic_write_text

__all__ = ["Report", "build_report", "console_table", "write_report", "write_reports"]


def write_report(out_dir: str | Path, report: Report) -> list[Path]:
    """Write every report file of ``report`` into ``out_dir`` (score plots from its runs' folders); returns the
    paths written."""
    out_dir = Path(out_dir)
    pngs = figures(report.frame, report.run_dirs)
    texts = {
        "leaderboard.csv": render_csv(report),
        "leaderboard_members.csv": render_members_csv(report),
        "leaderboard_flags.csv": render_flags_csv(report),
        "leaderboard_runs.csv": render_runs_csv(report),
        "leaderboard.md": render_markdown(report),
        "leaderboard.tex": render_leaderboard_tex(report),
        "leaderboard_macros.tex": render_macros(report),
        "leaderboard_perclass.tex": render_perclass_tex(report),
        "leaderboard.html": render_html(report.boards, report.per_class, report.manifests, pngs, report.members),
    }
    for name, text in texts.items():
        atomic_write_text(out_dir / name, text)
    return [out_dir / name for name in texts] + save_figures(pngs, out_dir)


def write_reports(run_dir: str | Path, records: list[Record] | None = None) -> list[Path]:
    """Write every report of the run folder ``run_dir``; returns the paths written.

    Args:
        run_dir: the run's results folder (holds manifest.json, records.jsonl, scores/).
        records: the records to report; read from ``run_dir`` when None.

    Raises:
        UsageError: when there is no record to report.
    """
    frame = results.load(run_dir) if records is None else results.frame_of(records, run_dir)
    if frame.empty:
        raise UsageError(f"no records in {run_dir}: nothing to report")
    return write_report(run_dir, build_report(frame, results.manifests(run_dir)))
