"""Detectors: one file per detector, each registered with ``@register_detector``."""

import importlib
import pkgutil

from bench.plugins import DETECTOR_GROUP, load_entry_points
from detectors.base import DETECTORS, Detector, DetectorConfig, create_detector, list_detectors, register_detector

_SUPPORT_MODULES = {"base", "nets", "common", "augment", "contrastive", "adversarial", "papers"}

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _SUPPORT_MODULES and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["DETECTORS", "Detector", "DetectorConfig", "create_detector", "list_detectors", "register_detector"]

load_entry_points(DETECTOR_GROUP)  # detectors of installed distributions (their entry points)
