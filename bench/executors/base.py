"""Executors run fit groups: ``serial`` in-process, ``local`` (one worker process per device, a dynamic queue) and
``slurm`` (submitit array jobs, one part file per job). More engines register with ``@EXECUTORS.register``.

Every executor runs a fit group's fit before its eval cells on the same worker, schedules the longest groups
first (estimated from the timing history of earlier runs; groups without history go first) and turns a worker
that dies into ``failed`` records for the cells it left unfinished, so the grid goes on and a rerun retries them.

Determinism: CPU results depend on the intra-op thread count (oneDNN/MKL split reductions differently; measured:
a 1-thread and a 2-thread DeepSVDD fit differ in the 8th digit). Every executor therefore runs each cell with the
same fixed ``threads`` (default 1), so serial, local and slurm runs of one grid give equal numbers.
"""

from __future__ import annotations

import importlib
import math
import multiprocessing
import os
import re
import shutil
import signal
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, ClassVar

import torch

from bench.errors import UsageError
from bench.grid import FitGroup
from bench.history import TimingHistory
from bench.plan import PlannedGroup, longest_first, plan_groups
from bench.progress import NULL_PROGRESS, Progress
from bench.registry import Registry
from bench.runner import GroupResult, base_record, failed_record, run_group
from bench.store import RunStore

EXECUTORS: Registry[type[Executor]] = Registry("executor")
REPO_ROOT = Path(__file__).resolve().parent.parent
SLURM_EXTRA = "pip install 'robust-ad-bench[slurm]' (submitit)"


class WorkerCrashedError(RuntimeError):
    """A worker process or cluster job died before recording every cell of its fit group."""


class Executor(ABC):
    """Runs fit groups somewhere and reports each group's result as it finishes.

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


def cpu_count() -> int:
    """CPUs this process may run on (respects affinity masks and Slurm cgroups)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def visible_gpus() -> list[str]:
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def parse_devices(spec: list[str]) -> list[str]:
    """Validate devices: "cpu", "cuda" (every visible GPU) or "cuda:N"; repeats are kept."""
    gpus = visible_gpus()
    out: list[str] = []
    for device in spec:
        if device == "cpu":
            out.append(device)
        elif device == "cuda" or re.fullmatch(r"cuda:\d+", device):
            wanted = gpus if device == "cuda" else [device]
            if not gpus or any(d not in gpus for d in wanted):
                have = ", ".join(gpus) or "none"
                raise UsageError(f"device {device!r} is not available (visible GPUs: {have}); use cpu or cuda:N")
            out.extend(wanted)
        else:
            raise UsageError(f"unknown device {device!r}; use cpu, cuda or cuda:N (comma list, e.g. cpu,cpu)")
    if not out:
        raise UsageError("no device given; use cpu, cuda or cuda:N")
    return out


@contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads, restoring the previous setting afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def registry_modules(groups: list[FitGroup]) -> list[str]:
    """Modules defining the grid's detectors, attacks and datasets: workers import them so registries match."""
    from attacks import ATTACKS
    from bench.data import DATASETS
    from detectors import DETECTORS

    names = set()
    for group in groups:
        names.add(DETECTORS.get(group.fit.detector).__module__)
        names.add(DATASETS.get(group.fit.dataset).__module__)
        names.update(ATTACKS.get(job.attack).__module__ for job in group.evals)
    return sorted(names - {"__main__", "__mp_main__"})


def import_modules(modules: list[str], paths: list[str]) -> None:
    """Make ``paths`` importable, then import ``modules`` (registering their detectors/attacks/datasets)."""
    sys.path.extend(p for p in paths if p not in sys.path)
    for module in modules:
        importlib.import_module(module)


def sweep_partial_files(root: Path) -> None:
    """Remove temporary files a killed run left behind in its results folder (atomic writes not completed)."""
    if root.is_dir():
        for path in root.rglob(".*.tmp"):
            path.unlink(missing_ok=True)


def snapshot(store: RunStore) -> dict[str, dict[str, Any]]:
    """The latest record of every key (to tell which cells a dead worker recorded)."""
    return {record["key"]: record for record in store.records()}


def record_unfinished(
    planned: PlannedGroup, store: RunStore, before: dict[str, dict], error: BaseException
) -> GroupResult:
    """A group whose worker died: its records written during this run, plus failed records for the rest."""
    now = snapshot(store)
    result = GroupResult(skipped=planned.finished)
    todo = set(planned.todo)
    for job, key in zip(planned.group.evals, planned.keys, strict=True):
        if job not in todo:
            continue
        if now.get(key) is not None and now.get(key) != before.get(key):
            result.records.append(now[key])
            continue
        record = failed_record(base_record(planned.group, job, key, None), error)
        store.append_record(record)
        result.records.append(record)
    return result


def schedule(groups: list[FitGroup], store: RunStore, force: bool) -> tuple[list[PlannedGroup], list[GroupResult]]:
    """Groups with work left, longest first; and results for groups with every cell already finished."""
    planned = plan_groups(groups, store, force=force, history=TimingHistory())
    done = [GroupResult(skipped=len(p.keys)) for p in planned if not p.todo]
    return longest_first(planned), done


@EXECUTORS.register("serial")
class SerialExecutor(Executor):
    """In-process, one group after another, on the first device given (default: first GPU, else CPU)."""

    name = "serial"

    def worker_devices(self) -> list[str]:
        return parse_devices(self.devices)[:1] if self.devices else (visible_gpus() or ["cpu"])[:1]

    def run(self, groups, store, *, force=False, progress=NULL_PROGRESS, on_result=lambda result: None):
        device = self.worker_devices()[0]
        finished = set() if force else store.finished_keys()
        sweep_partial_files(store.root)
        results = []
        with pinned_threads(self.threads):
            for group in progress.track(groups, "fit groups"):
                result = run_group(group, store, device=device, finished=finished, force=force, progress=progress)
                on_result(result)
                results.append(result)
        return results


def exit_with_parent(parent_pid: int) -> None:
    """Exit this worker as soon as its parent is gone (no orphan keeps computing after a killed run)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def physical_gpu(index: int) -> str:
    """The CUDA_VISIBLE_DEVICES entry of the parent's ``cuda:<index>`` (the parent may itself be restricted)."""
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return visible[index] if index < len(visible) else str(index)


def local_worker(conn: Connection, device: str, threads: int, modules: list[str], root: str, force: bool) -> None:
    """A local worker: pin the device and threads, then run the fit groups the parent sends until told to stop."""
    exit_with_parent(os.getppid())
    if device.startswith("cuda:"):
        os.environ["CUDA_VISIBLE_DEVICES"] = physical_gpu(int(device.split(":", 1)[1]))  # before CUDA initialises
        device = "cuda:0"
    torch.set_num_threads(threads)
    import_modules(modules, [])
    store = RunStore(root)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        group, finished = task
        try:
            conn.send(("done", run_group(group, store, device=device, finished=finished, force=force)))
        except Exception as error:
            conn.send(("error", f"{type(error).__name__}: {error}"))


class LocalWorker:
    """One worker process on one device, with the group it is running (if any)."""

    def __init__(self, context: Any, device: str, args: tuple) -> None:
        self.context, self.device, self.args = context, device, args
        self.task: PlannedGroup | None = None
        self.start()

    def start(self) -> None:
        self.conn, child = self.context.Pipe()
        self.process = self.context.Process(target=local_worker, args=(child, self.device, *self.args), daemon=True)
        self.process.start()
        child.close()

    def send(self, planned: PlannedGroup) -> None:
        self.task = planned
        with suppress(OSError):  # a worker that died is noticed through its sentinel
            self.conn.send((planned.group, set(planned.keys) - set(todo_keys(planned))))

    def receive(self) -> tuple[str, Any] | None:
        """The worker's message, or None when it died without sending one."""
        try:
            return self.conn.recv() if self.conn.poll() else None
        except (EOFError, OSError):
            return None

    def death_reason(self) -> str:
        self.process.join(timeout=5)
        code = self.process.exitcode
        how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        return f"worker on {self.device} (pid {self.process.pid}) died ({how})"

    def stop(self) -> None:
        if self.process.is_alive():
            with suppress(OSError):
                self.conn.send(None)
            self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        self.conn.close()


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    """One worker process per device (default: every GPU, else one per CPU thread share), a dynamic queue."""

    name = "local"

    def worker_devices(self) -> list[str]:
        if self.devices:
            return parse_devices(self.devices)
        return visible_gpus() or ["cpu"] * max(1, cpu_count() // self.threads)

    def run(self, groups, store, *, force=False, progress=NULL_PROGRESS, on_result=lambda result: None):
        sweep_partial_files(store.root)
        pending, results = schedule(groups, store, force)
        for result in results:
            on_result(result)
        if pending:
            args = (self.threads, registry_modules(groups), str(store.root), force)
            for result in progress.track(self.run_pool(pending, store, args), "fit groups", total=len(pending)):
                on_result(result)
                results.append(result)
        return results

    def run_pool(self, pending: list[PlannedGroup], store: RunStore, args: tuple) -> Iterator[GroupResult]:
        """Feed groups to one worker per device as each frees up; a dead worker is replaced and the grid goes on."""
        context = multiprocessing.get_context("spawn")
        before = snapshot(store)
        queue = deque(pending)
        devices = self.worker_devices()[: len(pending)]
        workers = [LocalWorker(context, device, args) for device in devices]
        try:
            for worker in workers:
                worker.send(queue.popleft())
            while busy := [w for w in workers if w.task is not None]:
                ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
                for worker in (w for w in busy if w.conn in ready or w.process.sentinel in ready):
                    yield self.collect(worker, store, before)
                    if queue:
                        worker.send(queue.popleft())
        finally:
            for worker in workers:
                worker.stop()

    @staticmethod
    def collect(worker: LocalWorker, store: RunStore, before: dict[str, dict]) -> GroupResult:
        """The result of the worker's group; failed records for what it left when it errored or died."""
        planned, worker.task = worker.task, None
        message = worker.receive()
        if message is not None and message[0] == "done":
            return message[1]
        if message is None:
            error = WorkerCrashedError(f"{worker.death_reason()} while running {planned.group.fit.label}")
            worker.stop()
            worker.start()
        else:
            error = WorkerCrashedError(f"worker error while running {planned.group.fit.label}: {message[1]}")
        return record_unfinished(planned, store, before, error)


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
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), previous]))
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

    def run(self, groups, store, *, force=False, progress=NULL_PROGRESS, on_result=lambda result: None):
        import submitit

        executor = self.make_executor(store.root / "submitit")
        sweep_partial_files(store.root)
        pending, results = schedule(groups, store, force)
        for result in results:
            on_result(result)
        if not pending:
            return results
        before = snapshot(store)
        common = {"root": str(store.root), "force": force, "threads": self.threads, "sys_path": sys.path,
                  "gpus": self.options["gpus_per_job"], "modules": registry_modules(groups)}  # fmt: skip
        tasks = [{**common, "group": p.group, "finished": set(p.keys) - set(todo_keys(p))} for p in pending]
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
            on_result(result)
            results.append(result)
        store.consolidate()
        return results


def todo_keys(planned: PlannedGroup) -> list[str]:
    """Keys of the group's unfinished cells."""
    todo = set(planned.todo)
    return [key for job, key in zip(planned.group.evals, planned.keys, strict=True) if job in todo]


def create_executor(name: str, devices: list[str] | None = None, **options: Any) -> Executor:
    """Instantiate a registered executor."""
    return EXECUTORS.get(name)(devices, **options)
