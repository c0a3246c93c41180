"""Plugins: detectors and attacks defined outside the project, imported from ``--plugins`` (module names or .py
files) or from installed distributions' entry points (groups ``robust_ad_bench.detectors`` and ``.attacks``)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from importlib.metadata import entry_points
from pathlib import Path

from bench.errors import UsageError
from bench.registry import PLUGIN_ORIGINS

DETECTOR_GROUP = "robust_ad_bench.detectors"
ATTACK_GROUP = "robust_ad_bench.attacks"
_LOADED: list[str] = []  # plugins this process imported, in order (a .py file by its path)
_FILE_MODULES: dict[str, str] = {}  # module name -> the plugin file it was loaded from
_ENTRY_POINTS: set[tuple[str, str, str]] = set()  # (group, name, value) of the entry points loaded


def load_plugins(specs: list[str]) -> list[str]:
    """Import each plugin once per process (registering its detectors and attacks) and return their module names.

    A spec ending in ``.py`` or holding a path separator is a file, imported under a name derived from its absolute
    path (the same in every process); anything else is a module name. One that fails to import raises UsageError
    naming it and the error.
    """
    return [load_plugin(spec) for spec in specs]


def load_plugin(spec: str) -> str:
    """One plugin of ``load_plugins``."""
    try:
        if spec.endswith(".py") or "/" in spec or os.sep in spec:
            return load_file(Path(spec))
        if spec not in sys.modules:
            importlib.import_module(spec)
            PLUGIN_ORIGINS.setdefault(spec, f"plugin {spec}")
            _LOADED.append(spec)
    except Exception as error:
        raise UsageError(f"plugin {spec} failed to import: {one_line(error)}") from error
    return spec


def file_module_name(path: Path) -> str:
    """The module name of the plugin file at absolute ``path``: its stem and a hash of the path."""
    stem = re.sub(r"\W", "_", path.stem)
    return f"robust_ad_bench_plugin_{stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def load_file(path: Path) -> str:
    """Import the Python file at ``path`` (once), labelling what it registers ``plugin <path>``."""
    path = path.expanduser().resolve()
    name = file_module_name(path)
    if name in sys.modules:
        return name
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError("not a Python file (.py)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    PLUGIN_ORIGINS[name] = f"plugin {path}"
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    _FILE_MODULES[name] = str(path)
    _LOADED.append(str(path))
    return name


def loaded_plugins() -> list[str]:
    """The plugins loaded in this process, in order: module names, and files by their absolute path."""
    return list(_LOADED)


def plugin_spec(module: str) -> str:
    """How another process imports ``module``: the file of a module loaded from a plugin file, else its name."""
    return _FILE_MODULES.get(module, module)


def load_entry_points(group: str) -> None:
    """Load the entry points of ``group`` not loaded yet in this process; an entry point's value is a module or an
    object in one, and importing it registers its entries (``detectors`` and ``attacks`` call this when imported)."""
    for entry in entry_points(group=group):
        if (group, entry.name, entry.value) in _ENTRY_POINTS:
            continue
        dist = f"{entry.dist.name} {entry.dist.version}" if entry.dist else "unknown distribution"
        try:
            entry.load()
        except Exception as error:
            where = f"{entry.name} = {entry.value} (entry point of {dist})"
            raise UsageError(f"plugin {where} failed to import: {one_line(error)}") from error
        PLUGIN_ORIGINS.setdefault(entry.module, f"{dist} (entry point)")
        _ENTRY_POINTS.add((group, entry.name, entry.value))


def one_line(error: BaseException) -> str:
    """``Type: first line of the message``."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
