"""Datasets under the one-class protocol: a registry of loaders, each in its own module."""

import importlib
import pkgutil

from bench.data.base import (
    DATASETS,
    Dataset,
    OneClassSplit,
    kind_meta,
    list_datasets,
    load_split,
    register_dataset,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in {"base"} and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["DATASETS", "Dataset", "OneClassSplit", "kind_meta", "list_datasets", "load_split", "register_dataset"]
