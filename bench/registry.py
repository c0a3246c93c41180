"""Name -> factory registries with ``all`` / comma-list / glob expansion (in the spirit of timm's registry) that
tell where each entry comes from; ``build_config``: a registered class's Config dataclass from options."""

from __future__ import annotations

import dataclasses
import fnmatch
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from bench.errors import UsageError
from bench.paths import PROJECT_ROOT

T = TypeVar("T")
#: Origins of modules loaded as plugins (``bench.plugins``): a module name -> its label, also for its submodules.
PLUGIN_ORIGINS: dict[str, str] = {}


def module_origin(module: str) -> str:
    """Where entries defined in ``module`` come from: the plugin that loaded it, else its file relative to the
    project (a built-in entry), else its file or its name."""
    for prefix, origin in PLUGIN_ORIGINS.items():
        if module == prefix or module.startswith(f"{prefix}."):
            return origin
    file = getattr(sys.modules.get(module), "__file__", None)
    if file is None:
        return module
    path = Path(file).resolve()
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


class Registry(Generic[T]):
    """A named collection of factories (classes or functions) of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}

    def register(self, name: str, description: str | None = None) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; the description defaults to its docstring's first line."""

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            doc = description or (obj.__doc__ or "").strip().splitlines()[0:1]
            self._descriptions[name] = doc if isinstance(doc, str) else (doc[0] if doc else "")
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The factory registered as ``name``; an unknown name raises UsageError listing the valid choices."""
        if name not in self._entries:
            raise UsageError(f"unknown {self.kind} {name!r}; choose from: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def describe(self) -> dict[str, str]:
        """Name -> one-line description."""
        return {name: self._descriptions[name] for name in self.names()}

    def origin(self, name: str) -> str:
        """Where entry ``name`` comes from: its file under the project (built in), ``plugin <file or module>``
        (``--plugins``) or ``<distribution> <version> (entry point)``."""
        return module_origin(getattr(self.get(name), "__module__", None) or "")

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def expand(self, spec: str | list[str]) -> list[str]:
        """Expand ``"all"``, comma lists and globs (``"cobra*"``) into registered names, keeping order, no repeats."""
        parts = spec if isinstance(spec, list) else [p.strip() for p in spec.split(",")]
        out: list[str] = []
        for part in filter(None, parts):
            if part == "all":
                matches = self.names()
            elif any(ch in part for ch in "*?["):
                matches = fnmatch.filter(self.names(), part)
                if not matches:
                    raise UsageError(f"no {self.kind} matches {part!r}; choose from: {', '.join(self.names())}")
            else:
                self.get(part)
                matches = [part]
            out.extend(m for m in matches if m not in out)
        if not out:
            raise UsageError(f"no {self.kind} given; choose from: {', '.join(self.names())}")
        return out


def expected_kind(default: Any) -> tuple[tuple[type, ...], str] | None:
    """The types an option whose default is ``default`` accepts, and their name; None when anything goes (a None or
    string default: string fields such as ``train_eps = "auto"`` also take numbers)."""
    if isinstance(default, bool):
        return (bool,), "true or false"
    if isinstance(default, int | float):
        return (int, float), "a number"
    if isinstance(default, list | tuple):
        return (list, tuple), "a list"
    return None


def field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else None


def build_config(config_cls: type, owner: str, options: dict[str, Any]) -> Any:
    """``config_cls(**options)`` for the registered ``owner``. An option the Config does not have, or a value of the
    wrong kind for its default (``epochs = "three"``), raises UsageError naming the option and what it expects."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise UsageError(f"{owner} has no option {', '.join(unknown)}; options: {', '.join(sorted(fields))}")
    for name, value in options.items():
        kind = expected_kind(field_default(fields[name]))
        wrong_bool = isinstance(value, bool) and kind is not None and bool not in kind[0]
        if kind is not None and value is not None and (not isinstance(value, kind[0]) or wrong_bool):
            raise UsageError(f"{owner} option {name} must be {kind[1]}, got {value!r}")
    return config_cls(**options)
