"""Paper metadata: each detector's citation and the clean / robust AUROC that COBRA's tables (ICLR 2025) report.

Detector classes declare ``citation``, ``adversarially_trained`` and ``paper_results`` (``detectors.base``);
``detectors.base.paper_result`` looks one up by registered name. AUROCs are in percent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Citation:
    """The paper a detector implements."""

    title: str
    venue: str
    year: int
    link: str
    authors: str = ""


@dataclass(frozen=True)
class PaperResult:
    """AUROC (%) a paper reports for a detector on one dataset: clean and under ``attack`` at budget ``eps``."""

    clean: float
    robust: float | None
    attack: str
    eps: str
    source: str


COBRA_CITATION = Citation(
    title="Mitigating Spurious Negative Pairs for Robust Industrial Anomaly Detection",
    venue="ICLR",
    year=2025,
    link="https://arxiv.org/abs/2501.15434",
)

#: The attack of COBRA's result tables: L-inf PGD with 1000 steps, both normals and anomalies perturbed.
PAPER_ATTACK = "PGD-1000"
OTHER_DATASETS_TABLE = "COBRA (ICLR 2025) Table: other datasets"
MVTEC_TABLE = "COBRA (ICLR 2025) Table: MVTec AD (average of the 15 categories)"

#: Our dataset name -> (the paper's name, its eps, the table it is read from). The evaluation eps is the training
#: eps (released train.py): 4/255 on low-res sets, 2/255 on high-res/industrial ones.
PAPER_DATASETS: dict[str, tuple[str, str, str]] = {
    "cifar10": ("CIFAR-10", "4/255", OTHER_DATASETS_TABLE),
    "cifar100": ("CIFAR-100 (20 superclasses)", "4/255", OTHER_DATASETS_TABLE),
    "mnist": ("MNIST", "4/255", OTHER_DATASETS_TABLE),
    "fmnist": ("FMNIST", "4/255", OTHER_DATASETS_TABLE),
    "svhn": ("SVHN", "4/255", OTHER_DATASETS_TABLE),
    "visa": ("VisA", "2/255", OTHER_DATASETS_TABLE),
    "mvtec": ("MVTec AD", "2/255", MVTEC_TABLE),
}

#: The protocol of COBRA's tables per dataset kind: image size (px) and channels (grey sets repeated to RGB);
#: every class of a dataset is the normal class in turn, on the full train and test sets.
PAPER_IMAGE_SIZE = {True: 32, False: 224}
PAPER_CHANNELS = 3

#: Training settings the COBRA paper / its released code use, per detector, as Config field -> value (only those
#: known: cobra.md section 1). ``epochs`` 100 is what the poster's training curves show (the code's default is
#: 1000); ``train_eps`` "auto" is the dataset kind's eps. The baselines' columns come from each baseline's own
#: code, whose settings COBRA's paper does not give, so they are absent here.
PAPER_SETTINGS: dict[str, dict[str, Any]] = {
    "cobra": {
        "epochs": 100,
        "batch_size": 64,
        "lr": 0.1,
        "optimizer": "lars",
        "warmup_epochs": 10,
        "width": 64,
        "blocks": [2, 2, 2, 2],
        "train_eps": "auto",
        "attack_steps": 10,
        "score_samples": 10,
        "train_per_epoch": "auto",
        "max_train": None,
    },
}


def cobra_results(**cells: tuple[float, float | None]) -> dict[str, PaperResult]:
    """``paper_results`` from COBRA's tables: ``dataset=(clean, robust)`` in percent, keyed by our dataset names;
    attack PGD-1000 at the dataset kind's eps (``PAPER_DATASETS``)."""
    results = {}
    for dataset, (clean, robust) in cells.items():
        if dataset not in PAPER_DATASETS:
            raise ValueError(f"COBRA's tables have no dataset {dataset!r}; known: {', '.join(PAPER_DATASETS)}")
        _, eps, source = PAPER_DATASETS[dataset]
        results[dataset] = PaperResult(clean=clean, robust=robust, attack=PAPER_ATTACK, eps=eps, source=source)
    return results
