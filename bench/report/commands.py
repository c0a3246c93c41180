"""``run_bench.py report`` and ``run_bench.py check``: argument parsing and exit codes.

Exit codes: 0 success, 1 the regression gate failed, 2 usage errors (bad arguments or paths), each with a
one-line message on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from rich.console import Console

from bench import regress
from bench.errors import UsageError
from bench.store import RunStore, load_records


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _run_dir(path: str) -> Path:
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise UsageError(f"results folder {run_dir} does not exist")
    if not RunStore(run_dir).records():
        raise UsageError(f"results folder {run_dir} has no records (records.jsonl is missing or empty)")
    return run_dir


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid tolerance {text!r}: use a number such as 0.01") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"invalid tolerance {text!r}: it must be >= 0")
    return value


def report_parser() -> OneLineParser:
    parser = OneLineParser(prog="run_bench.py report", description="Regenerate every report of a run from its records.")
    parser.add_argument("--results", required=True, metavar="DIR", help="the run's results folder")
    parser.add_argument("--quiet", action="store_true", help="do not print the leaderboard")
    return parser


def check_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="run_bench.py check", description="Regression gate: compare a run's AUROC numbers with a baseline."
    )
    parser.add_argument(
        "--baseline", required=True, metavar="JSON", help="baseline file, e.g. results/baselines/smoke.json"
    )
    parser.add_argument("--results", required=True, metavar="DIR", help="the run's results folder")
    parser.add_argument("--update", action="store_true", help="rewrite the baseline from this run instead of checking")
    parser.add_argument("--abs-tol", type=_tolerance, default=None, help="absolute tolerance (AUROC fraction)")
    parser.add_argument("--rel-tol", type=_tolerance, default=None, help="relative tolerance (fraction of baseline)")
    return parser


def _usage_error(prog: str, err: UsageError) -> int:
    print(f"{prog}: error: {err}", file=sys.stderr)
    return 2


def report_command(argv: list[str]) -> int:
    """``run_bench.py report --results DIR``: write leaderboard.{csv,md,tex,html}, macros, per-class table, plots."""
    from bench.report import console_table, write_reports

    parser = report_parser()
    args = parser.parse_args(argv)
    try:
        run_dir = _run_dir(args.results)
        records = load_records(run_dir)
        written = write_reports(run_dir, records)
    except UsageError as err:
        return _usage_error(parser.prog, err)
    if not args.quiet:
        console = Console()
        console.print(console_table(records))
        console.print(f"wrote {len(written)} files to {run_dir}")
    return 0


def check_command(argv: list[str]) -> int:
    """``run_bench.py check --baseline JSON --results DIR [--update] [--abs-tol A --rel-tol R]``."""
    parser = check_parser()
    args = parser.parse_args(argv)
    try:
        run_dir = _run_dir(args.results)
        records = load_records(run_dir)
        if args.update:
            return _update(Path(args.baseline), run_dir, records, args.abs_tol, args.rel_tol)
        baseline = regress.load_baseline(args.baseline)
    except UsageError as err:
        return _usage_error(parser.prog, err)
    report = regress.compare(baseline, records, args.abs_tol, args.rel_tol)
    print("\n".join(report.lines()))
    return 0 if report.passed else 1


def _update(path: Path, run_dir: Path, records: list[dict], abs_tol: float | None, rel_tol: float | None) -> int:
    """Rewrite the baseline from the run, keeping the old tolerances unless new ones are given (never from a run
    with failed cells: those are listed and the exit code is 1)."""
    failed = regress.failed_cells(records)
    if failed:
        print("\n".join([*(f"FAIL {line}" for line in failed), f"baseline {path} not rewritten"]))
        return 1
    old = regress.load_baseline(path).get("tolerances", {}) if path.is_file() else {}
    baseline = regress.build_baseline(
        records,
        abs_tol=old.get("abs", regress.DEFAULT_ABS_TOL) if abs_tol is None else abs_tol,
        rel_tol=old.get("rel", regress.DEFAULT_REL_TOL) if rel_tol is None else rel_tol,
        manifest=RunStore(run_dir).read_manifest(),
    )
    regress.write_baseline(path, baseline)
    print(f"baseline {path} rewritten: {len(baseline['cells'])} cell(s) from {run_dir}")
    return 0
