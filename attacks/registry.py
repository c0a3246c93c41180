"""The attack registry: names (with the one-sided ``-in`` / ``-out`` variants), ``register_attack`` and the
``create_attack`` factory."""

from __future__ import annotations

import fnmatch
from typing import Any

from attacks.base import Attack
from bench.errors import UsageError
from bench.registry import Registry, build_config

#: Name suffixes selecting a one-sided variant of any attack: ``pgd-in`` attacks normals only, ``pgd-out`` anomalies.
SIDE_SUFFIXES = {"-in": "in", "-out": "out"}


def split_side(name: str) -> tuple[str, str]:
    """``"pgd-in"`` -> ``("pgd", "in")``; a name without a side suffix -> ``(name, "both")``."""
    for suffix, side in SIDE_SUFFIXES.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], side
    return name, "both"


class AttackRegistry(Registry):
    """The attack registry: also resolves one-sided names (``<attack>-in`` / ``<attack>-out``) to their attack.

    ``names()`` and ``"all"`` list the registered attacks only (``"all"`` leaves out the cross-check backends, which
    need optional libraries); suffixed names are accepted wherever a name is.
    """

    def register(self, name: str, description: str | None = None):
        """As Registry.register, refusing a name that one-sided naming already gives another attack (``pgd-in`` while
        ``pgd`` is registered) or that would take such names over (``pgd`` while ``pgd-in`` is registered)."""
        base, side = split_side(name)
        taken = (side != "both" and base in self._entries) or any(
            f"{name}{suffix}" in self._entries for suffix in SIDE_SUFFIXES
        )
        if taken:
            raise ValueError(f"attack {name!r} clashes with the one-sided names of a registered attack")
        return super().register(name, description)

    def _base_name(self, name: str) -> str:
        base, side = split_side(name)
        return base if side != "both" and base in self._entries and name not in self._entries else name

    def get(self, name: str) -> type[Attack]:
        """The class of attack ``name`` (a one-sided name gives its two-sided attack's class)."""
        return super().get(self._base_name(name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(self._base_name(name))

    def expand(self, spec: str | list[str]) -> list[str]:
        """As Registry.expand, also accepting one-sided names; a glob matching no attack may match them (``*-in``)."""
        parts = spec if isinstance(spec, list) else [p.strip() for p in spec.split(",")]
        variants = [f"{n}{suffix}" for n in self.names() for suffix in SIDE_SUFFIXES]
        out: list[str] = []
        for part in filter(None, parts):
            if part == "all":
                matches = [n for n in self.names() if not self._entries[n].cross_check]
            elif part in self:
                matches = [part]
            elif any(ch in part for ch in "*?[") and not fnmatch.filter(self.names(), part):
                matches = fnmatch.filter(variants, part)
                if not matches:
                    raise UsageError(f"no attack matches {part!r}; choose from: {', '.join(self.names())}")
            else:
                matches = super().expand([part])
            out.extend(m for m in matches if m not in out)
        if not out:
            raise UsageError(f"no attack given; choose from: {', '.join(self.names())}")
        return out

    def describe(self) -> dict[str, str]:
        """Name -> one-line description, noting the one-sided variants compactly."""
        return {name: f"{text} [also {name}-in, {name}-out]" for name, text in super().describe().items()}


ATTACKS: AttackRegistry = AttackRegistry("attack")


def register_attack(name: str, description: str | None = None):
    """Class decorator: register an Attack subclass under ``name`` and set its ``name`` attribute."""

    def decorator(cls: type[Attack]) -> type[Attack]:
        cls.name = name
        return ATTACKS.register(name, description)(cls)

    return decorator


def create_attack(name: str, **options: Any) -> Attack:
    """Instantiate a registered attack from its Config's fields, e.g. ``create_attack("apgd", eps=4/255, steps=100)``.

    A one-sided name (``"pgd-in"``, ``"pgd-out"``) sets ``side``. Presets are read by ``bench.config``, which passes
    their ``[attacks.<name>]`` section here as keyword arguments.
    """
    cls = ATTACKS.get(name)
    base, side = split_side(name)
    if side != "both" and base == cls.name:
        if options.get("side", side) != side:
            raise UsageError(f"attack {name!r} already fixes side={side!r}; got side={options['side']!r}")
        options["side"] = side
    return cls(build_config(cls.Config, cls.name, options))


def list_attacks() -> dict[str, str]:
    """Registered attack names with one-line descriptions (each also runs one-sided as ``<name>-in`` / ``-out``)."""
    return ATTACKS.describe()
