"""The sanity ladder: flags that mark an evaluation as unreliable (they never change its numbers).

Per cell (``cell_flags``, run by the runner right after a cell is attacked); the checks that rerun an attack use
a fixed, class-balanced subset of at most ``CHECK_SAMPLES`` test samples so their cost stays small:
- ``eps0-mismatch``: the attack's own code path run at eps=0 (on the first ``EPS0_SAMPLES`` of the subset) does not
  return the clean input and clean scores;
- ``not-converged``: the cell's strongest white-box attack (for an ensemble, its strongest white-box member) rerun
  with twice the iterations lowers its AUROC on the subset by more than ``CONVERGENCE_TOLERANCE``;
- ``gradient-mismatch``: autograd's directional derivatives of the score disagree with central finite differences
  along random sign directions (cosine between the two below ``GRADIENT_COSINE`` over ``GRADIENT_CHECK_SAMPLES``
  samples x ``GRADIENT_DIRECTIONS``): shattered or obfuscated gradients, which make white-box numbers overestimates;
- ``stochastic-no-eot``: a stochastic detector attacked with one draw per objective evaluation;
- ``zero-gradients:<share>``: more than ``ZERO_GRADIENT_SHARE`` of the test inputs have an all-zero (or non-finite)
  input gradient of the score (the share is part of the flag, e.g. ``zero-gradients:0.42``);
- ``score-mismatch``: the robust scores the attack tracked (reused instead of a final score pass) differ from a
  fresh ``score_batched`` of the same adversarial inputs, checked on up to ``SCORE_CHECK_SAMPLES`` of them (a
  score that depends on its batch, or an attack tracking something other than the score).

Across cells (``grid_flags``, run on all records of a run):
- ``eps0-mismatch``: a record at eps=0 whose robust AUROC differs from its clean AUROC;
- ``non-monotone-eps``: robust AUROC rises by more than ``MONOTONE_TOLERANCE`` with a larger eps (the clean AUROC
  counts as eps=0);
- ``possible-gradient-masking``: a gradient-free attack (Square) beats every white-box attack by more than
  ``MASKING_TOLERANCE``, inside an ensemble (its members) or across the attacks of one cell (those records).
Leaving the eps-ball or [0, 1] is a hard error raised by the attacks themselves, never a flag.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from attacks.base import Attack, AttackResult
from attacks.common import OutOfBall, centre_and_spread
from attacks.registry import ATTACKS, split_side
from bench.metrics import auroc
from bench.store import Record

MONOTONE_TOLERANCE = 0.005
MASKING_TOLERANCE = 0.01
CONVERGENCE_TOLERANCE = 0.01
ZERO_GRADIENT_SHARE = 0.1
GRADIENT_SAMPLES = 256
CHECK_SAMPLES = 64
EPS0_SAMPLES = 16
GRADIENT_CHECK_SAMPLES = 8
GRADIENT_DIRECTIONS = 4
GRADIENT_COSINE = 0.5
SCORE_CHECK_SAMPLES = 16
SCORE_RTOL = 1e-4
EPS0_TOLERANCE = 1e-4

EPS0_MISMATCH = "eps0-mismatch"
NOT_CONVERGED = "not-converged"
GRADIENT_MISMATCH = "gradient-mismatch"
NON_MONOTONE_EPS = "non-monotone-eps"
GRADIENT_MASKING = "possible-gradient-masking"
ZERO_GRADIENTS = "zero-gradients"
STOCHASTIC_NO_EOT = "stochastic-no-eot"
SCORE_MISMATCH = "score-mismatch"
#: Flags only ``grid_flags`` gives: they depend on the other cells of a grid and are recomputed with it.
GRID_ONLY_FLAGS = frozenset({NON_MONOTONE_EPS, GRADIENT_MASKING})

#: Config fields holding an attack's iteration budget, in the order they are looked for.
ITERATION_FIELDS = ("steps", "apgd_steps", "queries")


def cell_flags(
    detector: Any,
    attack: Attack,
    x: Tensor,
    is_anomaly: Tensor,
    clean_scores: np.ndarray | Tensor,
    adv_scores: np.ndarray | Tensor,
    *,
    generator: torch.Generator | None = None,
    result: AttackResult | None = None,
) -> list[str]:
    """Per-cell checks of one attacked test set (see the module docstring for each flag and its cost).

    ``result``, the attack's output, lets the tracked robust scores be checked against fresh ones and gives an
    ensemble's members for the convergence check.
    """
    clean = torch.as_tensor(np.asarray(clean_scores)).float()
    adv = torch.as_tensor(np.asarray(adv_scores)).float()
    subset = check_subset(is_anomaly)
    flags: list[str] = []
    head = subset[:EPS0_SAMPLES]
    if eps0_mismatch(detector, attack, x[head], is_anomaly[head], clean[head], generator):
        flags.append(EPS0_MISMATCH)
    if not_converged(Evaluation(detector, attack, result, x, is_anomaly, clean, adv), subset, generator):
        flags.append(NOT_CONVERGED)
    if gradient_mismatch(detector, x[subset[:GRADIENT_CHECK_SAMPLES]], attack.config.eps, generator):
        flags.append(GRADIENT_MISMATCH)
    if getattr(detector, "stochastic", False) and attack.eot_draws(detector) <= 1:
        flags.append(STOCHASTIC_NO_EOT)
    share = zero_gradient_share(detector, x, batch_size=attack.config.batch_size)
    if share > ZERO_GRADIENT_SHARE:
        flags.append(f"{ZERO_GRADIENTS}:{share:.2f}")
    if result is not None and tracked_scores_differ(detector, result, clean.numpy()):
        flags.append(SCORE_MISMATCH)
    return flags


def check_subset(is_anomaly: Tensor, limit: int = CHECK_SAMPLES) -> Tensor:
    """Up to ``limit`` test indices, half normal and half anomalous, evenly spaced within each group, interleaved
    (so any prefix stays balanced)."""
    normal, anomalous = (torch.nonzero(is_anomaly.bool() == label).flatten() for label in (False, True))
    normal, anomalous = (
        normal[evenly_spaced(normal.numel(), limit // 2)],
        anomalous[evenly_spaced(anomalous.numel(), limit // 2)],
    )
    n = min(normal.numel(), anomalous.numel())
    return torch.cat([torch.stack([normal[:n], anomalous[:n]], 1).flatten(), normal[n:], anomalous[n:]])


def variant(attack: Attack, **changes: Any) -> Attack:
    """A fresh attack of the same class with some config fields changed."""
    return type(attack)(dataclasses.replace(attack.config, **changes))


def scores_close(a: Tensor, b: Tensor, reference: Tensor) -> bool:
    """Whether two score vectors agree within ``SCORE_RTOL`` of their magnitude plus ``SCORE_RTOL`` of the spread
    of ``reference`` (float noise of a different batch size passes)."""
    _, spread = centre_and_spread(reference)
    return torch.allclose(a.float(), b.float(), rtol=SCORE_RTOL, atol=SCORE_RTOL * float(spread))


def eps0_mismatch(
    detector: Any, attack: Attack, x: Tensor, is_anomaly: Tensor, clean: Tensor, generator: torch.Generator | None
) -> bool:
    """Whether the attack run at eps=0 moves an input or changes a score (a stochastic score is not compared)."""
    try:
        result = variant(attack, eps=0.0).run(detector, x, is_anomaly, generator=generator)
    except OutOfBall:  # it moved an input at eps=0
        return True
    if not torch.equal(result.x_adv, x):
        return True
    if getattr(detector, "stochastic", False):
        return False
    return not scores_close(result.completed_scores(detector, clean), clean, clean)


def iteration_field(attack: Any) -> str | None:
    """The config field holding an attack's iteration budget (``steps``, ``apgd_steps`` or ``queries``)."""
    return next((name for name in ITERATION_FIELDS if hasattr(attack.config, name)), None)


def doubled(attack: Attack) -> Attack | None:
    """The attack with twice its iterations; None if it has no iteration budget."""
    name = iteration_field(attack)
    return variant(attack, **{name: 2 * int(getattr(attack.config, name))}) if name else None


@dataclass(frozen=True)
class Evaluation:
    """One attacked test set: what the convergence check reruns and compares with."""

    detector: Any
    attack: Attack
    result: AttackResult | None
    x: Tensor
    is_anomaly: Tensor
    clean: Tensor
    adv: Tensor


def strongest_white_box(cell: Evaluation) -> tuple[Attack, Tensor] | None:
    """The cell's strongest white-box attack and its robust scores: the attack itself, or for an ensemble its
    white-box member with the lowest AUROC (members with non-finite scores left out); None when there is none."""
    result = cell.result
    if result is None or not result.members:
        return (cell.attack, cell.adv) if cell.attack.white_box else None
    labels = cell.is_anomaly.numpy().astype(bool)
    white = {m.name for m in result.members if m.white_box}
    scored = {n: s for n, s in result.member_scores(cell.clean).items() if n in white and torch.isfinite(s).all()}
    if not scored:
        return None
    name = min(scored, key=lambda n: auroc(scored[n].numpy(), labels))
    members, _ = cell.attack.members(cell.detector, cell.x)
    return members[name], scored[name]


def not_converged(cell: Evaluation, subset: Tensor, generator: torch.Generator | None) -> bool:
    """Whether twice the iterations of the strongest white-box attack lower its AUROC on ``subset`` by more than
    ``CONVERGENCE_TOLERANCE``."""
    probe = strongest_white_box(cell)
    longer = doubled(probe[0]) if probe is not None else None
    labels = cell.is_anomaly[subset].numpy().astype(bool)
    if longer is None or longer.config.eps == 0 or labels.all() or not labels.any():
        return False
    rerun = longer.run(cell.detector, cell.x[subset], cell.is_anomaly[subset], generator=generator)
    after = auroc(rerun.completed_scores(cell.detector, cell.clean[subset]).numpy(), labels)
    return after < auroc(probe[1][subset].numpy(), labels) - CONVERGENCE_TOLERANCE


def gradient_mismatch(detector: Any, x: Tensor, eps: float, generator: torch.Generator | None) -> bool:
    """Whether autograd's directional derivatives of the score disagree with central finite differences.

    Along ``GRADIENT_DIRECTIONS`` random sign directions u per sample, with step h = max(eps, 1/255) / 4 (the
    attack's scale): d_auto = <grad s(x), u>, d_fd = (s(x + h u) - s(x - h u)) / 2h. Flags when the cosine between
    the vectors of all d_auto and all d_fd is below ``GRADIENT_COSINE`` (a smooth or piecewise-linear score gives
    close to 1; a gradient swamped by sub-eps oscillation gives about 0). Stochastic scores are not checked
    (their finite differences are noise), nor scores that are flat along every direction.
    """
    if x.shape[0] == 0 or getattr(detector, "stochastic", False):
        return False
    h = max(eps, 1 / 255) / 4
    xs = x.to(detector.device)
    source = generator.device if generator is not None else "cpu"
    x_req = xs.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(detector.score(x_req).sum(), x_req, allow_unused=True)  # one gradient: deterministic
    if grad is None:
        return False
    auto, finite = [], []
    for _ in range(GRADIENT_DIRECTIONS):
        u = torch.where(torch.rand(tuple(xs.shape), generator=generator, device=source) < 0.5, -1.0, 1.0)
        u = u.to(xs.device)
        with torch.no_grad():
            auto.append((grad * u).flatten(1).sum(1).double())
            finite.append(((detector.score(xs + h * u) - detector.score(xs - h * u)) / (2 * h)).double())
    a, f = torch.cat(auto), torch.cat(finite)
    if not (a.norm() > 0 and f.norm() > 0):
        return False
    return bool((a @ f) / (a.norm() * f.norm()) < GRADIENT_COSINE)


def tracked_scores_differ(detector: Any, result: AttackResult, clean_scores: np.ndarray) -> bool:
    """Whether up to ``SCORE_CHECK_SAMPLES`` tracked scores differ from fresh ones (see ``scores_close``)."""
    tracked = torch.nonzero(~torch.isnan(result.scores)).flatten()
    if tracked.numel() == 0:
        return False
    index = tracked[evenly_spaced(tracked.numel(), SCORE_CHECK_SAMPLES)]
    fresh = detector.score_batched(result.x_adv[index]).float().cpu()
    return not scores_close(result.scores[index], fresh, torch.as_tensor(clean_scores))


def evenly_spaced(n: int, limit: int) -> Tensor:
    """Up to ``limit`` distinct, evenly spaced indices into ``n`` items (all of them when ``n <= limit``)."""
    return torch.linspace(0, n - 1, min(limit, n)).round().long().unique()


def zero_gradient_share(detector: Any, x: Tensor, *, batch_size: int = 256, limit: int = GRADIENT_SAMPLES) -> float:
    """Share of (up to ``limit``, evenly spaced) inputs whose score gradient is all zero or not finite."""
    if x.shape[0] == 0:
        return 0.0
    index = evenly_spaced(x.shape[0], limit)
    dead = 0
    for chunk in x[index].split(batch_size):
        x_req = chunk.to(detector.device).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(detector.score(x_req).sum(), x_req, allow_unused=True)
        if grad is None:
            dead += chunk.shape[0]
            continue
        flat = grad.flatten(1)
        dead += int(((flat == 0).all(dim=1) | ~torch.isfinite(flat).all(dim=1)).sum())
    return dead / index.numel()


def grid_flags(records: Iterable[Record]) -> dict[str, list[str]]:
    """Cross-cell checks; returns record key -> flags (only keys with flags), for the runner to merge."""
    usable = [r for r in records if r.ok and r.robust_auroc is not None]
    flags: dict[str, list[str]] = defaultdict(list)
    for record in usable:
        if float(record.eps) == 0 and abs(record.robust_auroc - record.clean_auroc) > EPS0_TOLERANCE:
            flags[record.key].append(EPS0_MISMATCH)
    for key in non_monotone_eps(usable):
        flags[key].append(NON_MONOTONE_EPS)
    for key in gradient_masking(usable) + masked_ensembles(usable):
        flags[key].append(GRADIENT_MASKING)
    return {key: sorted(set(values)) for key, values in flags.items()}


def non_monotone_eps(records: list[Record]) -> list[str]:
    """Keys of records whose robust AUROC exceeds the lowest one at a smaller eps (or the clean AUROC) by the
    tolerance."""
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for record in records:
        groups[(*cell_of(record), record.attack)].append(record)
    flagged = []
    for group in groups.values():
        group.sort(key=lambda r: float(r.eps))
        lowest = min(r.clean_auroc for r in group)
        for record in group:
            if record.robust_auroc > lowest + MONOTONE_TOLERANCE:
                flagged.append(record.key)
            lowest = min(lowest, record.robust_auroc)
    return flagged


def gradient_masking(records: list[Record]) -> list[str]:
    """Keys of white-box and gradient-free records of cells where the gradient-free attack wins by the tolerance."""
    groups: dict[tuple, dict[str, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        kind = attack_kind(record.attack)
        if kind is not None:
            side = split_side(record.attack)[1]
            groups[(*cell_of(record), float(record.eps), side)][kind].append(record)
    flagged = []
    for kinds in groups.values():
        white, free = kinds.get("white-box", []), kinds.get("gradient-free", [])
        if white and free and gradient_free_wins([r.robust_auroc for r in white], [r.robust_auroc for r in free]):
            flagged.extend(r.key for r in white + free)
    return flagged


def masked_ensembles(records: list[Record]) -> list[str]:
    """Keys of ensemble records (their ``members`` carry ``white_box``) whose gradient-free member wins."""
    flagged = []
    for record in records:
        members = [m for m in record.members or [] if "white_box" in m]
        white = [m["robust_auroc"] for m in members if m["white_box"]]
        free = [m["robust_auroc"] for m in members if not m["white_box"]]
        if white and free and gradient_free_wins(white, free):
            flagged.append(record.key)
    return flagged


def gradient_free_wins(white: list[float], free: list[float]) -> bool:
    """Whether the best gradient-free AUROC is below every white-box one by more than ``MASKING_TOLERANCE``."""
    return min(free) < min(white) - MASKING_TOLERANCE


def attack_kind(name: str) -> str | None:
    """``white-box`` for gradient attacks, ``gradient-free`` for score-only ones, None for ensembles/unknown."""
    if name not in ATTACKS:
        return None
    cls = ATTACKS.get(name)
    if cls.ensemble:
        return None
    return "white-box" if cls.white_box else "gradient-free"


def cell_of(record: Record) -> tuple[str, int, str, int, str]:
    """The (dataset, class, detector, seed, norm) evaluation a record belongs to, attack and budget aside."""
    return record.dataset, record.normal_class, record.detector, record.seed, record.norm


def attack_steps(attack: Any) -> int | None:
    """The iteration budget of an attack, for records' ``steps`` field."""
    name = iteration_field(attack)
    return int(getattr(attack.config, name)) if name else None
