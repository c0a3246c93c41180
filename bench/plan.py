"""The job matrix of a run: which fits are cached, which cells are finished, and how long the rest should take.

Used by the executors to schedule the longest fit groups first and by ``run_bench.py --plan`` to print the
matrix without running anything. Times come from the timing history of earlier runs; where there is none (a
``paper`` run never made here), ``--plan`` estimates them from pass counts: the backbone image passes a fit or an
attack cell makes (``Detector.fit_passes``, ``passes_per_score`` x the attack's steps) divided by the images per
second of that backbone measured on the device found (the first CUDA GPU, else one CPU thread, as a CPU worker
runs). The estimate leaves out data loading, augmentation and the sanity checks' extra passes.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bench.cache import CheckpointCache, fit_key
from bench.config import format_eps
from bench.data import load_split
from bench.grid import EvalJob, FitGroup
from bench.history import TimingHistory
from bench.sanity import attack_steps

#: Fit states shown by --plan ("unknown": the split could not be loaded, so the cache key is unknown).
CACHED, TO_FIT, UNKNOWN, UNCHECKED = "cached", "to fit", "unknown", "unchecked"


@dataclass
class PlannedGroup:
    """A fit group with its unfinished cells, its fit's cache state and the estimated time left."""

    group: FitGroup
    todo: list[EvalJob] = field(default_factory=list)
    fit: str = UNCHECKED
    seconds: float | None = None
    #: The pass-count model ``seconds`` comes from (no timing history for this detector, dataset and preset).
    costs: PassCostModel | None = None

    @property
    def finished(self) -> int:
        return len(self.group.evals) - len(self.todo)


#: Seconds each throughput measurement runs for (after one warm-up pass).
MEASURE_SECONDS = 1.0
#: Images per measured batch: a GPU is measured at a batch it would see in training, a CPU thread at a small one.
MEASURE_BATCH = {"cuda": 256, "cpu": 4}


@dataclass(frozen=True)
class PassRates:
    """Images per second of one backbone pass: forward+backward (training, attack steps) and forward only."""

    train: float
    forward: float


def default_device() -> torch.device:
    """The device an estimate is measured on: the first CUDA GPU, else the CPU."""
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def measure_rates(
    net: nn.Module, input_shape: tuple[int, ...], device: torch.device, seconds: float = MEASURE_SECONDS
) -> PassRates:
    """Images/s of ``net`` on random images (train mode with a backward pass; eval mode without gradients), each
    measured for ``seconds``. On a CPU it runs on one thread, as each CPU worker of the local executor does.
    """
    net = net.to(device)
    x = torch.rand(MEASURE_BATCH.get(device.type, 4), *input_shape, device=device)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)

    def rate(step) -> float:
        step()  # warm-up (cuDNN autotuning, allocator)
        count, start = 0, time.perf_counter()
        while count == 0 or time.perf_counter() - start < seconds:
            step()
            count += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return count * x.shape[0] / (time.perf_counter() - start)

    def train_step() -> None:
        net.train()
        outputs = net(x)
        sum(o.float().sum() for o in (outputs if isinstance(outputs, tuple) else (outputs,))).backward()
        net.zero_grad(set_to_none=True)

    def forward_step() -> None:
        net.eval()
        with torch.no_grad():
            net(x)

    try:
        return PassRates(rate(train_step), rate(forward_step))
    finally:
        torch.set_num_threads(threads)


class PassCostModel:
    """Seconds of fits and attack cells from pass counts and the measured throughput of each detector's backbone.

    Throughputs are measured once per backbone architecture and input shape (``measured`` lists them for the
    plan's footnote).
    """

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device or default_device()
        self.measured: dict[tuple[str, tuple[int, ...]], PassRates] = {}
        self._names: dict[tuple[str, tuple[int, ...]], set[str]] = {}

    def _rates(self, detector: Any, input_shape: tuple[int, ...]) -> PassRates | None:
        net = detector.cost_network()
        if net is None:
            return None
        key = (repr(net), tuple(input_shape))
        if key not in self.measured:
            self.measured[key] = measure_rates(net, input_shape, self.device)
        self._names.setdefault(key, set()).add(detector.name)
        return self.measured[key]

    def fit_seconds(self, detector: Any, input_shape: tuple[int, ...], n_train: int) -> float | None:
        """Estimated fit time of a built ``detector`` on ``n_train`` images; None when its cost is not modelled."""
        passes = detector.fit_passes(n_train)
        rates = self._rates(detector, input_shape) if passes is not None else None
        if rates is None:
            return None
        return passes[0] / rates.train + passes[1] / rates.forward

    def attack_seconds(self, detector: Any, input_shape: tuple[int, ...], job: EvalJob, n_test: int) -> float | None:
        """Estimated cell time: the clean score, then steps x restarts score forward+backward passes per image."""
        attack = job.build_attack()
        steps = attack_steps(attack)
        rates = self._rates(detector, input_shape) if steps is not None else None
        if rates is None:
            return None
        per_image = detector.passes_per_score
        restarts = max(1, int(getattr(attack.config, "restarts", 1)))
        return n_test * per_image * (steps * restarts / rates.train + 1 / rates.forward)

    def describe(self) -> list[str]:
        """One line per measured backbone: which detectors use it and its images/s."""
        return [
            f"  {', '.join(sorted(self._names[key]))} backbone, {'x'.join(map(str, shape))} images on "
            f"{self.device}: {rates.train:.0f} images/s forward+backward, {rates.forward:.0f} forward"
            for key, rates in self.measured.items()
            for shape in [key[1]]
        ]


def history_seconds(group: FitGroup, todo: list[EvalJob], fit: str, history: TimingHistory) -> float | None:
    """Median fit time (unless cached) plus each unfinished cell's median attack time; None if any is unknown."""
    if not todo:
        return 0.0
    name, dataset, preset = group.fit.detector, group.fit.dataset, group.fit.preset
    parts = [history.attack_seconds(name, dataset, preset, job.attack) for job in todo]
    if fit != CACHED:
        parts.append(history.fit_seconds(name, dataset, preset))
    return None if any(p is None for p in parts) else float(sum(parts))  # type: ignore[arg-type]


def pass_count_seconds(
    group: FitGroup, todo: list[EvalJob], fit: str, split: Any, costs: PassCostModel
) -> float | None:
    """The group's time from pass counts (``PassCostModel``); None when the split or a cost is unknown."""
    if split is None:
        return None
    detector = group.fit.build_detector()
    shape = tuple(split.train.shape[1:])
    detector.setup(shape)
    parts = [costs.attack_seconds(detector, shape, job, split.test.shape[0]) for job in todo]
    if fit != CACHED:
        parts.append(costs.fit_seconds(detector, shape, split.train.shape[0]))
    return None if any(p is None for p in parts) else float(sum(parts))  # type: ignore[arg-type]


def group_split(group: FitGroup, splits: dict) -> Any:
    """The group's split (memoised in ``splits``), or None when it cannot be loaded."""
    fit = group.fit
    where = (fit.dataset, fit.normal_class, fit.seed, fit.data_options, fit.data_root)
    if where not in splits:
        try:
            splits[where] = load_split(fit.dataset, fit.normal_class, fit.data_root, fit.seed, **fit.data_kwargs)
        except Exception:
            splits[where] = None
    return splits[where]


def fit_state(group: FitGroup, cache: CheckpointCache, force: bool, splits: dict) -> str:
    """Whether the group's detector is in the checkpoint cache (loads the split, memoised in ``splits``)."""
    split = group_split(group, splits)
    if split is None:
        return UNKNOWN
    fit = group.fit
    return CACHED if not force and fit_key(fit.build_detector(), split, fit.seed) in cache else TO_FIT


def plan_groups(
    groups: list[FitGroup],
    finished: set[str],
    *,
    force: bool = False,
    history: TimingHistory | None = None,
    cache: CheckpointCache | None = None,
    costs: PassCostModel | None = None,
) -> list[PlannedGroup]:
    """Plan every group's cells not in ``finished``; with ``cache`` each fit's cache state is checked (``force``:
    as if empty; this loads splits), else "unchecked".

    Times come from ``history``; with ``cache``, a group without history is estimated from pass counts
    (``costs``, by default a ``PassCostModel`` on the device found, which measures each backbone once).
    """
    history = history or TimingHistory()
    if cache is not None and costs is None:
        costs = PassCostModel()
    splits: dict = {}
    planned = []
    for group in groups:
        todo = [job for job in group.evals if job.key not in finished]
        fit = fit_state(group, cache, force, splits) if cache is not None and todo else UNCHECKED
        entry = PlannedGroup(group, todo, fit, history_seconds(group, todo, fit, history))
        if entry.seconds is None and costs is not None:
            entry.seconds = pass_count_seconds(group, todo, fit, group_split(group, splits), costs)
            entry.costs = costs if entry.seconds is not None else None
        planned.append(entry)
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


def cell_label(job: EvalJob) -> str:
    """``attack@eps``, with the attack's iteration budget when it has one: ``pgd@4/255 (1000 steps)``."""
    steps = attack_steps(job.build_attack())
    return f"{job.attack}@{format_eps(job.eps)}" + (f" ({steps} steps)" if steps is not None else "")


def format_plan(planned: list[PlannedGroup], workers: int) -> str:
    """The job matrix as text: one line per fit group, then totals and the estimated time.

    Estimates from pass counts are marked ``~``, and the throughputs they were computed from are listed.
    """
    rows = [("fit job", "fit", "cells", "to run", "est.")]
    for p in planned:
        fit = p.group.fit
        cells = ", ".join(cell_label(job) for job in p.todo) or "-"
        estimate = ("~" if p.costs is not None else "") + format_seconds(p.seconds)
        rows.append((fit.label, p.fit if p.todo else "done", str(len(p.group.evals)), cells, estimate))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4] for row in rows]
    pending = [p for p in planned if p.todo]
    states = [p.fit for p in pending]
    known = [p.seconds for p in pending if p.seconds is not None]
    n_cells = sum(len(p.group.evals) for p in planned)
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
    lines.append(estimate + (f"; {unknown} fit job(s) without an estimate not counted" if unknown else ""))
    models = list({id(p.costs): p.costs for p in pending if p.costs is not None}.values())
    if models:
        lines.append("~ estimated from backbone pass counts (no timing history), at the measured throughput:")
        lines += [line for model in models for line in model.describe()]
    return "\n".join(lines)
