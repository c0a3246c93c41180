"""AutoAttack (Croce & Hein 2020) for anomaly scores: APGD-ce + APGD-margin + Square, per-sample worst case.

Every member attacks every sample (a score has no "already fooled" samples); the ensemble returns, per sample,
the member output with the best signed objective (highest score for normals, lowest for anomalies), which is
the worst case AUROC is computed on. Each member draws from its own copy of the caller's generator, so a member
inside the ensemble produces exactly what it produces alone with the same seed; the caller's generator then
advances as the first member's copy did.

Versions: ``standard`` (1 restart each, ``square_queries`` queries), ``plus`` (``plus_restarts`` APGD restarts and
``plus_query_factor`` times the queries), ``rand`` (APGD-ce and APGD-margin with EOT over ``rand_eot_iter``
draws, no Square, as the reference's rand version), ``auto`` (rand for stochastic detectors, else standard).
Presets shrink the budget through ``apgd_steps`` and ``square_queries``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from attacks.apgd import APGD, APGDConfig
from attacks.base import Attack, AttackConfig, AttackResult, register_attack
from attacks.common import BestIterate, clone_generator
from attacks.square import Square, SquareConfig
from bench.errors import UsageError

VERSIONS = ("auto", "standard", "plus", "rand")


@dataclass
class AutoAttackConfig(AttackConfig):
    """Ensemble version and member budgets."""

    version: str = "auto"
    apgd_steps: int = 100
    apgd_restarts: int = 1
    square_queries: int = 5000
    plus_restarts: int = 5
    plus_query_factor: int = 2
    rand_eot_iter: int = 20


@register_attack("autoattack")
class AutoAttack(Attack):
    """AutoAttack ensemble (APGD-ce, APGD-margin, Square), per-sample worst case."""

    Config = AutoAttackConfig
    #: Contains a gradient-free member: the sanity ladder does not compare it with Square.
    ensemble = True

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        if self.config.version not in VERSIONS:
            raise UsageError(f"unknown AutoAttack version {self.config.version!r}; choose from: {', '.join(VERSIONS)}")
        self._members: list[tuple[str, Attack, torch.Generator | None]] = []

    def resolve_version(self, detector: Any) -> str:
        """The version actually run: ``auto`` becomes ``rand`` for stochastic detectors, else ``standard``."""
        if self.config.version != "auto":
            return self.config.version
        return "rand" if getattr(detector, "stochastic", False) else "standard"

    def eot_draws(self, detector: Any) -> int:
        if self.resolve_version(detector) == "rand" and getattr(detector, "stochastic", False):
            return max(self.config.rand_eot_iter, self.config.eot_iter)
        return super().eot_draws(detector)

    def members(self, detector: Any) -> dict[str, Attack]:
        """The member attacks of the resolved version, with this attack's budget."""
        cfg = self.config
        version = self.resolve_version(detector)
        common = {"eps": cfg.eps, "norm": cfg.norm, "batch_size": cfg.batch_size, "eot_iter": cfg.eot_iter}
        restarts, queries = cfg.apgd_restarts, cfg.square_queries
        if version == "plus":
            restarts, queries = max(restarts, cfg.plus_restarts), queries * cfg.plus_query_factor
        if version == "rand":
            common["eot_iter"] = max(cfg.rand_eot_iter, cfg.eot_iter)
        out: dict[str, Attack] = {
            f"apgd-{loss}": APGD(APGDConfig(**common, steps=cfg.apgd_steps, restarts=restarts, loss=loss))
            for loss in ("ce", "margin")
        }
        if version != "rand":
            out["square"] = Square(SquareConfig(**common, queries=queries))
        return out

    def run(
        self, detector: Any, x: Tensor, is_anomaly: Tensor, *, generator: torch.Generator | None = None
    ) -> AttackResult:
        self._members = [(n, m, clone_generator(generator)) for n, m in self.members(detector).items()]
        try:
            result = super().run(detector, x, is_anomaly, generator=generator)
        finally:
            for _, member, _ in self._members:
                self.passes.forward += member.passes.forward
                self.passes.backward += member.passes.backward
        if generator is not None and self._members and self._members[0][2] is not None:
            generator.set_state(self._members[0][2].get_state())
        return result

    def attack_batch(self, detector: Any, x: Tensor, sign: Tensor, generator: torch.Generator | None) -> BestIterate:
        """Each member's best iterates, merged on the objectives the members tracked (no re-evaluation)."""
        if not self._members:
            raise RuntimeError("AutoAttack.attack_batch is driven by run, which sets up the members")
        best = BestIterate(x)
        for _, member, member_generator in self._members:
            best.merge(member.attack_batch(detector, x, sign, member_generator))
        return best
