"""Stable content hashes for cache keys and record keys."""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


def stable_hash(obj: Any, length: int = 16) -> str:
    """SHA-256 of the canonical JSON of ``obj`` (sorted keys; floats by repr), truncated."""
    text = json.dumps(obj, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def code_version(cls: type, package: str) -> str:
    """The code version of a registered detector or attack class: a hash of the ``package`` source files its numbers
    depend on (``class_sources``)."""
    return files_digest(class_sources(cls, package))


def class_sources(cls: type, package: str) -> frozenset[Path]:
    """Source files that ``cls`` depends on: the modules of its class hierarchy inside ``package`` with every package
    module they use (``module_closure``), and the files of the classes above the first package class in its MRO
    (a plugin's detector or attack defined outside the package)."""
    inside = [k.__module__.startswith(f"{package}.") for k in cls.__mro__]
    modules = {k.__module__ for k, ok in zip(cls.__mro__, inside, strict=True) if ok}
    first = inside.index(True) if True in inside else len(inside)
    plugins = (sys.modules[k.__module__] for k in cls.__mro__[:first])
    files = {Path(m.__file__) for m in plugins if getattr(m, "__file__", None)}
    return frozenset(files).union(*(module_closure(module, package) for module in modules))


@functools.cache
def module_closure(module: str, package: str) -> frozenset[Path]:
    """Source files of ``module`` and of every module of ``package`` it uses, transitively.

    Found from what each module's namespace holds (imported modules, and the modules of imported classes and
    functions), so a helper, base class or ensemble member moved to another file is still covered.
    """
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for value in vars(importlib.import_module(name)).values():
            dep = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
            if isinstance(dep, str) and (dep == package or dep.startswith(f"{package}.")) and dep not in seen:
                todo.append(dep)
    files = (getattr(sys.modules[name], "__file__", None) for name in seen)
    return frozenset(Path(f) for f in files if f and not f.endswith("__init__.py"))


@functools.cache
def files_digest(paths: frozenset[Path]) -> str:
    """Hash of the contents of ``paths`` (read once per process)."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
