"""Small detectors for the executor tests, registered at import (workers import this module by name).

``exec-toy`` is a real (tiny) DeepSVDD-style conv detector, so thread-count effects on floating point are real;
the others misbehave on digits class 1: NaN scores, a killed worker, or out-of-memory on large gradient batches.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from bench.data import load_split
from detectors import Detector, DetectorConfig, register_detector
from detectors.common import fit_minibatches, resolve_generator, seeded_init
from detectors.nets import ConvEncoder

BAD_CLASS = 1  # the digits class the misbehaving toys fail on
OOM_BATCH = 32  # exec-toy-oom "runs out of memory" on gradient batches larger than this


@dataclass
class ToyConfig(DetectorConfig):
    epochs: int = 3
    fit_delay: float = 0.0  # extra seconds per fit (to make a grid slow enough to interrupt)


def is_bad_class(train: Tensor) -> bool:
    """Whether ``train`` is digits class BAD_CLASS (the digits train partition does not depend on the seed)."""
    reference = load_split("digits", BAD_CLASS).train
    return train.shape == reference.shape and bool(torch.equal(train, reference))


@register_detector("exec-toy")
class ExecToy(Detector):
    """Tiny conv encoder trained to map normals near a centre; score = squared distance to it."""

    Config = ToyConfig

    def build(self, input_shape: tuple[int, int, int]) -> None:
        self.net = ConvEncoder(input_shape[0], input_shape[1], rep_dim=4, widths=(4,), bias=False)
        self.register_buffer("center", torch.zeros(4))
        self.register_buffer("bad", torch.zeros(()))

    def fit(self, train, *, device="cpu", generator=None, progress=None):
        generator = resolve_generator(generator)
        with seeded_init(generator):
            self.setup(tuple(train.shape[1:]))
        self.to(device)
        with torch.no_grad():
            self.center.copy_(self.net(train.to(device)).mean(0))
        loss = lambda x: (self.net(x) - self.center).pow(2).sum(1).mean()  # noqa: E731
        fit_minibatches(loss, self.net.parameters(), train, config=self.config, device=device, generator=generator)
        time.sleep(self.config.fit_delay)
        self.bad.fill_(float(is_bad_class(train)))
        self.misbehave_after_fit()
        return self.eval()

    def misbehave_after_fit(self) -> None:
        """Hook for the misbehaving toys."""

    def score(self, x: Tensor) -> Tensor:
        return (self.net(x) - self.center).pow(2).sum(1)


@dataclass
class SlowConfig(ToyConfig):
    fit_delay: float = 1.0


@register_detector("exec-toy-slow")
class ExecToySlow(ExecToy):
    """exec-toy with one extra second per fit (a grid slow enough to be interrupted)."""

    Config = SlowConfig


@register_detector("exec-toy-nan")
class ExecToyNan(ExecToy):
    """exec-toy whose scores are NaN when fitted on digits class 1."""

    def score(self, x: Tensor) -> Tensor:
        scores = super().score(x)
        return scores * torch.where(self.bad > 0, torch.nan, 1.0)


@register_detector("exec-toy-crash")
class ExecToyCrash(ExecToy):
    """exec-toy that kills its own process (SIGKILL) when fitted on digits class 1."""

    def misbehave_after_fit(self) -> None:
        if self.bad > 0:
            os.kill(os.getpid(), signal.SIGKILL)


@register_detector("exec-toy-oom")
class ExecToyOom(ExecToy):
    """exec-toy that raises an out-of-memory error on gradient batches larger than OOM_BATCH."""

    def score(self, x: Tensor) -> Tensor:
        if x.requires_grad and x.shape[0] > OOM_BATCH:
            raise torch.OutOfMemoryError(f"CUDA out of memory (simulated, batch {x.shape[0]})")
        return super().score(x)
