"""One benchmark run from a RunConfig: preflight, grid, manifest, execution, summary and leaderboards."""

from __future__ import annotations

import getpass
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from bench.cache import CheckpointCache
from bench.config import RunConfig
from bench.data import load_split
from bench.executors import Executor, create_executor
from bench.grid import FitGroup, build_grid
from bench.hashing import stable_hash
from bench.history import TimingHistory
from bench.metrics import INCOMPLETE_FLAG, WORST_CASE, auroc, worst_case, worst_case_sources
from bench.plan import format_plan, plan_groups
from bench.progress import Progress
from bench.runner import GroupResult
from bench.sanity import GRID_ONLY_FLAGS, NON_MONOTONE_EPS, grid_flags
from bench.store import RunStore

PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "scikit-learn",
    "scikit-image",
    "robust-ad-bench",
    "submitit",
    "torchattacks",
    "pyautoattack",
)


def git_state() -> dict[str, Any]:
    """Commit sha and whether the work tree has uncommitted changes (None outside a git checkout)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_sha": sha, "git_dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo where there is one) and its core count."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores"


def device_names(devices: list[str] | None) -> list[str]:
    """Human-readable names of the devices the run may use."""
    import torch

    names = [f"cpu: {cpu_name()}"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}: {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    return names


def build_manifest(
    cfg: RunConfig, argv: list[str], groups: list[FitGroup], executor: Executor | None = None
) -> dict[str, Any]:
    from bench.cli import grid_hash

    return {
        "run_key": grid_hash(cfg),
        "preset": cfg.preset,
        "command": " ".join(["python", "run_bench.py", *argv]),
        "config": cfg.to_dict(),
        **git_state(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "host": platform.node(),
        "user": getpass.getuser(),
        "devices": device_names(cfg.devices),
        "executor": executor.describe() if executor is not None else {"name": cfg.executor},
        "seeds": cfg.seeds,
        "n_fit_jobs": len(groups),
        "n_cells": sum(len(g.evals) for g in groups),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def preflight(cfg: RunConfig, groups: list[FitGroup]) -> None:
    """Load one split per dataset so missing data fails at once with a clear message (exit 2)."""
    seen = set()
    for group in groups:
        fit = group.fit
        if fit.dataset not in seen:
            seen.add(fit.dataset)
            load_split(fit.dataset, fit.normal_class, fit.data_root, fit.seed, **fit.data_kwargs)


def summarise(results: list[GroupResult], seconds: float) -> str:
    records = [r for result in results for r in result.records]
    failed = sum(r["status"] == "failed" for r in records)
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
    """Run the grid described by ``cfg``; exit code 1 if any cell failed."""
    start = time.perf_counter()
    groups = build_grid(cfg)
    keys = {job.key() for group in groups for job in group.evals}
    preflight(cfg, groups)
    store = RunStore(cfg.out)
    executor = create_executor(cfg.executor, cfg.devices, **cfg.executor_options)
    manifest = build_manifest(cfg, argv, groups, executor)
    store.write_manifest({**store.read_manifest(), **manifest})
    progress = Progress(enabled=None if not cfg.quiet else False)
    history = TimingHistory()
    with progress.session():
        results = executor.run(groups, store, force=cfg.force, progress=progress, on_result=history.add_result)
    history.save()
    seconds = time.perf_counter() - start
    store.write_manifest(
        {
            **store.read_manifest(),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(seconds, 1),
        }
    )
    records, flags_changed = merge_grid_flags(store, keys)
    worst, worst_changed = merge_worst_case(store, keys)
    records += worst
    print(summarise(results, seconds), file=sys.stderr)
    computed = any(result.records for result in results)
    write_outputs(store, records, cfg.quiet, refresh=computed or flags_changed or worst_changed)
    failed = [r for r in records if r["status"] == "failed"]
    for record in failed:
        print(
            f"failed: {record['dataset']}/{record['class_name']} {record['detector']} {record['attack']} "
            f"eps={record['eps']:.4g}: {record['error']}",
            file=sys.stderr,
        )
    return 1 if failed else 0


def merge_grid_flags(store: RunStore, keys: set[str]) -> tuple[list[dict[str, Any]], bool]:
    """Set the sanity ladder's cross-cell flags (eps/steps monotonicity, gradient masking) on the grid's records.

    Cross-cell-only flags are recomputed from this grid, so a flag whose cause was recomputed away (a rerun
    attack) disappears. Returns the grid's records and whether any flags changed (records.jsonl is then
    rewritten atomically).
    """
    everything = store.records()
    records = [r for r in everything if r["key"] in keys]
    extra = grid_flags(records)
    changed = False
    for record in records:
        kept = [f for f in record["flags"] if f not in GRID_ONLY_FLAGS]
        flags = kept + [f for f in extra.get(record["key"], []) if f not in kept]
        if flags != record["flags"]:
            record["flags"] = flags
            changed = True
    if changed:
        store.rewrite(everything)
    return records, changed


#: Record fields that identify a worst-case group: one (dataset, class, detector, seed) fit at one budget.
GROUP_FIELDS = ("dataset", "normal_class", "detector", "seed", "norm", "eps")
#: Fields a worst-case record copies from its group's first ok cell.
SHARED_FIELDS = (*GROUP_FIELDS, "class_name", "preset", "fit_key", "clean_auroc", "n_normal", "n_anomaly")
SCORE_ARRAYS = ("clean", "adv", "is_anomaly")
EXAMPLE_ARRAYS = ("examples_clean", "examples_adv")


def group_of(record: dict[str, Any]) -> tuple:
    """The worst-case group of a record."""
    return tuple(record.get(field) for field in GROUP_FIELDS)


def merge_worst_case(store: RunStore, keys: set[str]) -> tuple[list[dict[str, Any]], bool]:
    """Recompute the worst-case record of every group of the grid's cells (``keys``) and replace the old ones.

    A worst-case key hashes its source keys, so an added attack or a cell that now succeeds gives a new record,
    which replaces the group's old one (and its scores file). records.jsonl is rewritten atomically, and scores
    saved, only when a record changed: a rerun of a finished grid writes nothing. Returns the grid's worst-case
    records and whether any changed.
    """
    everything = store.records()
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for record in everything:
        if record["key"] in keys:
            groups[group_of(record)].append(record)
    old = {r["key"]: r for r in everything if r["attack"] == WORST_CASE and group_of(r) in groups}
    built = [pair for cells in groups.values() if (pair := worst_case_record(store, cells))[0] is not None]
    extra = grid_flags([record for record, _ in built])
    for record, _ in built:
        record["flags"] = sorted({*record["flags"], *extra.get(record["key"], [])})
    new = {record["key"]: record for record, _ in built}
    unsaved = [
        (r, a)
        for r, a in built
        if a is not None and (old.get(r["key"]) != r or not store.scores_path(r["key"]).is_file())
    ]
    for record, arrays in unsaved:
        store.save_scores(record["key"], **arrays)
    if new == old:
        return list(new.values()), bool(unsaved)
    store.rewrite([r for r in everything if r["key"] not in old] + list(new.values()))
    for key in old.keys() - new.keys():
        store.scores_path(key).unlink(missing_ok=True)
    return list(new.values()), True


def worst_case_record(
    store: RunStore, cells: list[dict[str, Any]]
) -> tuple[dict[str, Any] | None, dict[str, np.ndarray] | None]:
    """One group's worst-case record and per-sample arrays: per sample, the worst score over its ok cells.

    Normals take their highest adversarial score, anomalies their lowest (AUROC is monotone in each score, so
    this is a valid adversary). Its flags are those of the attacks that supplied at least one sample (a weaker
    attack's ``not-converged`` says nothing of a worst case it did not reach), less ``non-monotone-eps``, which
    the grid checks on the worst-case records themselves. ``members`` gives each attack's
    robust AUROC and the share of samples whose worst case it supplied (ties go to the first attack by name); the
    examples come from the attack with the largest share. A group with failed cells is flagged ``incomplete``; one
    whose attacks all failed, or whose scores are missing, gets a failed record; one whose attacks do not apply
    gets none (None, None).
    """
    sources = sorted((r for r in cells if r.get("status", "ok") == "ok"), key=lambda r: r["attack"])
    failed = [r for r in cells if r.get("status") == "failed"]
    record = {field: (sources or cells)[0].get(field) for field in SHARED_FIELDS}
    record.update(attack=WORST_CASE, sources=sorted(r["key"] for r in sources), status="ok", error=None)
    record["key"] = stable_hash([WORST_CASE, *(record["sources"] or sorted(r["key"] for r in failed))])
    if not sources:
        return (failed_worst_case(record, "every attack of this cell failed"), None) if failed else (None, None)
    missing = [r["attack"] for r in sources if not store.scores_path(r["key"]).is_file()]
    if missing:
        return failed_worst_case(record, f"per-sample scores of {', '.join(missing)} are missing"), None
    data = [store.load_scores(r["key"], SCORE_ARRAYS) for r in sources]
    labels = data[0]["is_anomaly"].astype(bool)
    if any(not np.array_equal(d["is_anomaly"].astype(bool), labels) for d in data):
        return failed_worst_case(record, "the attacks' test sets differ"), None
    adv = [d["adv"] for d in data]
    counts = np.bincount(worst_case_sources(adv, labels), minlength=len(sources))
    scores = worst_case(adv, labels)
    examples = store.load_scores(sources[int(counts.argmax())]["key"], EXAMPLE_ARRAYS)
    suppliers = [r for r, n in zip(sources, counts, strict=True) if n > 0]
    inherited = {f for r in suppliers for f in r.get("flags") or () if f != NON_MONOTONE_EPS}
    flags = inherited | ({INCOMPLETE_FLAG} if failed else set())
    record.update(robust_auroc=auroc(scores, labels), flags=sorted(flags))
    record["members"] = [
        {"attack": r["attack"], "robust_auroc": r["robust_auroc"], "share": float(n) / len(labels)}
        for r, n in zip(sources, counts, strict=True)
    ]
    arrays = {"clean": data[0]["clean"], "adv": scores, "is_anomaly": labels}
    return record, arrays | examples


def failed_worst_case(record: dict[str, Any], error: str) -> dict[str, Any]:
    """``record`` as a failed worst-case record (no number: better none than an overstated one)."""
    return {**record, "status": "failed", "error": error, "clean_auroc": None, "robust_auroc": None, "flags": []}


def print_plan(cfg: RunConfig, argv: list[str]) -> int:
    """``--plan``: print the job matrix (cached fits, finished cells, estimated time) and run nothing."""
    groups = build_grid(cfg)
    executor = create_executor(cfg.executor, cfg.devices, **cfg.executor_options)
    planned = plan_groups(groups, RunStore(cfg.out), force=cfg.force, cache=CheckpointCache())
    print(format_plan(planned, executor.parallelism))
    return 0


def write_outputs(store: RunStore, records: list[dict[str, Any]], quiet: bool, refresh: bool = True) -> None:
    """Leaderboard files and plots in the run folder (rewritten only when records changed); the console table."""
    from bench.report import console_table, write_reports

    if refresh or not (store.root / "leaderboard.md").is_file():
        paths = write_reports(store.root, records)
        written = ", ".join(p.name for p in paths if p.parent == store.root)
        print(f"results: {store.root} ({written})", file=sys.stderr)
    else:
        print(f"results: {store.root} (leaderboards unchanged)", file=sys.stderr)
    if not quiet:
        from rich.console import Console

        Console().print(console_table(records))
