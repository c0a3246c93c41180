"""The executor contract and what every engine shares: the registry, longest-first scheduling, worker re-imports
(plugins included) and the bookkeeping that turns a dead worker's unfinished cells into failed records."""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from attacks import ATTACKS
from bench.data import DATASETS
from bench.errors import UsageError
from bench.grid import FitGroup
from bench.history import TimingHistory
from bench.plan import PlannedGroup, longest_first, plan_groups
from bench.plugins import load_plugins, loaded_plugins, plugin_spec
from bench.progress import NULL_PROGRESS, Progress
from bench.registry import Registry
from bench.runner import GroupResult, failed_records
from bench.store import Record, RunStore, finished_keys
from detectors import DETECTORS

EXECUTORS: Registry[type[Executor]] = Registry("executor")


class WorkerCrashedError(RuntimeError):
    """A worker process or cluster job died before recording every cell of its fit group."""


class Executor(ABC):
    """Runs fit groups somewhere, longest first, and reports each group's result as it finishes.

    Args:
        devices: devices to use ("cpu", "cuda", "cuda:N"; repeats give several workers on one device).
        threads: intra-op CPU threads per cell (fixed, for reproducible numbers).
    """

    name: ClassVar[str] = ""

    def __init__(self, devices: list[str] | None = None, *, threads: int = 1, **options: Any) -> None:
        if int(threads) < 1:
            raise UsageError(f"invalid threads {threads!r}: use a positive integer")
        self.devices = devices
        self.threads = int(threads)
        self.options = options

    def run(
        self,
        groups: list[FitGroup],
        store: RunStore,
        *,
        finished: set[str] | None = None,
        force: bool = False,
        progress: Progress = NULL_PROGRESS,
        on_result: Callable[[GroupResult], None] = lambda result: None,
    ) -> list[GroupResult]:
        """Run every cell not in ``finished`` (default: the store's finished keys; ``force``: every cell); records
        are appended to ``store`` as cells finish. Groups with nothing left give results without running."""
        sweep_partial_files(store.root)
        if finished is None:
            finished = finished_keys(store.records())
        pending, results = schedule(groups, set() if force else finished)
        for result in results:
            on_result(result)
        for result in self.run_pending(pending, store, force=force, progress=progress) if pending else ():
            on_result(result)
            results.append(result)
        return results

    @abstractmethod
    def run_pending(self, pending: list[PlannedGroup], store: RunStore, *, force: bool, progress: Progress) -> Any:
        """Run the groups with work left (longest first), yielding each group's result as it finishes."""

    @abstractmethod
    def worker_devices(self) -> list[str]:
        """The device of each worker this executor starts."""

    @property
    def parallelism(self) -> int:
        """How many groups run at once."""
        return len(self.worker_devices())

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the execution."""
        return {"name": self.name, "devices": self.worker_devices(), "threads": self.threads, **self.options}


def schedule(groups: list[FitGroup], finished: set[str]) -> tuple[list[PlannedGroup], list[GroupResult]]:
    """Groups with work left, longest first (timing history; groups without one first); and results for groups
    whose every cell is already finished."""
    planned = plan_groups(groups, finished, history=TimingHistory())
    done = [GroupResult(skipped=len(p.group.evals)) for p in planned if not p.todo]
    return longest_first(planned), done


def finished_in(planned: PlannedGroup) -> set[str]:
    """Keys of the group's cells that are already finished (what its worker skips)."""
    todo = {job.key for job in planned.todo}
    return {job.key for job in planned.group.evals if job.key not in todo}


def registry_modules(groups: list[FitGroup]) -> list[str]:
    """What workers import so their registries match: this process's plugins (in order; plugin files by path),
    then the modules defining the grid's detectors, attacks and datasets."""
    names = set()
    for group in groups:
        names.add(DETECTORS.get(group.fit.detector).__module__)
        names.add(DATASETS.get(group.fit.dataset).__module__)
        names.update(ATTACKS.get(job.attack).__module__ for job in group.evals)
    plugins = loaded_plugins()
    specs = {plugin_spec(name) for name in names - {"__main__", "__mp_main__"}}
    return [*plugins, *sorted(specs - set(plugins))]


def import_modules(modules: list[str], paths: list[str]) -> None:
    """Make ``paths`` importable, then import ``modules`` (module names, or plugin files by path), registering their
    detectors, attacks and datasets."""
    sys.path.extend(p for p in paths if p not in sys.path)
    load_plugins(modules)


def sweep_partial_files(root: Path) -> None:
    """Remove temporary files a killed run left behind in its results folder (atomic writes not completed)."""
    if root.is_dir():
        for path in root.rglob(".*.tmp"):
            path.unlink(missing_ok=True)


def snapshot(store: RunStore) -> dict[str, Record]:
    """The latest record of every key (to tell which cells a dead worker recorded)."""
    return {record.key: record for record in store.records()}


def record_unfinished(
    planned: PlannedGroup, store: RunStore, before: dict[str, Record], error: BaseException
) -> GroupResult:
    """A group whose worker died: its records written during this run, plus failed records for the rest."""
    now = snapshot(store)
    result = GroupResult(skipped=len(planned.group.evals) - len(planned.todo))
    written = [job for job in planned.todo if job.key in now and now[job.key] != before.get(job.key)]
    result.records = [now[job.key] for job in written]
    lost = failed_records([job for job in planned.todo if job not in written], error)
    for record in lost:
        store.append_record(record)
    result.records += lost
    return result


def create_executor(name: str, devices: list[str] | None = None, **options: Any) -> Executor:
    """Instantiate a registered executor."""
    return EXECUTORS.get(name)(devices, **options)
