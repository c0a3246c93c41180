"""The ``serial`` executor: fit groups one after another in this process (longest first)."""

from __future__ import annotations

from bench.executors.base import EXECUTORS, Executor, finished_in
from bench.executors.devices import parse_devices, pinned_threads, visible_gpus
from bench.runner import run_group


@EXECUTORS.register("serial")
class SerialExecutor(Executor):
    """In-process, one group after another, on the first device given (default: first GPU, else CPU)."""

    name = "serial"

    def worker_devices(self) -> list[str]:
        return parse_devices(self.devices)[:1] if self.devices else (visible_gpus() or ["cpu"])[:1]

    def run_pending(self, pending, store, *, force, progress):
        device = self.worker_devices()[0]
        with pinned_threads(self.threads):
            for planned in progress.track(pending, "fit groups"):
                finished = finished_in(planned)
                yield run_group(planned.group, store, device=device, finished=finished, force=force, progress=progress)
