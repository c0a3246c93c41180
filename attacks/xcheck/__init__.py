"""Cross-check backends: reference libraries (torchattacks, the AutoAttack package) wrapped as attacks on a
detector's score, registered under ``ta-*`` / ``aa-*`` with the ``cross_check`` trait (run by name, not in ``all``)."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "common":
        importlib.import_module(f"{__name__}.{_module.name}")
