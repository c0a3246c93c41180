"""PatchCore: memory bank of locally aggregated mid-level patch features; score = max patch distance to the bank."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.progress import NULL_PROGRESS, Progress
from detectors.base import Detector, register_detector
from detectors.common import (
    PretrainedConfig,
    check_backbone_available,
    embed,
    knn_distance,
    load_backbone,
    resolve_generator,
)
from detectors.papers import Citation, PaperResult, cobra_results


@dataclass
class PatchCoreConfig(PretrainedConfig):
    """PatchCore options (Roth et al. use stages 2+3, a 3x3 neighbourhood and a 1-10% coreset)."""

    stages: tuple[int, ...] = (2, 3)
    neighbourhood: int = 3
    coreset_ratio: float = 0.1
    #: Dimension of the seeded random projection used only to pick the coreset (as the paper's sampler).
    projection_dim: int = 128
    bank_chunk: int = 4096

    def __post_init__(self) -> None:
        self.stages = tuple(self.stages)


def greedy_coreset(features: Tensor, size: int, generator: torch.Generator, projection_dim: int = 128) -> Tensor:
    """Indices of a greedy k-centre coreset of ``size`` rows of ``features`` [M, D].

    Distances are computed on a seeded Gaussian random projection to ``projection_dim`` dims (Johnson-
    Lindenstrauss, as in PatchCore's sampler); the first centre is drawn from ``generator``; each next centre is
    the row farthest from the chosen ones (so the coreset minimises the covering radius greedily).
    """
    count = features.shape[0]
    size = max(1, min(size, count))
    if features.shape[1] > projection_dim:
        matrix = torch.randn(features.shape[1], projection_dim, generator=generator) / math.sqrt(projection_dim)
        features = features @ matrix.to(features.device, features.dtype)
    first = int(torch.randint(count, (1,), generator=generator).item())
    chosen = [first]
    nearest = (features - features[first]).pow(2).sum(1)
    for _ in range(size - 1):
        index = int(nearest.argmax().item())
        chosen.append(index)
        nearest = torch.minimum(nearest, (features - features[index]).pow(2).sum(1))
    return torch.tensor(chosen, dtype=torch.long)


@register_detector("patchcore")
class PatchCore(Detector):
    """PatchCore (Roth et al., CVPR 2022): max over patches of the distance to a coreset of normal patch features.

    Patch features: the pretrained backbone's mid-level stage maps (default stages 2 and 3), each averaged over
    a 3x3 neighbourhood, the deeper one upsampled to the shallower resolution, concatenated per location.
    The memory bank is a seeded greedy coreset of all training patches. Image score = max over the image's
    patches of the squared L2 distance to the nearest bank patch (same ranking as the L2 distance; the paper's
    neighbourhood re-weighting of the max patch is omitted).
    """

    Config = PatchCoreConfig
    tiny_config: ClassVar[dict[str, Any]] = {"backbone_size": 32, "coreset_ratio": 0.5}
    citation: ClassVar[Citation | None] = Citation(
        title="Towards Total Recall in Industrial Anomaly Detection",
        venue="CVPR",
        year=2022,
        link="https://arxiv.org/abs/2106.08265",
        authors="Roth et al.",
    )
    paper_results: ClassVar[dict[str, PaperResult]] = cobra_results(
        cifar10=(68.3, 3.9),
        cifar100=(66.8, 4.3),
        mnist=(83.2, 2.6),
        fmnist=(77.4, 5.5),
        svhn=(52.1, 2.1),
        visa=(95.1, 2.7),
        mvtec=(99.1, 7.2),
    )

    def check_requirements(self) -> None:
        check_backbone_available(self.config)

    def build(self, input_shape: tuple[int, int, int]) -> None:
        self.backbone = load_backbone(self.config)
        self.register_buffer("feature_bank", torch.zeros(0, 0))

    def patch_features(self, x: Tensor) -> Tensor:
        """Locally aggregated patch features [N, P, D] (P locations at the shallowest selected stage)."""
        pad = self.config.neighbourhood // 2
        maps = [
            F.avg_pool2d(m, self.config.neighbourhood, 1, pad) for m in self.backbone.stage_maps(x, self.config.stages)
        ]
        size = maps[0].shape[-2:]
        maps = [
            m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear", align_corners=False)
            for m in maps
        ]
        return torch.cat(maps, dim=1).flatten(2).transpose(1, 2)

    def patch_scores(self, x: Tensor) -> Tensor:
        """Squared distance of each patch to its nearest bank patch [N, P]."""
        patches = self.patch_features(x)
        n, p, d = patches.shape
        return knn_distance(patches.reshape(n * p, d), self.feature_bank, 1, self.config.bank_chunk).view(n, p)

    def score(self, x: Tensor) -> Tensor:
        return self.patch_scores(x).amax(1)

    def fit(
        self,
        train: Tensor,
        *,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,
        progress: Progress = NULL_PROGRESS,
    ) -> PatchCore:
        generator = resolve_generator(generator)
        self.setup(tuple(train.shape[1:]))
        self.to(device).eval()
        chunks = list(train.split(self.config.batch_size))
        patches = torch.cat(
            [
                embed(self.patch_features, c, self.config.batch_size, device)
                for c in progress.track(chunks, f"fit {self.name}")
            ]
        ).flatten(0, 1)
        size = math.ceil(self.config.coreset_ratio * patches.shape[0])
        self.feature_bank = patches[greedy_coreset(patches, size, generator, self.config.projection_dim).to(device)]
        return self
