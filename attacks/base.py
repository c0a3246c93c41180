"""The attack contract: perturb inputs within an eps-ball to make a detector's score wrong.

Objective per sample (the COBRA/ATD convention): maximise s(x') for normal samples and -s(x') for anomalies.
``sign`` below is +1 for attacked normals, -1 for attacked anomalies and 0 for samples left alone, so the
objective is always ``sign * s(x')``. A scalar score has no success threshold: attacks keep each sample's
best-objective iterate.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from attacks.common import check_in_ball, objective_sign, per_sample
from bench.errors import UsageError
from bench.hashing import code_version
from bench.threat import parse_norm

SIDES = ("both", "in", "out")


class AttackNotApplicable(UsageError):
    """The attack cannot run on this detector (e.g. it needs a feature bank the detector does not expose)."""


@dataclass
class AttackConfig:
    """Budget and bookkeeping shared by every attack."""

    eps: float = 4 / 255
    norm: str = "linf"
    side: str = "both"  # "in": attack normals only, "out": anomalies only
    batch_size: int = 256
    eot_iter: int = 1  # gradient draws averaged per step for stochastic detectors (EOT)


@dataclass
class PassCounter:
    """Score evaluations an attack spent, in images (forward and backward)."""

    forward: int = 0
    backward: int = 0


ScoreFn = Callable[[Tensor], Tensor]


class BestIterate:
    """Per-sample best objective and the input that reached it (the answer of a score attack)."""

    def __init__(self, x: Tensor, objective: Tensor | None = None) -> None:
        """Start from ``x``; with its ``objective``, ``x`` competes with later iterates (the clean input does, so an
        attack never ends less harmful than no attack)."""
        self.x = x.detach().clone()
        self.objective = torch.full((x.shape[0],), -torch.inf, device=x.device)
        if objective is not None:
            self.update(x, objective)

    def update(self, x: Tensor, objective: Tensor) -> Tensor:
        """Keep ``x`` where ``objective`` beats the best so far; returns the mask of improved samples."""
        improved = objective > self.objective
        self.objective = torch.where(improved, objective, self.objective)
        self.x = torch.where(per_sample(improved, self.x), x.detach(), self.x)
        return improved

    def merge(self, other: BestIterate) -> None:
        """Keep, per sample, the better of this and ``other`` (restarts, ensemble members)."""
        self.update(other.x, other.objective)


@dataclass
class MemberResult:
    """One ensemble member's scores [N] at its own adversarial inputs (NaN for samples left alone)."""

    name: str
    scores: Tensor
    white_box: bool


@dataclass
class AttackResult:
    """Adversarial inputs [N, ...], the detector's score at each one the attack evaluated (NaN elsewhere), and
    which samples its side attacks (the others are returned unchanged).

    An ensemble also gives each member's scores, which member supplied each sample's worst case (``supplier``,
    an index into ``members``; -1 for samples left alone) and the members it skipped, with the reason.
    """

    x_adv: Tensor
    scores: Tensor
    attacked: Tensor
    members: list[MemberResult] = field(default_factory=list)
    supplier: Tensor | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    def member_scores(self, clean: Tensor) -> dict[str, Tensor]:
        """Each member's scores [N] with ``clean`` for the samples the side leaves alone (NaN elsewhere stays)."""
        return {m.name: torch.where(self.attacked, m.scores, clean.float()) for m in self.members}

    def completed_scores(self, detector: Any, clean: Tensor | None = None) -> Tensor:
        """Scores [N] of every adversarial input: the tracked ones, ``clean`` for samples the side leaves alone
        (when given), and one ``score_batched`` of the rest."""
        scores = self.scores.clone()
        if clean is not None:
            scores[~self.attacked] = clean[~self.attacked].float()
        missing = torch.isnan(scores)
        if missing.any():
            scores[missing] = detector.score_batched(self.x_adv[missing]).float().cpu()
        return scores


def tracked_scores(best: BestIterate, sign: Tensor) -> Tensor:
    """The score at each best iterate, recovered from its objective ``sign * s`` (NaN where not finite)."""
    scores = (best.objective * sign).float()
    return torch.where(torch.isfinite(scores), scores, torch.nan).cpu()


class Attack(ABC):
    """Base class of every attack: batching, side selection, pass accounting and the final ball check."""

    name: ClassVar[str] = ""
    Config: ClassVar[type] = AttackConfig
    #: Traits (declared, like scikit-learn's estimator tags), read by the registry and the sanity ladder.
    #: True for attacks that need input gradients of the score.
    white_box: ClassVar[bool] = True
    #: True for ensembles (AutoAttack) whose result carries per-member scores.
    ensemble: ClassVar[bool] = False
    #: True for wrappers of reference libraries (``attacks.xcheck``): run by name, left out of ``all``.
    cross_check: ClassVar[bool] = False
    #: Config overrides (budget aside) that make the attack take seconds in the shared conformance suite
    #: (tests/unit/test_attack_conformance.py), declared beside its code.
    tiny_config: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()
        parse_norm(self.config.norm)
        if self.config.side not in SIDES:
            raise UsageError(f"unknown attack side {self.config.side!r}; choose from: {', '.join(SIDES)}")
        self.passes = PassCounter()

    @classmethod
    def code_version(cls) -> str:
        """Hash of every attacks/ source file this attack's numbers depend on: the modules of its class hierarchy
        and, transitively, every attacks module they use (shared helpers, ensemble members)."""
        return code_version(cls, "attacks")

    @property
    def label(self) -> str:
        """The registered name including the side suffix (``pgd``, ``pgd-in``, ``pgd-out``)."""
        suffix = {"in": "-in", "out": "-out"}.get(self.config.side, "")
        return f"{self.name}{suffix}"

    def check_applicable(self, detector: Any) -> None:  # noqa: B027 - optional hook, most attacks need nothing
        """Raise AttackNotApplicable when the detector lacks what this attack needs (default: nothing)."""

    def eot_draws(self, detector: Any) -> int:
        """Score draws averaged per objective evaluation: ``eot_iter`` for stochastic detectors, else 1."""
        return max(1, int(self.config.eot_iter)) if getattr(detector, "stochastic", False) else 1

    def perturb(
        self, detector: Any, x: Tensor, is_anomaly: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Adversarial versions of ``x`` (same shape, in [0, 1], within eps), attacking per ``config.side``."""
        return self.run(detector, x, is_anomaly, generator=generator).x_adv

    def run(
        self, detector: Any, x: Tensor, is_anomaly: Tensor, *, generator: torch.Generator | None = None
    ) -> AttackResult:
        """``perturb``, also returning the score at each adversarial input the attack has already evaluated.

        An attack that returns its best iterates knows their scores (objective times sign), so the robust score
        costs no extra forward. Scores stay NaN for samples left alone, for attacks returning bare tensors (the
        cross-check backends), and for stochastic detectors, whose tracked objective is a mean over draws rather
        than one draw like the clean score. At eps=0 the attack still runs its own code path (the sanity ladder
        checks that it returns the clean input and clean scores).
        """
        self.check_applicable(detector)
        sign = objective_sign(is_anomaly, self.config.side)
        x_adv = x.clone()
        scores = torch.full((x.shape[0],), torch.nan)
        keep_scores = not getattr(detector, "stochastic", False)
        device = detector.device
        attacked = torch.nonzero(sign != 0).flatten()
        for idx in attacked.split(self.config.batch_size) if attacked.numel() else ():
            xb, sb = x[idx].to(device), sign[idx].to(device)
            out = self.attack_batch(detector, xb, sb, generator)
            xb = out.detach() if isinstance(out, Tensor) else out.x.detach()
            if keep_scores and not isinstance(out, Tensor):
                scores[idx] = tracked_scores(out, sb)
            x_adv[idx] = xb.to(x_adv.device)
        check_in_ball(x_adv, x, self.config.eps, self.config.norm)
        return AttackResult(x_adv, scores, (sign != 0).cpu())

    @abstractmethod
    def attack_batch(
        self, detector: Any, x: Tensor, sign: Tensor, generator: torch.Generator | None
    ) -> Tensor | BestIterate:
        """Attack one batch on the detector's device; ``sign`` is +-1 per sample (see module docstring).

        Returns the adversarial batch, or the best iterates with their objectives when these are the signed
        detector score at them (then ``run`` reuses them as robust scores).
        """

    def objective(self, detector: Any, x: Tensor, sign: Tensor, score_fn: ScoreFn | None = None) -> Tensor:
        """Per-sample objective ``sign * s(x)`` (one forward, counted); ``score_fn`` replaces ``detector.score``."""
        self.passes.forward += x.shape[0]
        return sign * (detector.score if score_fn is None else score_fn)(x)

    @torch.no_grad()
    def evaluate(self, detector: Any, x: Tensor, sign: Tensor, score_fn: ScoreFn | None = None) -> Tensor:
        """Per-sample objective without gradients, averaged over ``eot_draws`` forwards (EOT for bookkeeping)."""
        draws = self.eot_draws(detector)
        total: Tensor | float = 0.0
        for _ in range(draws):
            total = total + self.objective(detector, x, sign, score_fn).float()
        return total / draws

    def objective_and_grad(
        self,
        detector: Any,
        x: Tensor,
        sign: Tensor,
        loss_fn: Callable[[Tensor], Tensor] | None = None,
        score_fn: ScoreFn | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Per-sample objective and its input gradient, averaged over ``eot_draws`` draws (EOT).

        ``loss_fn`` maps the signed objective to the quantity whose gradient is taken (identity by default);
        ``score_fn`` replaces ``detector.score`` (component and surrogate attacks).
        """
        draws = self.eot_draws(detector)
        total_obj: Tensor | float = 0.0
        total_grad: Tensor | float = 0.0
        for _ in range(draws):
            x_req = x.detach().requires_grad_(True)
            obj = self.objective(detector, x_req, sign, score_fn)
            loss = obj if loss_fn is None else loss_fn(obj)
            (grad,) = torch.autograd.grad(loss.sum(), x_req)
            self.passes.backward += x.shape[0]
            total_obj = total_obj + obj.detach().float()
            total_grad = total_grad + grad
        return total_obj / draws, total_grad / draws
