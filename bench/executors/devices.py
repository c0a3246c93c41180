"""Devices and CPU threads of the workers: which devices exist, parsing ``--devices``, pinning intra-op threads."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from bench.errors import UsageError


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


def physical_gpu(index: int) -> str:
    """The CUDA_VISIBLE_DEVICES entry of the parent's ``cuda:<index>`` (the parent may itself be restricted)."""
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return visible[index] if index < len(visible) else str(index)
