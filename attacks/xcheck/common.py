"""Support for the cross-check backends: lazy library imports, the two-logit wrapper, library RNG isolation.

The libraries attack classifiers, so a detector is wrapped as a two-logit model whose true class is 0 for every
sample: logits [C - z, z] with z = sign * (s - c) / spread (c, spread: median and IQR of the batch's clean
scores, as APGD's losses). Cross-entropy on class 0 is softplus(2z - C) and the margin is C - 2z: both push the
signed score up. ``C`` is 0 for gradient attacks; Square gets a large C so its margin never reaches 0 and it
never stops improving a sample (the reference stops once a sample is "misclassified"); its logits are float64
so the offset costs no precision (float32 otherwise: torchattacks' APGD requires it).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from attacks.base import Attack
from attacks.common import centre_and_spread
from bench.errors import UsageError


class CrossCheckAttack(Attack):
    """Base of the reference-library wrappers: the ``cross_check`` trait (run by name, left out of ``all``: they
    need the optional xcheck libraries)."""

    cross_check = True


#: Margin offset for Square: far above any centred, spread-scaled score.
SQUARE_OFFSET = 1e6
INSTALL_HINT = "pip install -e .[xcheck]"


def import_library(*names: str) -> ModuleType:
    """The first importable module of ``names``; UsageError with the install hint when none is."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise UsageError(f"cross-check backend needs {' or '.join(names)}: {INSTALL_HINT}")


def autoattack_module(submodule: str) -> ModuleType:
    """``<package>.<submodule>`` of the reference AutoAttack (``autoattack``) or else of ``pyautoattack``."""
    return import_library(f"autoattack.{submodule}", f"pyautoattack.{submodule}")


class TwoLogitModel(nn.Module):
    """A detector seen as a classifier whose class-0 loss rises with the signed score (see the module docstring).

    Built per batch (centred on that batch's clean scores); counts its evaluations in ``attack.passes``.
    """

    def __init__(self, attack: Attack, detector: Any, x: Tensor, sign: Tensor, offset: float = 0.0) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.empty(0, device=x.device), requires_grad=False)  # libraries read the device
        self.detector = detector
        self.attack, self.sign, self.offset = attack, sign, offset
        self.centre, self.spread = centre_and_spread(sign * attack.evaluate(detector, x, sign))
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] != self.sign.shape[0]:
            raise RuntimeError("the library evaluated a subset of the batch; the two-logit wrapper needs all samples")
        self.attack.passes.forward += x.shape[0]
        if torch.is_grad_enabled() and x.requires_grad:
            self.attack.passes.backward += x.shape[0]
        z = self.sign * (self.detector.score(x) - self.centre) / self.spread
        if self.offset:
            z = z.double()  # the offset would swamp float32 differences
        return torch.stack([self.offset - z, z], dim=1)


@contextlib.contextmanager
def library_rng(generator: torch.Generator | None, device: torch.device) -> Iterator[int]:
    """Run a library that seeds and draws from the global RNG on a forked RNG seeded from ``generator``.

    The global RNG state is restored afterwards; yields the seed (also to pass as the library's ``seed``).
    """
    source = generator.device if generator is not None else "cpu"
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=source))
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield seed


def class_zero(x: Tensor) -> Tensor:
    """Labels: class 0 for every sample (the wrapper puts the signed objective on class 1)."""
    return torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
