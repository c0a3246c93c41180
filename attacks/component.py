"""Per-component attack for multi-term scores (e.g. COBRA's feature-similarity + shift-classifier terms).

For a detector with ``score_components(x) -> {name: Tensor[N]}`` (terms that add up to, or drive, the score;
higher = more anomalous), PGD attacks each term on its own and, with ``include_total``, the full score too;
each sample keeps the iterate with the best signed *full* score across all of these runs. A term that the full
score hides (a saturated or gradient-masked one) is still attacked head-on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from attacks.base import AttackNotApplicable, register_attack
from attacks.common import BestIterate
from attacks.pgd import PGD, PGDConfig


@dataclass
class ComponentAttackConfig(PGDConfig):
    """PGD budget per component; ``include_total`` also attacks the full score."""

    include_total: bool = True


@register_attack("component")
class ComponentAttack(PGD):
    """PGD on each score component separately, best full-score iterate per sample."""

    Config = ComponentAttackConfig

    def check_applicable(self, detector: Any) -> None:
        if not callable(getattr(detector, "score_components", None)):
            raise AttackNotApplicable(
                f"attack {self.name!r} needs a detector with `score_components(x) -> dict[str, Tensor]`; "
                f"{type(detector).__name__} has none"
            )

    def attack_batch(self, detector: Any, x: Tensor, sign: Tensor, generator: torch.Generator | None) -> BestIterate:
        with torch.no_grad():
            names = list(detector.score_components(x[:1]))
        best = BestIterate(x)
        for name in names:

            def component(xc: Tensor, name: str = name) -> Tensor:
                return detector.score_components(xc)[name]

            grad_fn = lambda xc, fn=component: (None, self.objective_and_grad(detector, xc, sign, score_fn=fn)[1])  # noqa: E731
            best.merge(self.ascend(detector, x, sign, generator, grad_fn))
        if self.config.include_total:
            best.merge(self.ascend(detector, x, sign, generator, self.gradient_fn(detector, x, sign)))
        return best
