"""The detector contract: fit on normal images, score any image (higher = more anomalous), differentiably."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bench.hashing import code_version
from bench.progress import NULL_PROGRESS, Progress
from bench.registry import Registry, build_config
from detectors.papers import Citation, PaperResult

DETECTORS: Registry[type[Detector]] = Registry("detector")
#: Split metadata (``OneClassSplit.meta``) that a detector takes as a config field of the same name when its
#: Config declares one: the dataset's kind, which picks pseudo-anomalies, crop and training eps (CSI, COBRA).
SPLIT_FIELDS = ("low_res",)


def register_detector(name: str, description: str | None = None):
    """Class decorator: register a Detector subclass under ``name`` and set its ``name`` attribute."""

    def decorator(cls: type[Detector]) -> type[Detector]:
        cls.name = name
        return DETECTORS.register(name, description)(cls)

    return decorator


@dataclass
class DetectorConfig:
    """Fields every detector understands; subclasses add their own."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    score_batch_size: int = 256
    train_seed: int = 0  # mixed into the run seed for the fit's generator (change it to retrain differently)


class Detector(nn.Module, ABC):
    """Base class of every detector.

    Subclasses set ``Config`` (a dataclass), implement ``build`` (create the networks for an input shape),
    ``fit`` and ``score``. Feature banks and other fitted tensors are registered as buffers, so
    ``state_dict`` holds everything needed to score again without refitting.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = DetectorConfig
    stochastic: ClassVar[bool] = False
    #: Backbone image passes per scored image (an ensemble score over T augmentations x K shifts uses T*K).
    passes_per_score: int = 1
    #: Config overrides that make a fit take seconds on 8x8 digits (2 CPU cores): what the shared conformance suite
    #: (tests/unit/test_detector_conformance.py) builds this detector with, declared beside its code.
    tiny_config: ClassVar[dict[str, Any]] = {}
    #: The paper this detector implements (``detectors.papers``); None for plugins and toys that declare none.
    citation: ClassVar[Citation | None] = None
    #: Whether training is adversarial (the robust methods COBRA's tables mark with *).
    adversarially_trained: ClassVar[bool] = False
    #: Clean / robust AUROC (%) the paper's tables report, keyed by our dataset names (``fmnist``, ``mvtec``, ...).
    paper_results: ClassVar[dict[str, PaperResult]] = {}

    def __init__(self, config: Any = None) -> None:
        super().__init__()
        self.config = config if config is not None else self.Config()
        self.input_shape: tuple[int, int, int] | None = None

    @abstractmethod
    def build(self, input_shape: tuple[int, int, int]) -> None:
        """Create the networks for images of shape (C, H, W)."""

    def setup(self, input_shape: tuple[int, int, int]) -> None:
        """Record the input shape and build; called by ``fit`` and before loading a checkpoint."""
        self.input_shape = tuple(int(s) for s in input_shape)  # type: ignore[assignment]
        self.build(self.input_shape)

    @abstractmethod
    def fit(
        self,
        train: Tensor,
        *,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,
        progress: Progress = NULL_PROGRESS,
    ) -> Detector:
        """Fit on normal images ``train`` [N, C, H, W] in [0, 1]; returns self (in eval mode, on ``device``)."""

    @abstractmethod
    def score(self, x: Tensor) -> Tensor:
        """Anomaly scores [N], higher = more anomalous; differentiable w.r.t. ``x``; no ``no_grad`` inside."""

    def check_requirements(self) -> None:
        """Raise UsageError when something this detector needs is missing here (weights, an optional package).

        Called before a grid runs: ``--detectors all`` leaves such detectors out with a note, a detector named
        explicitly exits 2 with the message.
        """

    def cost_network(self) -> nn.Module | None:
        """The network one backbone pass runs through (for cost estimates: ``bench.plan``); None if not modelled."""
        return None

    def fit_passes(self, n_train: int) -> tuple[float, float] | None:
        """Backbone image passes of a fit on ``n_train`` images (after ``setup``): (forward+backward, forward only);
        None when not modelled."""
        return None

    def features(self, x: Tensor) -> Tensor | None:
        """Feature vectors [N, D] the score is computed from, for feature-space attacks; None if not exposed."""
        return None

    @property
    def device(self) -> torch.device:
        """The device the detector's tensors live on."""
        for tensor in list(self.parameters()) + list(self.buffers()):
            return tensor.device
        return torch.device("cpu")

    @torch.no_grad()
    def score_batched(self, x: Tensor) -> Tensor:
        """Scores of many images without gradients, in batches of ``config.score_batch_size``; on the CPU."""
        out = [self.score(chunk.to(self.device)).detach().cpu() for chunk in x.split(self.config.score_batch_size)]
        return torch.cat(out) if out else torch.empty(0)

    def load_state_dict(self, state_dict: dict[str, Tensor], strict: bool = True, assign: bool = False):
        """Load a checkpoint, resizing buffers whose size is only known after fitting (feature banks)."""
        buffers = dict(self.named_buffers())
        for key, value in state_dict.items():
            if key in buffers and buffers[key].shape != value.shape:
                module_name, _, attr = key.rpartition(".")
                module = self.get_submodule(module_name) if module_name else self
                module._buffers[attr] = torch.empty_like(value, device=buffers[key].device)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @classmethod
    def code_version(cls) -> str:
        """Hash of the source this detector's numbers depend on: the modules of its detector class hierarchy (a
        subclass inherits their fit) and every detectors module they use (nets, augmentations, shared helpers)."""
        return code_version(cls, "detectors")


def split_options(name: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The entries of split metadata ``meta`` that detector ``name`` takes as config fields (``SPLIT_FIELDS``)."""
    known = {f.name for f in dataclasses.fields(DETECTORS.get(name).Config)}
    return {key: meta[key] for key in SPLIT_FIELDS if key in meta and key in known}


def create_detector(name: str, **options: Any) -> Detector:
    """Instantiate a registered detector from its Config's fields (``create_detector("cobra", epochs=3)``).

    Presets are read by ``bench.config``, which passes a preset's ``[detectors.<name>]`` section (and the dataset
    kind, ``split_options``) here as keyword arguments; unset fields keep the Config's defaults.
    """
    cls = DETECTORS.get(name)
    return cls(build_config(cls.Config, cls.name, options))


def paper_result(name: str, dataset: str) -> PaperResult | None:
    """What the paper of registered detector ``name`` reports on ``dataset``; None when unknown (or no such detector,
    e.g. a plugin or a test toy that declares none)."""
    return DETECTORS.get(name).paper_results.get(dataset) if name in DETECTORS else None


def list_detectors() -> dict[str, str]:
    """Registered detector names with one-line descriptions."""
    return DETECTORS.describe()
