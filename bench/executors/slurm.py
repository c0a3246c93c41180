"""The ``slurm`` executor: one submitit array task per fit group, each writing its own part file (folded into
records.jsonl by the run that submitted them)."""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from bench.errors import UsageError
from bench.executors.base import (
    EXECUTORS,
    Executor,
    WorkerCrashedError,
    finished_in,
    import_modules,
    record_unfinished,
    registry_modules,
    snapshot,
)
from bench.paths import PROJECT_ROOT
from bench.runner import GroupResult, run_group
from bench.store import RunStore

SLURM_EXTRA = "pip install 'robust-ad-bench[slurm]' (submitit)"


def parse_slurm_time(text: str) -> int:
    """Slurm time limit ("MM", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS") in whole minutes."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(text).strip())
    if not match:
        raise UsageError(f"invalid --slurm-time {text!r}: use MM, HH:MM:SS or D-HH:MM:SS")
    days, a, b, c = (int(g) if g is not None else None for g in match.groups())
    if days is not None:
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:
        seconds = a * 3600 + b * 60 + c
    else:
        seconds = a * 60 + (b or 0)
    if seconds <= 0:
        raise UsageError(f"invalid --slurm-time {text!r}: the limit must be positive")
    return math.ceil(seconds / 60)


def slurm_task(task: dict[str, Any]) -> GroupResult:
    """One array task: run one fit group, appending its records to the part file named after the job id."""
    import submitit

    import_modules(task["modules"], task["sys_path"])
    torch.set_num_threads(task["threads"])
    device = "cuda:0" if task["gpus"] and torch.cuda.is_available() else "cpu"
    part = submitit.JobEnvironment().job_id
    store = RunStore(task["root"])
    return run_group(task["group"], store, device=device, finished=task["finished"], force=task["force"], part=part)


@contextmanager
def repo_on_pythonpath() -> Iterator[None]:
    """Jobs start a fresh interpreter with the submitting environment: make this checkout importable there."""
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), previous]))
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = previous


@EXECUTORS.register("slurm")
class SlurmExecutor(Executor):
    """Slurm array jobs through submitit (extra ``slurm``): one task per fit group, each with its own part file.

    Options: partition, time (Slurm format), gpus_per_job, array_parallelism, and cluster ("slurm", or "local"
    to run the tasks as local processes through submitit's local cluster, as the tests do).
    """

    name = "slurm"

    def __init__(
        self,
        devices: list[str] | None = None,
        *,
        threads: int = 1,
        partition: str | None = None,
        time: str = "60",
        gpus_per_job: int = 0,
        array_parallelism: int = 64,
        cluster: str = "slurm",
    ) -> None:
        if devices:
            raise UsageError("--devices does not apply to --executor slurm; use --slurm-gpus-per-job")
        timeout_min = parse_slurm_time(time)
        super().__init__(None, threads=threads, partition=partition, time=time, gpus_per_job=int(gpus_per_job),
                         array_parallelism=int(array_parallelism), cluster=cluster)  # fmt: skip
        self.timeout_min = timeout_min

    def worker_devices(self) -> list[str]:
        return ["cuda:0" if self.options["gpus_per_job"] else "cpu"]

    @property
    def parallelism(self) -> int:
        return self.options["array_parallelism"]

    def make_executor(self, folder: Path) -> Any:
        try:
            import submitit
        except ImportError:
            raise UsageError(f"--executor slurm needs submitit: {SLURM_EXTRA}") from None
        cluster = self.options["cluster"]
        if cluster == "slurm" and shutil.which("sbatch") is None:
            raise UsageError("--executor slurm needs Slurm (sbatch not found); use --executor local on this machine")
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
        parameters: dict[str, Any] = {
            "name": "robust-ad-bench",
            "timeout_min": self.timeout_min,
            "gpus_per_node": self.options["gpus_per_job"],
            "cpus_per_task": self.threads,
            "slurm_array_parallelism": self.options["array_parallelism"],
        }
        if self.options["partition"]:
            parameters["slurm_partition"] = self.options["partition"]
        executor.update_parameters(**parameters)
        return executor

    def run_pending(self, pending, store, *, force, progress):
        import submitit

        executor = self.make_executor(store.root / "submitit")
        before = snapshot(store)
        modules = registry_modules([p.group for p in pending])
        common = {"root": str(store.root), "force": force, "threads": self.threads, "sys_path": sys.path,
                  "gpus": self.options["gpus_per_job"], "modules": modules}  # fmt: skip
        tasks = [{**common, "group": p.group, "finished": finished_in(p)} for p in pending]
        with repo_on_pythonpath():
            jobs = executor.map_array(slurm_task, tasks)
        planned_of = {job.job_id: planned for job, planned in zip(jobs, pending, strict=True)}
        poll = 0.5 if self.options["cluster"] == "local" else 10.0
        completed = submitit.helpers.as_completed(jobs, poll_frequency=poll)
        for job in progress.track(completed, "slurm jobs", total=len(jobs)):
            try:
                result = job.result()
            except Exception as error:
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                crash = WorkerCrashedError(f"slurm job {job.job_id} failed: {reason}")
                result = record_unfinished(planned_of[job.job_id], store, before, crash)
            yield result
