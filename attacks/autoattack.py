"""AutoAttack (Croce & Hein 2020) for anomaly scores: members that differ by construction, per-sample worst case.

On one scalar score, losses that are monotone transforms of it (cross-entropy, margin) give the same attack, so
the members differ through what they climb and where they start, each judged by the detector's true score (on a
stochastic detector, its mean over ``eot_draws`` draws):
- ``apgd``: APGD on the score;
- ``apgd-t``: targeted feature-space APGD, the analogue of APGD-T: one run per target, the ``targets`` nearest
  training features of each sample (detectors with features and a ``feature_bank``);
- ``apgd-<component>``: APGD on each term of a multi-term score (``score_components``, e.g. CSI/COBRA's
  similarity and shift terms);
- ``square``: Square Attack, gradient-free (``square_queries`` queries).
Every member attacks every sample (a score has no "already fooled" samples) from its own generator, seeded from
one draw of the caller's generator and the member's name. The ensemble keeps, per sample, the member output with
the best signed score (highest for normals, lowest for anomalies): the worst case AUROC is computed on. Members
that do not apply to the detector are skipped and named in the result.

Versions: ``standard`` (the members above, ``apgd_restarts`` restarts each), ``plus`` (``plus_restarts``
restarts with distinct random starts for every gradient member, ``plus_query_factor`` times the queries),
``rand`` (the gradient members with EOT over ``rand_eot_iter`` redrawn augmentations, no Square, as the
reference's rand version), ``auto`` (rand for stochastic detectors, else standard). Presets shrink the budget
through ``apgd_steps``, ``targets`` and ``square_queries``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from attacks.apgd import APGD, APGDConfig
from attacks.base import Attack, AttackConfig, AttackNotApplicable, AttackResult, BestIterate, MemberResult
from attacks.common import check_in_ball, objective_sign
from attacks.component import ComponentAttack, ComponentAttackConfig, component_names
from attacks.feature import FeatureAttack, FeatureAttackConfig
from attacks.registry import register_attack
from attacks.square import Square, SquareConfig
from bench.errors import UsageError
from bench.hashing import stable_hash

VERSIONS = ("auto", "standard", "plus", "rand")


@dataclass
class AutoAttackConfig(AttackConfig):
    """Ensemble version and member budgets."""

    version: str = "auto"
    apgd_steps: int = 100
    apgd_restarts: int = 1
    targets: int = 9
    square_queries: int = 5000
    plus_restarts: int = 5
    plus_query_factor: int = 2
    rand_eot_iter: int = 20


def member_generator(seed: int, name: str, device: torch.device | str) -> torch.Generator:
    """The generator of one member: seeded from the ensemble's draw and the member's name."""
    return torch.Generator(device=device).manual_seed(int(stable_hash([seed, name], 15), 16))


@register_attack("autoattack")
class AutoAttack(Attack):
    """AutoAttack for scores: APGD, targeted feature APGD, per-component APGD and Square; per-sample worst case."""

    Config = AutoAttackConfig
    tiny_config: ClassVar[dict[str, Any]] = {"apgd_steps": 5, "square_queries": 30, "targets": 2}
    #: Runs several attacks: the sanity ladder judges its members (``AttackResult.members``), not the ensemble.
    ensemble = True

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        if self.config.version not in VERSIONS:
            raise UsageError(f"unknown AutoAttack version {self.config.version!r}; choose from: {', '.join(VERSIONS)}")

    def resolve_version(self, detector: Any) -> str:
        """The version actually run: ``auto`` becomes ``rand`` for stochastic detectors, else ``standard``."""
        if self.config.version != "auto":
            return self.config.version
        return "rand" if getattr(detector, "stochastic", False) else "standard"

    def eot_draws(self, detector: Any) -> int:
        if self.resolve_version(detector) == "rand" and getattr(detector, "stochastic", False):
            return max(self.config.rand_eot_iter, self.config.eot_iter)
        return super().eot_draws(detector)

    def members(self, detector: Any, x: Tensor) -> tuple[dict[str, Attack], dict[str, str]]:
        """The member attacks of the resolved version with this attack's budget, and the skipped ones' reasons."""
        cfg = self.config
        version = self.resolve_version(detector)
        common = {"eps": cfg.eps, "norm": cfg.norm, "side": cfg.side, "batch_size": cfg.batch_size}
        common["eot_iter"] = max(cfg.rand_eot_iter, cfg.eot_iter) if version == "rand" else cfg.eot_iter
        restarts = max(cfg.apgd_restarts, cfg.plus_restarts) if version == "plus" else cfg.apgd_restarts
        gradient = {**common, "steps": cfg.apgd_steps, "restarts": restarts}
        candidates = {
            "apgd": APGD(APGDConfig(**gradient)),
            "apgd-t": FeatureAttack(FeatureAttackConfig(**gradient, targets=cfg.targets)),
            "apgd-<component>": ComponentAttack(ComponentAttackConfig(**gradient)),
        }
        out: dict[str, Attack] = {}
        skipped: dict[str, str] = {}
        for name, member in candidates.items():
            try:
                member.check_applicable(detector)
            except AttackNotApplicable as error:
                skipped[name] = str(error)
                continue
            if isinstance(member, ComponentAttack):  # one member per term of the score
                for part in component_names(detector, x):
                    config = ComponentAttackConfig(**gradient, components=[part], include_total=False)
                    out[f"apgd-{part}"] = ComponentAttack(config)
            else:
                out[name] = member
        if version != "rand":
            queries = cfg.square_queries * (cfg.plus_query_factor if version == "plus" else 1)
            out["square"] = Square(SquareConfig(**common, queries=queries))
        return out, skipped

    def run(
        self, detector: Any, x: Tensor, is_anomaly: Tensor, *, generator: torch.Generator | None = None
    ) -> AttackResult:
        """Run every member on the whole set, keep each sample's worst case over them (members in the result)."""
        self.check_applicable(detector)
        members, skipped = self.members(detector, x)
        source = generator.device if generator is not None else "cpu"
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=source))
        sign = objective_sign(is_anomaly.cpu(), self.config.side)
        attacked = sign != 0
        x_best, best = x.clone(), torch.full((x.shape[0],), -torch.inf)
        supplier = torch.full((x.shape[0],), -1, dtype=torch.long)
        results: list[MemberResult] = []
        for name, member in members.items():
            try:
                out = member.run(detector, x, is_anomaly, generator=member_generator(seed, name, source))
            except AttackNotApplicable as error:  # found out only on the data (e.g. feature dimensions)
                skipped[name] = str(error)
                continue
            finally:
                self.passes.forward += member.passes.forward
                self.passes.backward += member.passes.backward
            index = len(results)
            scores = self.judged_scores(detector, out)
            objective = torch.where(attacked, sign * scores, -torch.inf)
            better = attacked & (objective > best)
            x_best[better], best[better], supplier[better] = out.x_adv[better], objective[better], index
            results.append(MemberResult(name, scores, member.white_box))
        check_in_ball(x_best, x, self.config.eps, self.config.norm)
        stochastic = getattr(detector, "stochastic", False)
        scores = torch.full_like(best, torch.nan) if stochastic else torch.where(attacked, best * sign, torch.nan)
        return AttackResult(x_best, scores, attacked, results, supplier, skipped)

    def judged_scores(self, detector: Any, result: AttackResult) -> Tensor:
        """A member's scores at its outputs: the tracked ones, else a fresh score of the attacked rest.

        A stochastic detector's members are compared on the mean of ``eot_draws`` fresh draws (the best of
        single noisy draws would favour lucky draws); its robust scores are then left to the runner's one draw
        of the chosen inputs, like its clean scores.
        """
        scores = result.scores.clone()
        missing = torch.isnan(scores) & result.attacked
        if missing.any():
            draws = self.eot_draws(detector)
            self.passes.forward += int(missing.sum()) * draws
            fresh = sum(detector.score_batched(result.x_adv[missing]).float().cpu() for _ in range(draws))
            scores[missing] = fresh / draws
        return scores

    def attack_batch(self, detector: Any, x: Tensor, sign: Tensor, generator: torch.Generator | None) -> BestIterate:
        raise RuntimeError("AutoAttack runs its members on the whole set through run(); it has no batch step")
