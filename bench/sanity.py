"""The sanity ladder: flags that mark an evaluation as unreliable (they never change its numbers).

Per cell (``cell_flags``, run by the runner right after a cell is attacked):
- ``eps0-mismatch``: the attack at eps=0 (which returns its input) does not reproduce the clean AUROC;
- ``stochastic-no-eot``: a stochastic detector attacked with one draw per objective evaluation;
- ``zero-gradients:<share>``: more than ``ZERO_GRADIENT_SHARE`` of the test inputs have an all-zero (or non-finite)
  input gradient of the score (the share is part of the flag, e.g. ``zero-gradients:0.42``);
- ``score-mismatch``: the robust scores the attack tracked (reused instead of a final score pass) differ from a
  fresh ``score_batched`` of the same adversarial inputs, checked on up to ``SCORE_CHECK_SAMPLES`` of them (a
  score that depends on its batch, or an attack tracking something other than the score).

Across cells (``grid_flags``, run on all records of a run):
- ``eps0-mismatch``: a record at eps=0 whose robust AUROC differs from its clean AUROC;
- ``non-monotone-eps`` / ``non-monotone-steps``: robust AUROC rises by more than ``MONOTONE_TOLERANCE`` with a
  larger eps (the clean AUROC counts as eps=0) or with more steps (records carrying a ``steps`` field);
- ``possible-gradient-masking``: a gradient-free attack (square) beats every white-box attack of the same cell
  by more than ``MASKING_TOLERANCE``; the white-box records and the square record are flagged.
Leaving the eps-ball or [0, 1] is a hard error raised by the attacks themselves, never a flag.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from attacks.base import ATTACKS, AttackResult, split_side
from attacks.common import centre_and_spread
from bench.metrics import auroc

MONOTONE_TOLERANCE = 0.005
MASKING_TOLERANCE = 0.01
EPS0_TOLERANCE = 1e-4
ZERO_GRADIENT_SHARE = 0.1
GRADIENT_SAMPLES = 256
SCORE_CHECK_SAMPLES = 16
SCORE_RTOL = 1e-4

EPS0_MISMATCH = "eps0-mismatch"
NON_MONOTONE_EPS = "non-monotone-eps"
NON_MONOTONE_STEPS = "non-monotone-steps"
GRADIENT_MASKING = "possible-gradient-masking"
ZERO_GRADIENTS = "zero-gradients"
STOCHASTIC_NO_EOT = "stochastic-no-eot"
SCORE_MISMATCH = "score-mismatch"
#: Flags only ``grid_flags`` gives: they depend on the other cells of a grid and are recomputed with it.
GRID_ONLY_FLAGS = frozenset({NON_MONOTONE_EPS, NON_MONOTONE_STEPS, GRADIENT_MASKING})

#: Record fields that identify one (dataset, class, detector, seed) evaluation under one norm.
CELL_FIELDS = ("dataset", "normal_class", "detector", "seed", "norm")


def cell_flags(
    detector: Any,
    attack: Any,
    x: Tensor,
    is_anomaly: Tensor,
    clean_scores: np.ndarray | Tensor,
    adv_scores: np.ndarray | Tensor,
    *,
    generator: torch.Generator | None = None,
    result: AttackResult | None = None,
) -> list[str]:
    """Per-cell checks of one attacked test set (costs one score pass and one gradient pass on <= 256 inputs).

    ``result``, the attack's output, lets the tracked robust scores be checked against fresh ones.
    """
    labels = np.asarray(is_anomaly).astype(bool)
    clean_auroc = auroc(np.asarray(clean_scores), labels)
    flags: list[str] = []
    if attack.config.eps == 0:
        eps0 = auroc(np.asarray(adv_scores), labels)
    else:
        eps0 = eps0_auroc(detector, attack, x, is_anomaly, generator)
    if abs(eps0 - clean_auroc) > EPS0_TOLERANCE:
        flags.append(EPS0_MISMATCH)
    if getattr(detector, "stochastic", False) and attack.eot_draws(detector) <= 1:
        flags.append(STOCHASTIC_NO_EOT)
    share = zero_gradient_share(detector, x, batch_size=attack.config.batch_size)
    if share > ZERO_GRADIENT_SHARE:
        flags.append(f"{ZERO_GRADIENTS}:{share:.2f}")
    if result is not None and tracked_scores_differ(detector, result, np.asarray(clean_scores)):
        flags.append(SCORE_MISMATCH)
    return flags


def tracked_scores_differ(detector: Any, result: AttackResult, clean_scores: np.ndarray) -> bool:
    """Whether up to ``SCORE_CHECK_SAMPLES`` tracked scores differ from fresh ones by more than ``SCORE_RTOL`` of
    their magnitude plus ``SCORE_RTOL`` of the clean scores' spread (float noise of a different batch size passes).
    """
    tracked = torch.nonzero(~torch.isnan(result.scores)).flatten()
    if tracked.numel() == 0:
        return False
    index = tracked[evenly_spaced(tracked.numel(), SCORE_CHECK_SAMPLES)]
    fresh = detector.score_batched(result.x_adv[index]).float().cpu()
    _, spread = centre_and_spread(torch.as_tensor(clean_scores))
    return not torch.allclose(result.scores[index], fresh, rtol=SCORE_RTOL, atol=SCORE_RTOL * float(spread))


def eps0_auroc(detector: Any, attack: Any, x: Tensor, is_anomaly: Tensor, generator=None) -> float:
    """AUROC of the scores of the same attack run with eps=0 (its output must be ``x`` itself)."""
    zero = type(attack)(dataclasses.replace(attack.config, eps=0.0))
    x_zero = zero.perturb(detector, x, is_anomaly, generator=generator)
    return auroc(detector.score_batched(x_zero).numpy(), np.asarray(is_anomaly).astype(bool))


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


def grid_flags(records: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """Cross-cell checks; returns record key -> flags (only keys with flags), for the runner to merge."""
    usable = [r for r in records if r.get("status", "ok") == "ok" and r.get("robust_auroc") is not None]
    flags: dict[str, list[str]] = defaultdict(list)
    for record in usable:
        if float(record["eps"]) == 0 and abs(record["robust_auroc"] - record["clean_auroc"]) > EPS0_TOLERANCE:
            flags[record["key"]].append(EPS0_MISMATCH)
    for key in non_monotone(usable, along="eps", include_clean=True):
        flags[key].append(NON_MONOTONE_EPS)
    for key in non_monotone([r for r in usable if r.get("steps") is not None], along="steps", include_clean=False):
        flags[key].append(NON_MONOTONE_STEPS)
    for key in gradient_masking(usable):
        flags[key].append(GRADIENT_MASKING)
    return {key: sorted(set(values)) for key, values in flags.items()}


def non_monotone(records: list[dict[str, Any]], *, along: str, include_clean: bool) -> list[str]:
    """Keys of records whose robust AUROC exceeds the lowest one at a smaller ``along`` value by the tolerance."""
    others = [f for f in ("eps", "steps") if f != along]
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[(*cell_of(record), record["attack"], *(record.get(f) for f in others))].append(record)
    flagged = []
    for group in groups.values():
        group.sort(key=lambda r: float(r[along]))
        lowest = min(r["clean_auroc"] for r in group) if include_clean else np.inf
        for record in group:
            if record["robust_auroc"] > lowest + MONOTONE_TOLERANCE:
                flagged.append(record["key"])
            lowest = min(lowest, record["robust_auroc"])
    return flagged


def gradient_masking(records: list[dict[str, Any]]) -> list[str]:
    """Keys of white-box and gradient-free records of cells where the gradient-free attack wins by the tolerance."""
    groups: dict[tuple, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        kind = attack_kind(record["attack"])
        if kind is not None:
            side = split_side(record["attack"])[1]
            groups[(*cell_of(record), float(record["eps"]), side)][kind].append(record)
    flagged = []
    for kinds in groups.values():
        white, free = kinds.get("white-box", []), kinds.get("gradient-free", [])
        if white and free:
            best_free = min(r["robust_auroc"] for r in free)
            if best_free < min(r["robust_auroc"] for r in white) - MASKING_TOLERANCE:
                flagged.extend(r["key"] for r in white + free)
    return flagged


def attack_kind(name: str) -> str | None:
    """``white-box`` for gradient attacks, ``gradient-free`` for score-only ones, None for ensembles/unknown."""
    if name not in ATTACKS:
        return None
    cls = ATTACKS.get(name)
    if getattr(cls, "ensemble", False):
        return None
    return "white-box" if cls.white_box else "gradient-free"


def cell_of(record: dict[str, Any]) -> tuple:
    """The evaluation a record belongs to, attack and budget aside."""
    return tuple(str(record.get(field)) for field in CELL_FIELDS)


def attack_steps(attack: Any) -> int | None:
    """The iteration budget of an attack (``steps``, ``apgd_steps`` or ``queries``), for records' ``steps`` field."""
    for field in ("steps", "apgd_steps", "queries"):
        if hasattr(attack.config, field):
            return int(getattr(attack.config, field))
    return None
