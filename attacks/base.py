"""The attack contract: perturb inputs within an eps-ball to make a detector's score wrong.

Objective per sample (the COBRA/ATD convention): maximise s(x') for normal samples and -s(x') for anomalies.
``sign`` below is +1 for attacked normals, -1 for attacked anomalies and 0 for samples left alone, so the
objective is always ``sign * s(x')``. A scalar score has no success threshold: attacks keep each sample's
best-objective iterate.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from bench.config import load_preset, parse_norm
from bench.errors import UsageError
from bench.hashing import class_sources, files_digest
from bench.registry import Registry

if TYPE_CHECKING:
    from attacks.common import BestIterate

SIDES = ("both", "in", "out")
#: Name suffixes selecting a one-sided variant of any attack: ``pgd-in`` attacks normals only, ``pgd-out`` anomalies.
SIDE_SUFFIXES = {"-in": "in", "-out": "out"}


class OutOfBall(RuntimeError):
    """An adversarial input left [0, 1] or the eps-ball, or is not finite (a bug in the attack)."""


class AttackNotApplicable(UsageError):
    """The attack cannot run on this detector (e.g. it needs a feature bank the detector does not expose)."""


def split_side(name: str) -> tuple[str, str]:
    """``"pgd-in"`` -> ``("pgd", "in")``; a name without a side suffix -> ``(name, "both")``."""
    for suffix, side in SIDE_SUFFIXES.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], side
    return name, "both"


class AttackRegistry(Registry):
    """The attack registry: also resolves one-sided names (``<attack>-in`` / ``<attack>-out``) to their attack.

    ``names()`` and ``"all"`` list the registered attacks only (``"all"`` leaves out the cross-check backends, which
    need optional libraries); suffixed names are accepted wherever a name is.
    """

    def _base_name(self, name: str) -> str:
        base, side = split_side(name)
        return base if side != "both" and base in self._entries and name not in self._entries else name

    def get(self, name: str) -> type[Attack]:
        """The class of attack ``name`` (a one-sided name gives its two-sided attack's class)."""
        return super().get(self._base_name(name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(self._base_name(name))

    def expand(self, spec: str | list[str]) -> list[str]:
        """As Registry.expand, also accepting one-sided names; a glob matching no attack may match them (``*-in``)."""
        parts = spec if isinstance(spec, list) else [p.strip() for p in spec.split(",")]
        variants = [f"{n}{suffix}" for n in self.names() for suffix in SIDE_SUFFIXES]
        out: list[str] = []
        for part in filter(None, parts):
            if part == "all":
                matches = [n for n in self.names() if not getattr(self._entries[n], "cross_check", False)]
            elif part in self:
                matches = [part]
            elif any(ch in part for ch in "*?[") and not fnmatch.filter(self.names(), part):
                matches = fnmatch.filter(variants, part)
                if not matches:
                    raise UsageError(f"no attack matches {part!r}; choose from: {', '.join(self.names())}")
            else:
                matches = super().expand([part])
            out.extend(m for m in matches if m not in out)
        if not out:
            raise UsageError(f"no attack given; choose from: {', '.join(self.names())}")
        return out

    def describe(self) -> dict[str, str]:
        """Name -> one-line description, noting the one-sided variants compactly."""
        return {name: f"{text} [also {name}-in, {name}-out]" for name, text in super().describe().items()}


ATTACKS: AttackRegistry = AttackRegistry("attack")


def register_attack(name: str, description: str | None = None):
    """Class decorator: register an Attack subclass under ``name`` and set its ``name`` attribute."""

    def decorator(cls: type[Attack]) -> type[Attack]:
        cls.name = name
        return ATTACKS.register(name, description)(cls)

    return decorator


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


def objective_sign(is_anomaly: Tensor, side: str = "both") -> Tensor:
    """+1 for attacked normals, -1 for attacked anomalies, 0 for samples the side leaves alone."""
    sign = torch.where(is_anomaly.bool(), -1.0, 1.0)
    if side == "in":
        sign = torch.where(is_anomaly.bool(), 0.0, sign)
    elif side == "out":
        sign = torch.where(is_anomaly.bool(), sign, 0.0)
    return sign


def project(x_adv: Tensor, x: Tensor, eps: float, norm: str) -> Tensor:
    """Project ``x_adv`` onto the eps-ball around ``x`` (L-inf or L2) intersected with [0, 1]."""
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = delta * (eps / norms).clamp(max=1.0).view(-1, *[1] * (x.dim() - 1))
    return (x + delta).clamp(0.0, 1.0)


def rand(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Uniform [0, 1) draws from ``generator`` (on the generator's device), moved to ``device``."""
    source = generator.device if generator is not None else device
    return torch.rand(tuple(shape), generator=generator, device=source).to(device)


def randn(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Standard normal draws from ``generator`` (on the generator's device), moved to ``device``."""
    source = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=source).to(device)


def random_start(x: Tensor, eps: float, norm: str, generator: torch.Generator | None) -> Tensor:
    """A uniform draw from the eps-ball around ``x`` (clipped to [0, 1])."""
    if norm == "linf":
        noise = (rand(x.shape, generator, x.device) * 2 - 1) * eps
    else:
        direction = randn(x.shape, generator, x.device)
        direction = direction / direction.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
        radius = rand((x.shape[0],), generator, x.device) ** (1.0 / x[0].numel())
        noise = direction * (eps * radius).view(-1, *[1] * (x.dim() - 1))
    return (x + noise).clamp(0.0, 1.0)


def check_in_ball(x_adv: Tensor, x: Tensor, eps: float, norm: str, tol: float = 1e-5) -> None:
    """Raise if any adversarial input leaves [0, 1] or the eps-ball (a hard error, never a flag)."""
    if x_adv.numel() == 0:
        return
    if not torch.isfinite(x_adv).all():
        raise OutOfBall("attack produced non-finite inputs")
    if x_adv.min() < -tol or x_adv.max() > 1 + tol:
        raise OutOfBall(f"attack left [0, 1]: range [{x_adv.min():.4g}, {x_adv.max():.4g}]")
    delta = (x_adv - x).flatten(1)
    dist = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
    if dist.numel() and dist.max() > eps + tol:
        raise OutOfBall(f"attack left the {norm} ball: distance {dist.max():.6g} > eps {eps:.6g}")


ScoreFn = Callable[[Tensor], Tensor]


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
    #: True for attacks that need input gradients of the score.
    white_box: ClassVar[bool] = True

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
        return files_digest(class_sources(cls, "attacks"))

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


def config_from(cls: type[Attack], preset: str | None, overrides: dict[str, Any]) -> Any:
    """Build ``cls.Config`` from the preset's ``[attacks.<name>]`` section and explicit overrides."""
    values: dict[str, Any] = {}
    if preset is not None:
        values.update(load_preset(preset).get("attacks", {}).get(cls.name, {}))
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"{cls.name} has no option {', '.join(unknown)}; options: {', '.join(sorted(known))}")
    return cls.Config(**values)


def create_attack(
    name: str, eps: float | None = None, norm: str | None = None, preset: str | None = None, **overrides: Any
) -> Attack:
    """Instantiate a registered attack with its budget, e.g. ``create_attack("apgd", eps=4/255, steps=100)``.

    A one-sided name (``"pgd-in"``, ``"pgd-out"``) sets ``side``; the preset section of the base attack applies.
    """
    cls = ATTACKS.get(name)
    base, side = split_side(name)
    if side != "both" and base == cls.name:
        if overrides.get("side", side) != side:
            raise UsageError(f"attack {name!r} already fixes side={side!r}; got side={overrides['side']!r}")
        overrides["side"] = side
    return cls(config_from(cls, preset, {"eps": eps, "norm": norm, **overrides}))


def list_attacks() -> dict[str, str]:
    """Registered attack names with one-line descriptions (each also runs one-sided as ``<name>-in`` / ``-out``)."""
    return ATTACKS.describe()
