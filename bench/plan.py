"""The job matrix of a run: which fits are cached, which cells are finished, and how long the rest should take.

Used by the executors to schedule the longest fit groups first and by ``run_bench.py --plan`` to print the
matrix without running anything.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from bench.cache import CheckpointCache, fit_key
from bench.config import format_eps
from bench.data import load_split
from bench.grid import EvalJob, FitGroup
from bench.history import TimingHistory
from bench.store import RunStore

#: Fit states shown by --plan ("unknown": the split could not be loaded, so the cache key is unknown).
CACHED, TO_FIT, UNKNOWN, UNCHECKED = "cached", "to fit", "unknown", "unchecked"


@dataclass
class PlannedGroup:
    """A fit group with its unfinished cells, its fit's cache state and the estimated time left."""

    group: FitGroup
    keys: list[str]
    todo: list[EvalJob] = field(default_factory=list)
    fit: str = UNCHECKED
    seconds: float | None = None

    @property
    def finished(self) -> int:
        return len(self.keys) - len(self.todo)


def estimate_seconds(group: FitGroup, todo: list[EvalJob], fit: str, history: TimingHistory) -> float | None:
    """Median fit time (unless cached) plus each unfinished cell's median attack time; None if any is unknown."""
    if not todo:
        return 0.0
    name, dataset, preset = group.fit.detector, group.fit.dataset, group.fit.preset
    parts = [history.attack_seconds(name, dataset, preset, job.attack) for job in todo]
    if fit != CACHED:
        parts.append(history.fit_seconds(name, dataset, preset))
    return None if any(p is None for p in parts) else float(sum(parts))  # type: ignore[arg-type]


def fit_state(group: FitGroup, cache: CheckpointCache, force: bool, splits: dict) -> str:
    """Whether the group's detector is in the checkpoint cache (loads the split, memoised in ``splits``)."""
    fit = group.fit
    where = (fit.dataset, fit.normal_class, fit.seed, fit.data_options, fit.data_root)
    if where not in splits:
        try:
            splits[where] = load_split(fit.dataset, fit.normal_class, fit.data_root, fit.seed, **fit.data_kwargs)
        except Exception:
            splits[where] = None
    split = splits[where]
    if split is None:
        return UNKNOWN
    return CACHED if not force and fit_key(fit.build_detector(), split, fit.seed) in cache else TO_FIT


def plan_groups(
    groups: list[FitGroup],
    store: RunStore,
    *,
    force: bool = False,
    history: TimingHistory | None = None,
    cache: CheckpointCache | None = None,
) -> list[PlannedGroup]:
    """Plan every group; with ``cache`` each fit's cache state is checked (loading splits), else "unchecked"."""
    history = history or TimingHistory()
    finished = set() if force else store.finished_keys()
    splits: dict = {}
    planned = []
    for group in groups:
        spec = group.fit.spec
        keyed = [(job, job.key(spec)) for job in group.evals]
        todo = [job for job, key in keyed if key not in finished]
        fit = fit_state(group, cache, force, splits) if cache is not None and todo else UNCHECKED
        planned.append(PlannedGroup(group, [key for _, key in keyed], todo, fit, None))
        planned[-1].seconds = estimate_seconds(group, todo, fit, history)
    return planned


def longest_first(planned: list[PlannedGroup]) -> list[PlannedGroup]:
    """Groups with work left, unknown estimates first (they may be long), then by estimated time, descending."""
    pending = [p for p in planned if p.todo]
    return sorted(pending, key=lambda p: (p.seconds is not None, -(p.seconds or 0.0)))


def makespan(seconds: list[float], workers: int) -> float:
    """Wall time of greedy longest-first scheduling of ``seconds`` on ``workers`` identical workers."""
    loads = [0.0] * max(1, workers)
    for s in sorted(seconds, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + s)
    return max(loads)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.1f}min" if seconds < 5400 else f"{seconds / 3600:.1f}h"


def format_plan(planned: list[PlannedGroup], workers: int) -> str:
    """The job matrix as text: one line per fit group, then totals and the estimated time."""
    rows = [("fit job", "fit", "cells", "to run", "est.")]
    for p in planned:
        fit = p.group.fit
        cells = ", ".join(f"{job.attack}@{format_eps(job.eps)}" for job in p.todo) or "-"
        rows.append((fit.label, p.fit if p.todo else "done", str(len(p.keys)), cells, format_seconds(p.seconds)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4] for row in rows]
    pending = [p for p in planned if p.todo]
    states = [p.fit for p in pending]
    known = [p.seconds for p in pending if p.seconds is not None]
    n_cells = sum(len(p.keys) for p in planned)
    n_todo = sum(len(p.todo) for p in planned)
    lines.append(
        f"{len(planned)} fit jobs: {states.count(TO_FIT)} to fit, {states.count(CACHED)} cached, "
        f"{states.count(UNKNOWN)} unknown (split not loadable), {len(planned) - len(pending)} with nothing left; "
        f"{n_cells} cells: {n_cells - n_todo} finished, {n_todo} to run"
    )
    unknown = len(pending) - len(known)
    estimate = (
        f"estimated time: {format_seconds(sum(known))} of work, about {format_seconds(makespan(known, workers))} "
        f"on {workers} worker(s)"
    )
    lines.append(estimate + (f"; {unknown} fit job(s) without timing history not counted" if unknown else ""))
    return "\n".join(lines)
