"""Attacks on anomaly scores: one file per attack, each registered with ``@register_attack``."""

import importlib
import pkgutil

from attacks.base import Attack, AttackConfig
from attacks.registry import ATTACKS, create_attack, list_attacks, register_attack
from bench.plugins import ATTACK_GROUP, load_entry_points

_SUPPORT_MODULES = {"base", "common", "registry"}

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _SUPPORT_MODULES and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ATTACKS", "Attack", "AttackConfig", "create_attack", "list_attacks", "register_attack"]

load_entry_points(ATTACK_GROUP)  # attacks of installed distributions (their entry points)
