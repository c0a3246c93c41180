"""Provenance of a run for its manifest: the command and config, git state, package versions, devices, host."""

from __future__ import annotations

import getpass
import os
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.config import RunConfig, run_key
from bench.executors import Executor
from bench.grid import FitGroup
from bench.paths import PROJECT_ROOT

PROJECT = "robust-ad-bench"


def project_packages() -> list[str]:
    """This project and every distribution it declares it needs (extras included), from its installed metadata."""
    try:
        requires = metadata.requires(PROJECT) or []
    except metadata.PackageNotFoundError:
        return [PROJECT]
    names = (re.match(r"[A-Za-z0-9._-]+", requirement).group(0) for requirement in requires)
    return [PROJECT, *dict.fromkeys(names)]


def git_state() -> dict[str, Any]:
    """Commit sha and whether the work tree has uncommitted changes (None outside a git checkout)."""
    root = PROJECT_ROOT

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_sha": sha, "git_dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str]:
    """Installed versions of the project's packages (those not installed are left out)."""
    versions = {}
    for name in project_packages():
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo where there is one) and its core count."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores"


def device_names() -> list[str]:
    """Human-readable names of the devices the run may use."""
    import torch

    names = [f"cpu: {cpu_name()}"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}: {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    return names


def build_manifest(cfg: RunConfig, argv: list[str], groups: list[FitGroup], executor: Executor) -> dict[str, Any]:
    """What the manifest records about a run: its command, config, code state, packages and hardware."""
    return {
        "run_key": run_key(cfg),
        "preset": cfg.preset,
        "command": " ".join(["python", "run_bench.py", *argv]),
        "config": cfg.to_dict(),
        **git_state(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "host": platform.node(),
        "user": getpass.getuser(),
        "devices": device_names(),
        "executor": executor.describe(),
        "seeds": cfg.seeds,
        "n_fit_jobs": len(groups),
        "n_cells": sum(len(g.evals) for g in groups),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
