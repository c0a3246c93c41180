"""Per-component APGD for multi-term scores (e.g. COBRA's feature-similarity + shift-classifier terms).

For a detector with ``score_components(x) -> {name: Tensor[N]}`` (terms that add up to, or drive, the score;
higher = more anomalous), APGD climbs each selected term on its own (``components``; all when None) and, with
``include_total``, the full score too; each sample keeps the iterate with the best signed *full* score across all
of these runs. A term that the full score hides (a saturated or gradient-masked one) is still attacked head-on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from attacks.apgd import APGD, APGDConfig, Ascent
from attacks.base import AttackNotApplicable
from attacks.registry import register_attack


@dataclass
class ComponentAttackConfig(APGDConfig):
    """APGD budget per component; ``components`` selects terms by name (None: all); ``include_total`` also
    attacks the full score."""

    components: list[str] | None = None
    include_total: bool = True


def component_names(detector: Any, x: Tensor) -> list[str]:
    """Names of the detector's score components (one forward on one image, on the detector's device)."""
    with torch.no_grad():
        return list(detector.score_components(x[:1].to(detector.device)))


@register_attack("component")
class ComponentAttack(APGD):
    """APGD on each score component separately, best full-score iterate per sample."""

    Config = ComponentAttackConfig
    tiny_config: ClassVar[dict[str, Any]] = {"steps": 10}

    def check_applicable(self, detector: Any) -> None:
        if not callable(getattr(detector, "score_components", None)):
            raise AttackNotApplicable(
                f"attack {self.name!r} needs a detector with `score_components(x) -> dict[str, Tensor]`; "
                f"{type(detector).__name__} has none"
            )

    def ascents(self, detector: Any, x: Tensor, sign: Tensor, clean: Tensor) -> list[Ascent]:
        available = component_names(detector, x)
        chosen = available if self.config.components is None else list(self.config.components)
        unknown = sorted(set(chosen) - set(available))
        if unknown:
            raise AttackNotApplicable(
                f"attack {self.name!r}: {type(detector).__name__} has no score component {', '.join(unknown)}; "
                f"it has {', '.join(available)}"
            )
        out = [self.surrogate_ascent(detector, sign, self.component(detector, name)) for name in chosen]
        return out + (super().ascents(detector, x, sign, clean) if self.config.include_total else [])

    @staticmethod
    def component(detector: Any, name: str):
        """``x -> score_components(x)[name]``."""
        return lambda xc: detector.score_components(xc)[name]
