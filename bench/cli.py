"""``run_bench.py``: build the grid from a preset plus flags, run it, write the leaderboards.

Subcommands: ``report --results DIR`` (regenerate outputs from records) and ``check --baseline B --results DIR``
(the regression gate). Bad input exits 2 with a one-line message naming the valid choices.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.config import RunConfig, config_from_preset, list_presets, parse_eps, parse_ints, parse_norm
from bench.errors import UsageError
from bench.hashing import stable_hash


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The main command's flags."""
    p = OneLineParser(prog="run_bench.py", description=__doc__.splitlines()[0])
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
    p.add_argument("--out", help="results folder (default results/runs/<preset>-<grid hash>)")
    p.add_argument("--executor", help="serial | local | slurm (default local: a worker per GPU, else per CPU share)")
    p.add_argument("--devices", help="devices for the executor, e.g. cuda:0,cuda:1 or cpu,cpu")
    p.add_argument("--threads", type=int, help="CPU threads per cell, fixed for reproducible numbers (default 1)")
    p.add_argument("--slurm-partition", help="Slurm partition (--executor slurm)")
    p.add_argument("--slurm-time", help="Slurm time limit per job, e.g. 60 or 02:00:00 (default 60 minutes)")
    p.add_argument("--slurm-gpus-per-job", type=int, help="GPUs per Slurm job (default 0: CPU jobs)")
    p.add_argument("--array-parallelism", type=int, help="Slurm array jobs running at once (default 64)")
    p.add_argument("--plan", action="store_true", help="print the job matrix with estimated time and run nothing")
    p.add_argument("--force", action="store_true", help="recompute cells and refit detectors already done")
    p.add_argument("--list", action="store_true", help="list detectors, attacks, datasets, presets and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars or tables")
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
    cfg.detectors = select_detectors(cfg.detectors, cfg.preset)
    cfg.attacks = ATTACKS.expand(cfg.attacks)
    cfg.datasets = DATASETS.expand(args.datasets or cfg.datasets)
    if args.classes is not None:
        classes = split_names(args.classes)
        cfg.classes = {dataset: classes for dataset in cfg.datasets}
    if args.eps is not None:
        cfg.eps = parse_eps(args.eps)
    cfg.norm = parse_norm(args.norm or cfg.norm)
    cfg.seeds = parse_ints(args.seeds, "seeds") or cfg.seeds
    cfg.data_root = args.data_root
    cfg.executor = args.executor or cfg.executor
    cfg.devices = split_names(args.devices)
    cfg.force, cfg.quiet = args.force, args.quiet
    cfg.executor_options.update(executor_options_from_args(args, cfg.executor))
    cfg.out = args.out or f"results/runs/{Path(cfg.preset).stem}-{grid_hash(cfg)}"
    return cfg


def executor_options_from_args(args: argparse.Namespace, executor: str) -> dict:
    """The executor flags that were given (the --slurm-* ones only with --executor slurm)."""
    slurm = {"partition": args.slurm_partition, "time": args.slurm_time, "gpus_per_job": args.slurm_gpus_per_job,
             "array_parallelism": args.array_parallelism}  # fmt: skip
    given = {k: v for k, v in slurm.items() if v is not None}
    if given and executor != "slurm":
        raise UsageError("--slurm-* and --array-parallelism flags need --executor slurm")
    return {**given, **({"threads": args.threads} if args.threads is not None else {})}


def select_detectors(spec: str | list[str], preset: str) -> list[str]:
    """Expand ``spec``; detectors that cannot run here (missing weights or packages) are left out of ``all`` and
    globs with a note, and are an error when named explicitly."""
    from detectors import DETECTORS, create_detector

    explicit = set(spec if isinstance(spec, list) else split_names(spec) or [])
    selected = []
    for name in DETECTORS.expand(spec):
        try:
            create_detector(name, preset=preset).check_requirements()
        except UsageError as error:
            if name in explicit:
                raise
            print(f"note: leaving out {name}: {error}", file=sys.stderr)
            continue
        selected.append(name)
    if not selected:
        raise UsageError(f"no detector in {spec!r} can run here")
    return selected


def grid_hash(cfg: RunConfig) -> str:
    """Short hash of what the grid covers (so the same command resumes into the same folder)."""
    fields = ("preset", "datasets", "classes", "detectors", "attacks", "eps", "norm", "seeds", "data_root")
    return stable_hash({f: getattr(cfg, f) for f in fields}, 8)


def print_listing() -> None:
    """Registries with their one-line descriptions."""
    from attacks import list_attacks
    from bench.data import list_datasets
    from bench.executors import EXECUTORS
    from detectors import list_detectors

    sections = [
        ("detectors", list_detectors()),
        ("attacks", list_attacks()),
        ("datasets", list_datasets()),
        ("executors", EXECUTORS.describe()),
        ("presets", {p: "" for p in list_presets()}),
    ]
    for title, entries in sections:
        print(f"{title}:")
        width = max(map(len, entries), default=0)
        for name, description in entries.items():
            print(f"  {name:<{width}}  {description}".rstrip())


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in ("report", "check"):
            from bench.report.commands import check_command, report_command

            return (report_command if argv[0] == "report" else check_command)(argv[1:])
        args = build_parser().parse_args(argv)
        if args.list:
            print_listing()
            return 0
        from bench.session import print_plan, run_benchmark

        return (print_plan if args.plan else run_benchmark)(run_config_from_args(args), argv)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished cells are saved; rerun the same command to resume", file=sys.stderr)
        return 130
