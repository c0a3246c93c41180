"""The benchmark grid, resolved once: frozen fit jobs (dataset, class, detector, seed) and their attack cells, each
carrying its resolved configs, code versions, key and seed key."""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from attacks import ATTACKS, create_attack
from bench.config import RunConfig, resolve_eps
from bench.data.base import DATASETS, kind_meta
from bench.errors import UsageError
from bench.hashing import stable_hash
from detectors import DETECTORS, create_detector
from detectors.base import split_options


def canonical(options: dict[str, Any]) -> str:
    """Options as canonical JSON: hashable, picklable, and the same text for equal options."""
    return json.dumps(options, sort_keys=True)


@dataclass(frozen=True)
class FitJob:
    """One detector fit: a (dataset, normal class, detector, seed) with its resolved loader and detector configs."""

    dataset: str
    normal_class: int
    detector: str
    seed: int
    preset: str
    #: Canonical JSON of the loader options and of the detector's whole resolved Config.
    data_options: str
    detector_config: str
    #: The detector's code version (``Detector.code_version``).
    code: str
    data_root: str | None = None

    @property
    def data_kwargs(self) -> dict[str, Any]:
        return json.loads(self.data_options)

    def build_detector(self):
        """A fresh, unfitted detector for this job."""
        return create_detector(self.detector, **json.loads(self.detector_config))

    @functools.cached_property
    def spec(self) -> dict[str, Any]:
        """What determines the fit (before the data is loaded): used in cell keys."""
        return {
            "dataset": self.dataset,
            "normal_class": self.normal_class,
            "data": self.data_kwargs,
            "detector": self.detector,
            "config": json.loads(self.detector_config),
            "code": self.code,
            "seed": self.seed,
        }

    @property
    def label(self) -> str:
        return f"{self.dataset}/{self.normal_class} {self.detector} seed {self.seed}"


@dataclass(frozen=True)
class EvalJob:
    """One attack cell of a fit job at one budget, with its resolved attack config, key and seed key."""

    fit: FitJob
    attack: str
    eps: float
    norm: str
    #: Canonical JSON of the attack's whole resolved Config (budget and side included).
    attack_config: str
    code: str
    #: Everything that determines the cell's numbers, code versions included.
    key: str
    #: The key without code versions: it seeds the attack, so that a code change which leaves the detector and the
    #: attack alone (a refactor, a docstring) does not move the random starts.
    seed_key: str

    def build_attack(self):
        return create_attack(self.attack, **json.loads(self.attack_config))


@dataclass
class FitGroup:
    """A fit job with the eval jobs that use its detector (run together, on one worker)."""

    fit: FitJob
    evals: list[EvalJob] = field(default_factory=list)


def cell_keys(fit_spec: dict[str, Any], attack: str, config: dict[str, Any], code: str) -> tuple[str, str]:
    """A cell's key and seed key (the key without the detector's and the attack's code versions)."""
    key = stable_hash({"fit": fit_spec, "attack": attack, "attack_config": config, "attack_code": code})
    fit = {name: value for name, value in fit_spec.items() if name != "code"}
    return key, stable_hash({"fit": fit, "attack": attack, "attack_config": config})


def resolve_classes(cfg: RunConfig, dataset: str) -> list[int]:
    """Class indices to use for ``dataset``: the CLI's/preset's list, or all when unset or "all"."""
    ds = DATASETS.get(dataset)(cfg.data_root)
    spec = cfg.classes.get(dataset, "all") if isinstance(cfg.classes, dict) else cfg.classes
    if spec in (None, "all", ["all"]):
        return list(range(len(ds.classes())))
    return [ds.resolve_class(c) for c in spec]


class Resolver:
    """Resolves a RunConfig's options into configs and code versions, once per detector kind and attack budget."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg

    def where(self, table: str, name: str) -> str:
        return f"preset {self.cfg.preset}: [{table}.{name}]"

    @functools.cache  # noqa: B019 - one resolver per grid; caches per detector and dataset kind
    def detector(self, name: str, low_res: bool) -> tuple[str, str]:
        """A detector's resolved Config (the preset's options, then the dataset kind) and its code version."""
        options = {**self.cfg.detector_options.get(name, {}), **split_options(name, {"low_res": low_res})}
        try:
            detector = create_detector(name, **options)
        except UsageError as error:
            raise UsageError(f"{self.where('detectors', name)}: {error}") from None
        return canonical(asdict(detector.config)), DETECTORS.get(name).code_version()

    @functools.cache  # noqa: B019
    def attack(self, name: str, eps: float, norm: str) -> tuple[dict[str, Any], str, str]:
        """An attack's resolved Config at one budget (as a dict and as canonical JSON) and its code version."""
        options = {**self.cfg.attack_options.get(ATTACKS.get(name).name, {}), "eps": eps, "norm": norm}
        try:
            config = asdict(create_attack(name, **options).config)
        except UsageError as error:
            raise UsageError(f"{self.where('attacks', ATTACKS.get(name).name)}: {error}") from None
        return config, canonical(config), ATTACKS.get(name).code_version()

    def fit(self, dataset: str, normal_class: int, detector: str, seed: int, low_res: bool) -> FitJob:
        config, code = self.detector(detector, low_res)
        data = canonical(self.cfg.data_options.get(dataset, {}))
        return FitJob(dataset, normal_class, detector, seed, self.cfg.preset, data, config, code, self.cfg.data_root)

    def cell(self, fit: FitJob, attack: str, eps: float) -> EvalJob:
        config, text, code = self.attack(attack, eps, self.cfg.norm)
        key, seed_key = cell_keys(fit.spec, attack, config, code)
        return EvalJob(fit, attack, eps, self.cfg.norm, text, code, key, seed_key)


def build_grid(cfg: RunConfig) -> list[FitGroup]:
    """The cross product datasets x classes x detectors x seeds, each with attacks x eps cells, resolved once.

    Each dataset's kind (``kind_meta``: ``low_res``) resolves the eps ``"auto"`` to the paper's budget for that
    kind and is passed to the detectors that take it (``split_options``), over the preset's options.
    """
    resolver = Resolver(cfg)
    groups = []
    for dataset in cfg.datasets:
        low_res = bool(kind_meta(dataset)["low_res"])
        budgets = resolve_eps(cfg.eps, low_res, cfg.norm)
        for normal_class in resolve_classes(cfg, dataset):
            for detector in cfg.detectors:
                for seed in cfg.seeds:
                    fit = resolver.fit(dataset, normal_class, detector, seed, low_res)
                    evals = [resolver.cell(fit, attack, eps) for attack in cfg.attacks for eps in budgets]
                    groups.append(FitGroup(fit, evals))
    return groups
