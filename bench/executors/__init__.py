"""Executors run fit groups: ``serial`` in-process, ``local`` (one worker process per device, a dynamic queue) and
``slurm`` (submitit array jobs, one part file per job). More engines register with ``@EXECUTORS.register``.

Every executor runs a fit group's fit before its cells on the same worker, schedules the longest groups first
(estimated from the timing history of earlier runs; groups without history go first) and turns a worker that dies
into ``failed`` records for the cells it left unfinished, so the grid goes on and a rerun retries them.

Determinism: CPU results depend on the intra-op thread count (oneDNN/MKL split reductions differently; measured:
a 1-thread and a 2-thread DeepSVDD fit differ in the 8th digit). Every executor therefore runs each cell with the
same fixed ``threads`` (default 1), so serial, local and slurm runs of one grid give equal numbers.
"""

from bench.executors import local, serial, slurm
from bench.executors.base import EXECUTORS, Executor, WorkerCrashedError, create_executor

__all__ = ["EXECUTORS", "Executor", "WorkerCrashedError", "create_executor", "local", "serial", "slurm"]
