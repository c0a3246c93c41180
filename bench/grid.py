"""The benchmark grid: fit jobs (dataset, class, detector, seed) and their eval jobs (attack, eps)."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

from attacks import create_attack
from bench.config import RunConfig, resolve_eps
from bench.data.base import DATASETS, kind_meta
from bench.hashing import stable_hash
from detectors import create_detector
from detectors.base import split_options


@dataclass(frozen=True)
class FitJob:
    """One detector fit: a (dataset, normal class, detector, seed) with resolved options."""

    dataset: str
    normal_class: int
    detector: str
    seed: int
    preset: str
    data_options: tuple = ()
    detector_options: tuple = ()
    data_root: str | None = None

    @property
    def data_kwargs(self) -> dict[str, Any]:
        return dict(self.data_options)

    @property
    def detector_kwargs(self) -> dict[str, Any]:
        return dict(self.detector_options)

    def build_detector(self):
        """A fresh, unfitted detector for this job."""
        return create_detector(self.detector, preset=self.preset, **self.detector_kwargs)

    @functools.cached_property
    def spec(self) -> dict[str, Any]:
        """What determines the fit (before the data is loaded): used in record keys."""
        detector = self.build_detector()
        return {
            "dataset": self.dataset,
            "normal_class": self.normal_class,
            "data": self.data_kwargs,
            "detector": self.detector,
            "config": dataclasses.asdict(detector.config),
            "code": detector.code_version(),
            "seed": self.seed,
        }

    @property
    def label(self) -> str:
        return f"{self.dataset}/{self.normal_class} {self.detector} seed {self.seed}"


@dataclass(frozen=True)
class EvalJob:
    """One attack evaluation of a fit job at one budget."""

    fit: FitJob
    attack: str
    eps: float
    norm: str
    attack_options: tuple = ()

    def build_attack(self):
        return create_attack(
            self.attack, eps=self.eps, norm=self.norm, preset=self.fit.preset, **dict(self.attack_options)
        )

    def key(self, fit_spec: dict[str, Any] | None = None) -> str:
        """The cell's key: everything that determines its numbers (configs and code versions included)."""
        attack = self.build_attack()
        return stable_hash(
            {
                "fit": fit_spec if fit_spec is not None else self.fit.spec,
                "attack": self.attack,
                "attack_config": dataclasses.asdict(attack.config),
                "attack_code": attack.code_version(),
            }
        )

    def seed_key(self) -> str:
        """What seeds the cell's attack: its key without the code versions, so that a code change which leaves
        the detector and attack alone (a refactor, a docstring) does not move the random starts."""
        fit = {name: value for name, value in self.fit.spec.items() if name != "code"}
        attack = dataclasses.asdict(self.build_attack().config)
        return stable_hash({"fit": fit, "attack": self.attack, "attack_config": attack})


@dataclass
class FitGroup:
    """A fit job with the eval jobs that use its detector (run together, on one worker)."""

    fit: FitJob
    evals: list[EvalJob] = field(default_factory=list)


def freeze(options: dict[str, Any]) -> tuple:
    """Hashable, order-independent view of an options dict (lists become tuples)."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))


def resolve_classes(cfg: RunConfig, dataset: str) -> list[int]:
    """Class indices to use for ``dataset``: the CLI's/preset's list, or all when unset or "all"."""
    ds = DATASETS.get(dataset)(cfg.data_root)
    spec = cfg.classes.get(dataset, "all") if isinstance(cfg.classes, dict) else cfg.classes
    if spec in (None, "all"):
        return list(range(len(ds.classes())))
    return [ds.resolve_class(c) for c in spec]


def build_grid(cfg: RunConfig) -> list[FitGroup]:
    """The cross product datasets x classes x detectors x seeds, each with attacks x eps eval jobs.

    Each dataset's kind (``kind_meta``: ``low_res``) resolves the eps ``"auto"`` to the paper's budget for that
    kind and is passed to the detectors that take it (``split_options``), whose own options still override it.
    """
    groups = []
    for dataset in cfg.datasets:
        data_options = freeze(cfg.data_options.get(dataset, {}))
        meta = kind_meta(dataset)
        budgets = resolve_eps(cfg.eps, meta["low_res"], cfg.norm)
        for normal_class in resolve_classes(cfg, dataset):
            for detector in cfg.detectors:
                kind_options = freeze(split_options(detector, meta))
                for seed in cfg.seeds:
                    fit = FitJob(
                        dataset, normal_class, detector, seed, cfg.preset, data_options, kind_options, cfg.data_root
                    )
                    evals = [EvalJob(fit, attack, eps, cfg.norm) for attack in cfg.attacks for eps in budgets]
                    groups.append(FitGroup(fit, evals))
    return groups
