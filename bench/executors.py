"""Executors run fit groups: ``serial`` in-process; more engines register here with ``@EXECUTORS.register``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from bench.grid import FitGroup
from bench.progress import NULL_PROGRESS, Progress
from bench.registry import Registry
from bench.runner import GroupResult, run_group
from bench.store import RunStore

EXECUTORS: Registry[type[Executor]] = Registry("executor")


class Executor(ABC):
    """Runs fit groups somewhere and reports each group's result as it finishes."""

    def __init__(self, devices: list[str] | None = None, **options: Any) -> None:
        self.devices = devices
        self.options = options

    @abstractmethod
    def run(
        self,
        groups: list[FitGroup],
        store: RunStore,
        *,
        force: bool = False,
        progress: Progress = NULL_PROGRESS,
        on_result: Callable[[GroupResult], None] = lambda result: None,
    ) -> list[GroupResult]:
        """Run every group; records are appended to ``store`` as cells finish."""


def default_device() -> str:
    """The first CUDA device when there is one, else the CPU."""
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


@EXECUTORS.register("serial")
class SerialExecutor(Executor):
    """In-process, one group after another, on the first device given (default: first GPU, else CPU)."""

    def run(self, groups, store, *, force=False, progress=NULL_PROGRESS, on_result=lambda result: None):
        device = (self.devices or [default_device()])[0]
        finished = set() if force else store.finished_keys()
        results = []
        for group in progress.track(groups, "fit groups"):
            result = run_group(group, store, device=device, finished=finished, force=force, progress=progress)
            on_result(result)
            results.append(result)
        return results


def create_executor(name: str, devices: list[str] | None = None, **options: Any) -> Executor:
    """Instantiate a registered executor."""
    return EXECUTORS.get(name)(devices, **options)
