"""One benchmark run from a RunConfig: lock the run folder, resolve the grid, run it, merge and report.

Records are read once, when the run starts; the executor's results and the cross-cell merges (``bench.merge``) are
applied in memory, and records.jsonl is rewritten (atomically) only when something changed, so a rerun of a
finished grid computes each key once and writes nothing but its manifest.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

from bench.cache import CheckpointCache
from bench.config import RunConfig, format_eps
from bench.data import load_split
from bench.executors import create_executor
from bench.grid import FitGroup, build_grid
from bench.history import TimingHistory
from bench.lock import RunLock
from bench.merge import merge_grid_flags, merge_worst_case
from bench.plan import format_plan, plan_groups
from bench.progress import Progress
from bench.provenance import build_manifest
from bench.runner import GroupResult
from bench.store import Record, RunStore, finished_keys, latest_per_key


def preflight(groups: list[FitGroup]) -> None:
    """Load one split per dataset so missing data fails at once with a clear message (exit 2)."""
    seen = set()
    for group in groups:
        fit = group.fit
        if fit.dataset not in seen:
            seen.add(fit.dataset)
            load_split(fit.dataset, fit.normal_class, fit.data_root, fit.seed, **fit.data_kwargs)


def summarise(results: list[GroupResult], seconds: float) -> str:
    records = [r for result in results for r in result.records]
    failed = sum(r.status == "failed" for r in records)
    skipped = sum(result.skipped for result in results)
    fitted = sum(result.fitted for result in results)
    loaded = sum(bool(result.records) and not result.fitted for result in results)
    line = (
        f"{len(records)} cells computed, {skipped} already finished (skipped); {fitted} detector fits trained, "
        f"{loaded} loaded from the checkpoint cache; {failed} failed; {seconds:.1f}s"
    )
    if not records:
        line = f"nothing to do: all {skipped} cells already finished (use --force to recompute); {seconds:.1f}s"
    return line


def run_benchmark(cfg: RunConfig, argv: list[str]) -> int:
    """Run the grid described by ``cfg`` in its folder, held by this process alone; exit code 1 if a cell failed."""
    start = time.perf_counter()
    store = RunStore(cfg.out)
    with RunLock(store.root):
        groups = build_grid(cfg)
        preflight(groups)
        executor = create_executor(cfg.executor, cfg.devices, **cfg.executor_options)
        store.write_manifest({**store.read_manifest(), **build_manifest(cfg, argv, groups, executor)})
        existing = store.records()
        finished = finished_keys(existing)
        progress = Progress(enabled=None if not cfg.quiet else False)
        history = TimingHistory()
        with progress.session():
            results = executor.run(
                groups, store, finished=finished, force=cfg.force, progress=progress, on_result=history.add_result
            )
        history.save()
        changed, grid = merge_results(store, existing, results, groups)
        seconds = time.perf_counter() - start
        store.write_manifest(
            {**store.read_manifest(), "finished": datetime.now(UTC).isoformat(timespec="seconds"),
             "seconds": round(seconds, 1)}
        )  # fmt: skip
        print(summarise(results, seconds), file=sys.stderr)
        write_outputs(store, grid, cfg.quiet, refresh=changed)
    failed = [r for r in grid if r.status == "failed"]
    for record in failed:
        print(
            f"failed: {record.dataset}/{record.class_name} {record.detector} {record.attack} "
            f"eps={format_eps(record.eps)}: {record.error}",
            file=sys.stderr,
        )
    return 1 if failed else 0


def merge_results(
    store: RunStore, existing: list[Record], results: list[GroupResult], groups: list[FitGroup]
) -> tuple[bool, list[Record]]:
    """Merge the run in memory (new cells, cross-cell flags, worst case); rewrite records.jsonl once if a merge
    changed a record or workers left part files (new cells are already appended). Returns whether any record is
    new or changed, and the grid's records."""
    keys = {job.key for group in groups for job in group.evals}
    computed = [record for result in results for record in result.records]
    # Part files (Slurm jobs) may hold records of jobs this run did not wait for: read them before the one rewrite.
    parts = store.has_parts()
    records = store.records() if parts else latest_per_key([*existing, *computed])
    records, flags_changed = merge_grid_flags(records, keys)
    records, worst, worst_changed = merge_worst_case(store, records, keys, {r.key for r in computed})
    if flags_changed or worst_changed or parts:
        store.rewrite(records)
    return bool(computed) or flags_changed or worst_changed, [r for r in records if r.key in keys] + worst


def print_plan(cfg: RunConfig, argv: list[str]) -> int:
    """``--plan``: print the job matrix (cached fits, finished cells, estimated time) and run nothing."""
    groups = build_grid(cfg)
    executor = create_executor(cfg.executor, cfg.devices, **cfg.executor_options)
    finished = set() if cfg.force else finished_keys(RunStore(cfg.out).records())
    planned = plan_groups(groups, finished, force=cfg.force, cache=CheckpointCache())
    print(format_plan(planned, executor.parallelism))
    return 0


def write_outputs(store: RunStore, records: list[Record], quiet: bool, refresh: bool = True) -> None:
    """Leaderboard files and plots in the run folder (rewritten only when records changed) and the console table,
    from one Report of the run (so the terminal shows the files' intervals)."""
    from bench import results
    from bench.report import build_report, console_table, write_report

    write = refresh or not (store.root / "leaderboard.md").is_file()
    if quiet and not write:
        print(f"results: {store.root} (leaderboards unchanged)", file=sys.stderr)
        return
    report = build_report(results.frame_of(records, store.root), results.manifests(store.root))
    if write:
        paths = write_report(store.root, report)
        written = ", ".join(p.name for p in paths if p.parent == store.root)
        print(f"results: {store.root} ({written})", file=sys.stderr)
    else:
        print(f"results: {store.root} (leaderboards unchanged)", file=sys.stderr)
    if not quiet:
        from rich.console import Console

        Console().print(console_table(report))
