"""Backbones shared by detectors: DeepSVDD-style conv encoders/decoders and ResNet-18 (CIFAR and ImageNet stems).

Every network takes images in [0, 1] and normalises inside (``(x - 0.5) / 0.5``, as the released COBRA code),
so attacks always work in pixel space.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn


class Normalize(nn.Module):
    """(x - 0.5) / 0.5: maps [0, 1] pixels to [-1, 1]."""

    def forward(self, x: Tensor) -> Tensor:
        return (x - 0.5) / 0.5


class ConvEncoder(nn.Module):
    """LeNet-style encoder (Ruff et al. 2018): conv-BN-LeakyReLU-pool blocks, then a linear map to ``rep_dim``.

    Args:
        in_channels: image channels.
        image_size: square input size (any size >= 4).
        rep_dim: output dimension.
        widths: channels of each conv block; each block halves the spatial size while it is >= 4.
        bias: use bias terms (DeepSVDD sets False to avoid the trivial constant solution).
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        rep_dim: int = 32,
        widths: tuple[int, ...] = (16, 32),
        bias: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [Normalize()]
        channels, size = in_channels, image_size
        for width in widths:
            layers += [
                nn.Conv2d(channels, width, 3, padding=1, bias=bias),
                nn.BatchNorm2d(width, eps=1e-4, affine=bias),
                nn.LeakyReLU(0.1),
            ]
            if size >= 4:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            channels = width
        self.body = nn.Sequential(*layers)
        self.out_shape = (channels, size, size)
        self.fc = nn.Linear(channels * size * size, rep_dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.body(x).flatten(1))


class ConvDecoder(nn.Module):
    """Mirror of ConvEncoder: linear map back to the encoder's feature map, then upsampling conv blocks."""

    def __init__(
        self,
        encoder: ConvEncoder,
        out_channels: int,
        image_size: int,
        widths: tuple[int, ...] = (16, 32),
        rep_dim: int = 32,
    ) -> None:
        super().__init__()
        self.in_shape = encoder.out_shape
        c, s, _ = self.in_shape
        self.fc = nn.Linear(rep_dim, c * s * s)
        layers: list[nn.Module] = []
        channels = c
        for width in reversed(widths):
            layers += [
                nn.Upsample(scale_factor=2),
                nn.Conv2d(channels, width, 3, padding=1),
                nn.BatchNorm2d(width, eps=1e-4),
                nn.LeakyReLU(0.1),
            ]
            channels = width
        layers += [nn.Conv2d(channels, out_channels, 3, padding=1)]
        self.body = nn.Sequential(*layers)
        self.image_size = image_size

    def forward(self, z: Tensor) -> Tensor:
        h = self.fc(z).view(-1, *self.in_shape)
        out = self.body(h)
        if out.shape[-1] != self.image_size:
            out = F.interpolate(out, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return out.sigmoid()


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs with a shortcut)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def cifar_stem(in_channels: int, width: int) -> list[nn.Module]:
    """3x3 conv, no max-pool (the released ``models/resnet.py``, low-res)."""
    return [nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]


def imagenet_stem(in_channels: int, width: int) -> list[nn.Module]:
    """7x7/2 conv + 3x3/2 max-pool (the released ``models/resnet_imagenet.py``, high-res)."""
    return [nn.Conv2d(in_channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]


def kaiming_fan_out(net: nn.Module) -> None:
    """The released ImageNet ResNet's initialisation: every conv kaiming-normal (fan_out, relu), BatchNorm 1 / 0."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


#: ResNet stems: the layers, and the initialisation the released model of that stem applies (None: PyTorch's
#: default, as the released CIFAR ResNet).
STEMS: dict[str, tuple[Callable[[int, int], list[nn.Module]], Callable[[nn.Module], None] | None]] = {
    "cifar": (cifar_stem, None),
    "imagenet": (imagenet_stem, kaiming_fan_out),
}


class ResNet18(nn.Module):
    """ResNet-18 feature extractor returning the pooled penultimate features [N, 8 * width].

    Args:
        in_channels: image channels.
        stem: ``"cifar"`` (3x3 conv, no max-pool; low-res) or ``"imagenet"`` (7x7/2 conv + max-pool; high-res,
            initialised as the released ImageNet ResNet: ``kaiming_fan_out``).
        width: channels of the first stage (64 in the paper; 16 gives the narrow CPU variant).
        blocks: blocks per stage ((2, 2, 2, 2) is ResNet-18; (1, 1, 1, 1) a lighter CPU variant).
    """

    def __init__(
        self,
        in_channels: int = 3,
        stem: str = "cifar",
        width: int = 64,
        blocks: tuple[int, int, int, int] = (2, 2, 2, 2),
    ) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown ResNet stem {stem!r}; choose from: {', '.join(STEMS)}")
        build_stem, initialise = STEMS[stem]
        self.stem = nn.Sequential(Normalize(), *build_stem(in_channels, width))
        stages, planes = [], width
        for i, n in enumerate(blocks):
            stride = 1 if i == 0 else 2
            out = width * 2**i
            stages.append(
                nn.Sequential(*[BasicBlock(planes if j == 0 else out, out, stride if j == 0 else 1) for j in range(n)])
            )
            planes = out
        self.stages = nn.Sequential(*stages)
        self.out_dim = planes
        if initialise is not None:
            initialise(self)

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(self.stages(self.stem(x)), 1).flatten(1)
