"""FGSM (Goodfellow et al. 2015): one steepest-ascent step of size eps on the signed score."""

from __future__ import annotations

from dataclasses import dataclass

from attacks.pgd import PGD, PGDConfig
from attacks.registry import register_attack


@dataclass
class FGSMConfig(PGDConfig):
    """One step of size eps from the clean input (set ``random_start`` for R+FGSM-style starts)."""

    steps: int = 1
    step_scale: float = 1.0
    random_start: bool = False


@register_attack("fgsm")
class FGSM(PGD):
    """FGSM on the signed score (keeps the clean input where the step lowers the objective)."""

    Config = FGSMConfig
