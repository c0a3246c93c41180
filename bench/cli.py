"""``run_bench.py``: one command line with subcommands, one error path (one line on stderr, exit code 2).

``run`` (the default: ``run_bench.py --detectors all`` is ``run_bench.py run --detectors all``) builds the grid from
a preset plus flags, runs it and writes the leaderboards; ``plan`` prints the job matrix and runs nothing; ``list``
shows the registries; ``report`` regenerates a run's outputs from its records; ``check`` is the regression gate.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import NoReturn

from bench.config import RunConfig, config_from_preset, list_presets, parse_eps, parse_ints, run_key
from bench.errors import UsageError
from bench.plugins import load_plugins
from bench.threat import parse_norm

COMMANDS = ("run", "plan", "list", "report", "check")


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad arguments as a UsageError (one line, exit code 2) instead of usage text."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def add_grid_arguments(p: argparse.ArgumentParser) -> None:
    """The flags that describe a grid and how to run it (``run`` and ``plan``)."""
    p.add_argument("--detectors", help='detector names, comma list, globs or "all" (default: the preset\'s)')
    p.add_argument("--attacks", help='attack names, comma list, globs or "all"')
    p.add_argument("--datasets", help="dataset names or comma list (default: the preset's)")
    p.add_argument("--classes", help="normal classes (indices or names, comma list; default: the preset's)")
    p.add_argument("--eps", help="budgets, e.g. 8/255 or 0.03 or 2/255,4/255; auto: 4/255 low-res, 2/255 industrial")
    p.add_argument("--norm", help="threat model: linf or l2")
    p.add_argument("--seeds", help="seeds, comma list (default 0)")
    p.add_argument(
        "--preset", default="quick", help=f"preset: {', '.join(list_presets())} or a .toml file (default quick)"
    )
    p.add_argument("--data-root", help="folder holding on-disk datasets (mvtec, visa, cifar10, ...)")
    p.add_argument("--out", help="results folder (default results/runs/<preset>-<run key>)")
    p.add_argument("--executor", help="serial | local | slurm (default local: a worker per GPU, else per CPU share)")
    p.add_argument("--devices", help="devices for the executor, e.g. cuda:0,cuda:1 or cpu,cpu")
    p.add_argument("--threads", type=int, help="CPU threads per cell, fixed for reproducible numbers (default 1)")
    p.add_argument("--slurm-partition", help="Slurm partition (--executor slurm)")
    p.add_argument("--slurm-time", help="Slurm time limit per job, e.g. 60 or 02:00:00 (default 60 minutes)")
    p.add_argument("--slurm-gpus-per-job", type=int, help="GPUs per Slurm job (default 0: CPU jobs)")
    p.add_argument("--array-parallelism", type=int, help="Slurm array jobs running at once (default 64)")
    p.add_argument("--force", action="store_true", help="recompute cells and refit detectors already done")
    p.add_argument("--quiet", action="store_true", help="no progress bars or tables")


def tolerance(text: str) -> float:
    """A regression-gate tolerance: a number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid tolerance {text!r}: use a number such as 0.01") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"invalid tolerance {text!r}: it must be >= 0")
    return value


def build_parser() -> OneLineParser:
    """The command line: a parser per subcommand, each with its own ``--help``."""
    p = OneLineParser(
        prog="run_bench.py", description=__doc__.splitlines()[0].strip("`"),
        epilog="run is the default subcommand; run_bench.py run --help lists its flags",
    )  # fmt: skip
    sub = p.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}", parser_class=OneLineParser)
    run = sub.add_parser("run", help="run the grid and write the leaderboards (the default)")
    add_grid_arguments(run)
    run.add_argument("--plan", action="store_true", help="same as the plan subcommand")
    run.add_argument("--list", action="store_true", help="same as the list subcommand")
    add_grid_arguments(sub.add_parser("plan", help="print the job matrix with estimated time and run nothing"))
    sub.add_parser("list", help="list detectors, attacks, datasets, executors and presets")
    report = sub.add_parser("report", help="regenerate every report of a run (or of several merged) from its records")
    report.add_argument(
        "--results", required=True, nargs="+", metavar="DIR",
        help="results folders; several make one leaderboard, the latest record per key winning (a later folder wins)",
    )  # fmt: skip
    report.add_argument("--out", metavar="DIR", help="where to write (default: the one --results folder)")
    report.add_argument(
        "--reproduction", action="store_true", help="also write reproduction.md: ours vs the papers' numbers"
    )
    report.add_argument("--quiet", action="store_true", help="do not print the leaderboard")
    check = sub.add_parser("check", help="regression gate: compare a run's AUROC numbers with a baseline")
    check.add_argument(
        "--baseline", required=True, metavar="JSON", help="baseline file, e.g. results/baselines/smoke.json"
    )
    check.add_argument("--results", required=True, metavar="DIR", help="the run's results folder")
    check.add_argument("--update", action="store_true", help="rewrite the baseline from this run instead of checking")
    check.add_argument("--abs-tol", type=tolerance, default=None, help="absolute tolerance (AUROC fraction)")
    check.add_argument("--rel-tol", type=tolerance, default=None, help="relative tolerance (fraction of baseline)")
    for subparser in sub.choices.values():
        subparser.add_argument(
            "--plugins", action="append", default=[], metavar="MODULE|FILE.py",
            help="import detectors/attacks from a module or .py file first (comma list or repeated)",
        )  # fmt: skip
    return p


def split_names(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def run_config_from_args(args: argparse.Namespace) -> RunConfig:
    """Preset defaults overridden by the flags, with every name validated against its registry."""
    from attacks import ATTACKS
    from bench.data import DATASETS

    preset = str(Path(args.preset).resolve()) if args.preset.endswith(".toml") else args.preset
    cfg = config_from_preset(preset)
    if args.detectors:
        cfg.detectors = args.detectors
    if args.attacks:
        cfg.attacks = args.attacks
    cfg.detectors = select_detectors(cfg.detectors, cfg.detector_options, cfg.preset)
    cfg.attacks = ATTACKS.expand(cfg.attacks)
    cfg.datasets = DATASETS.expand(args.datasets or cfg.datasets)
    if args.classes is not None:
        classes = split_names(args.classes)
        cfg.classes = {dataset: classes for dataset in cfg.datasets}
    if args.eps is not None:
        cfg.eps = parse_eps(args.eps)
    cfg.norm = parse_norm(args.norm or cfg.norm)
    cfg.seeds = parse_ints(args.seeds, "seeds") if args.seeds is not None else cfg.seeds
    if not cfg.seeds or (args.classes is not None and not split_names(args.classes)):
        raise UsageError("no seeds or classes given; use comma-separated values such as 0,1,2")
    cfg.data_root = args.data_root
    cfg.executor = args.executor or cfg.executor
    cfg.devices = split_names(args.devices)
    cfg.force, cfg.quiet = args.force, args.quiet
    cfg.executor_options.update(executor_options_from_args(args, cfg.executor))
    cfg.out = checked_out(args.out or f"results/runs/{Path(cfg.preset).stem}-{run_key(cfg)}")
    return cfg


def checked_out(out: str) -> str:
    """The results folder, which must be a folder (or not exist yet)."""
    if Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"--out {out} is a file; give a results folder (it is created if missing)")
    return out


def executor_options_from_args(args: argparse.Namespace, executor: str) -> dict:
    """The executor flags that were given (the --slurm-* ones only with --executor slurm)."""
    slurm = {"partition": args.slurm_partition, "time": args.slurm_time, "gpus_per_job": args.slurm_gpus_per_job,
             "array_parallelism": args.array_parallelism}  # fmt: skip
    given = {k: v for k, v in slurm.items() if v is not None}
    if given and executor != "slurm":
        raise UsageError("--slurm-* and --array-parallelism flags need --executor slurm")
    return {**given, **({"threads": args.threads} if args.threads is not None else {})}


def select_detectors(spec: str | list[str], options: dict[str, dict], preset: str = "") -> list[str]:
    """Expand ``spec``; detectors that cannot run here (missing weights or packages) are left out of ``all`` and
    globs with a note, and are an error when named explicitly. ``options``: the preset's detector tables (a bad
    option names ``preset``)."""
    from detectors import DETECTORS, create_detector

    explicit = set(spec if isinstance(spec, list) else split_names(spec) or [])
    selected = []
    for name in DETECTORS.expand(spec):
        try:
            detector = create_detector(name, **options.get(name, {}))
        except UsageError as error:
            raise UsageError(f"preset {preset}: [detectors.{name}]: {error}") from None
        try:
            detector.check_requirements()
        except UsageError as error:
            if name in explicit:
                raise
            print(f"note: leaving out {name}: {error}", file=sys.stderr)
            continue
        selected.append(name)
    if not selected:
        raise UsageError(f"no detector in {spec!r} can run here")
    return selected


def print_listing() -> None:
    """Registries: each entry with where it comes from (its file, ``plugin ...``, a distribution) and its
    one-line description."""
    from attacks import ATTACKS
    from bench.data import DATASETS
    from bench.executors import EXECUTORS
    from detectors import DETECTORS

    registries = {"detectors": DETECTORS, "attacks": ATTACKS, "datasets": DATASETS, "executors": EXECUTORS}
    sections = {title: [(name, registry.origin(name), text) for name, text in registry.describe().items()]
                for title, registry in registries.items()}  # fmt: skip
    sections["presets"] = [(preset, "", "") for preset in list_presets()]
    for title, rows in sections.items():
        print(f"{title}:")
        width, origin_width = (max((len(row[i]) for row in rows), default=0) for i in (0, 1))
        for name, origin, description in rows:
            print(f"  {name:<{width}}  {origin:<{origin_width}}  {description}".rstrip())


def results_folder(path: str) -> Path:
    """A finished run's folder: it must exist and hold records."""
    from bench.store import RunStore

    run_dir = Path(path)
    if not run_dir.is_dir():
        raise UsageError(f"results folder {run_dir} does not exist")
    if not RunStore(run_dir).records():
        raise UsageError(f"results folder {run_dir} has no records (records.jsonl is missing or empty)")
    return run_dir


def run_command(args: argparse.Namespace, argv: list[str]) -> int:
    """Run the grid; a given ``--out`` is locked before the heavy imports, so a second run into it exits at once."""
    if args.list:
        return list_command(args, argv)
    if args.plan:
        return plan_command(args, argv)
    from bench.lock import RunLock

    with RunLock(checked_out(args.out)) if args.out else contextlib.nullcontext():
        from bench.session import run_benchmark

        return run_benchmark(run_config_from_args(args), argv)


def plan_command(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.session import print_plan

    return print_plan(run_config_from_args(args), argv)


def list_command(args: argparse.Namespace, argv: list[str]) -> int:
    print_listing()
    return 0


def report_command(args: argparse.Namespace, argv: list[str]) -> int:
    """Write leaderboard.{csv,md,tex,html}, macros, per-class table and plots from the records of one run folder, or
    of several merged into ``--out`` (each run's manifest cited); ``--reproduction`` adds reproduction.md."""
    from bench import results
    from bench.report import build_report, console_table, write_report
    from bench.store import atomic_write_text

    run_dirs: list[str] = args.results
    for path in run_dirs:
        results_folder(path)
    if args.out is None and len(run_dirs) > 1:
        raise UsageError("several --results folders need --out DIR: where to write the merged report")
    out = Path(checked_out(args.out) if args.out else run_dirs[0])
    report = build_report(results.load(*run_dirs), results.manifests(*run_dirs))
    written = write_report(out, report)
    if args.reproduction:
        from bench.report.reproduction import render_reproduction

        atomic_write_text(out / "reproduction.md", render_reproduction(report.frame, report.manifests))
        written.append(out / "reproduction.md")
    if not args.quiet:
        from rich.console import Console

        Console().print(console_table(report))
        Console().print(f"wrote {len(written)} files to {out}")
    return 0


def check_command(args: argparse.Namespace, argv: list[str]) -> int:
    """The regression gate: exit code 1 when a cell moved beyond tolerance (or, with --update, a cell failed)."""
    from bench import regress
    from bench.store import load_records

    run_dir = results_folder(args.results)
    records = load_records(run_dir)
    if args.update:
        return regress.update_baseline(Path(args.baseline), run_dir, records, args.abs_tol, args.rel_tol)
    report = regress.compare(regress.load_baseline(args.baseline), records, args.abs_tol, args.rel_tol)
    print("\n".join(report.lines()))
    return 0 if report.passed else 1


HANDLERS = {
    "run": run_command,
    "plan": plan_command,
    "list": list_command,
    "report": report_command,
    "check": check_command,
}


def with_command(argv: list[str]) -> list[str]:
    """``argv`` with ``run`` in front unless it names a subcommand or asks for the top-level help."""
    return argv if argv[:1] and argv[0] in (*COMMANDS, "-h", "--help") else ["run", *argv]


def parse(argv: list[str]) -> argparse.Namespace:
    """The parsed command line (``run`` when no subcommand is named)."""
    return build_parser().parse_args(with_command(argv))


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 with a one-line message for any bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse(argv)
        load_plugins(split_names(",".join(args.plugins)) or [])
        return HANDLERS[args.command](args, argv)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished cells are saved; rerun the same command to resume", file=sys.stderr)
        return 130
