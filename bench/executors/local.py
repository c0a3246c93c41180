"""The ``local`` executor: one worker process per device (every GPU, else one per CPU share), fed from a dynamic
queue; a worker that dies is replaced and its unfinished cells become failed records."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import suppress
from multiprocessing.connection import Connection, wait
from typing import Any

import torch

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
from bench.executors.devices import cpu_count, parse_devices, physical_gpu, visible_gpus
from bench.plan import PlannedGroup
from bench.runner import GroupResult, run_group
from bench.store import Record, RunStore


def exit_with_parent(parent_pid: int) -> None:
    """Exit this worker as soon as its parent is gone (no orphan keeps computing after a killed run)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


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
            self.conn.send((planned.group, finished_in(planned)))

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

    def run_pending(self, pending, store, *, force, progress):
        args = (self.threads, registry_modules([p.group for p in pending]), str(store.root), force)
        return progress.track(self.run_pool(pending, store, args), "fit groups", total=len(pending))

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
    def collect(worker: LocalWorker, store: RunStore, before: dict[str, Record]) -> GroupResult:
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
