"""AUROC, the per-sample worst case over attacks, aggregation over classes and seeds, bootstrap CIs.

Anomalies are positives; higher score = more anomalous.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from bench.store import Record

#: The attack name of the per-sample worst case over every attack of a cell group (computed, never registered).
WORST_CASE = "worst-case"


def auroc(scores: np.ndarray, is_anomaly: np.ndarray) -> float:
    """Area under the ROC curve with anomalies as positives; ties count one half."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(is_anomaly).astype(bool)
    if labels.all() or not labels.any():
        raise ValueError("AUROC needs both normal and anomalous samples")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    return float(roc_auc_score(labels, scores))


def worst_case_sources(adv_scores: list[np.ndarray], is_anomaly: np.ndarray) -> np.ndarray:
    """Per sample, the index of the attack whose score is its worst case (the first one on ties)."""
    stacked = np.stack([np.asarray(s, dtype=np.float64) for s in adv_scores])
    return np.where(np.asarray(is_anomaly).astype(bool), stacked.argmin(axis=0), stacked.argmax(axis=0))


def worst_case(adv_scores: list[np.ndarray], is_anomaly: np.ndarray) -> np.ndarray:
    """Per-sample worst case over attacks: the highest score of each normal, the lowest of each anomaly.

    AUROC is monotone in each sample's score, so this is a valid (stronger) adversary than any one attack.
    """
    stacked = np.stack([np.asarray(s, dtype=np.float64) for s in adv_scores])
    return stacked[worst_case_sources(adv_scores, is_anomaly), np.arange(stacked.shape[1])]


# ---------------------------------------------------------------------------------------------------------------
# Aggregation over classes and seeds, bootstrap confidence intervals
# ---------------------------------------------------------------------------------------------------------------

#: Flag added to an aggregate when some of the cells it averages failed (its mean covers fewer classes).
INCOMPLETE_FLAG = "incomplete"


@dataclass(frozen=True)
class Summary:
    """An AUROC averaged over classes, then mean ± sample standard deviation over seeds.

    Attributes:
        mean: mean over seeds of the per-seed class means (a fraction in [0, 1]).
        std: sample standard deviation over seeds (ddof=1); None with a single seed.
        per_seed: the per-seed class means, in seed order.
        n_classes: the fewest classes any seed's mean covers.
        flags: sorted union of the flags of every averaged cell (plus ``incomplete`` when cells failed).
    """

    mean: float
    std: float | None
    per_seed: tuple[float, ...]
    n_classes: int
    flags: tuple[str, ...] = ()

    @property
    def n_seeds(self) -> int:
        return len(self.per_seed)


#: (dataset, detector, (attack, norm, eps)): one leaderboard cell.
CellColumn = tuple[str, str, tuple[str, str, float]]


def attack_key(record: Record) -> tuple[str, str, float]:
    """The (attack, norm, eps) a record was evaluated under."""
    return record.attack, record.norm or "", float(record.eps)


def summarise_seeds(per_seed: dict[int, list[float]], flags: set[str], incomplete: bool) -> Summary | None:
    """Class means per seed -> mean ± std over seeds (None when no seed has a value)."""
    means = [float(np.mean(values)) for _, values in sorted(per_seed.items()) if values]
    if not means:
        return None
    std = float(np.std(means, ddof=1)) if len(means) > 1 else None
    n_classes = min(len(values) for values in per_seed.values() if values)
    all_flags = flags | ({INCOMPLETE_FLAG} if incomplete else set())
    return Summary(float(np.mean(means)), std, tuple(means), n_classes, tuple(sorted(all_flags)))


def aggregate_robust(records: list[Record]) -> dict[CellColumn, Summary]:
    """Robust AUROC per (dataset, detector, (attack, norm, eps)): mean over classes per seed, then over seeds."""
    groups: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    flags: dict[tuple, set[str]] = defaultdict(set)
    incomplete: dict[tuple, bool] = defaultdict(bool)
    for record in records:
        key = (record.dataset, record.detector, attack_key(record))
        per_seed = groups[key]
        if record.ok and record.robust_auroc is not None:
            per_seed[int(record.seed)].append(float(record.robust_auroc))
            flags[key].update(record.flags)
        else:
            per_seed.setdefault(int(record.seed), [])
            incomplete[key] = True
    out = {key: summarise_seeds(per_seed, flags[key], incomplete[key]) for key, per_seed in groups.items()}
    return {key: summary for key, summary in out.items() if summary is not None}


def aggregate_clean(records: list[Record]) -> dict[tuple[str, str], Summary]:
    """Clean AUROC per (dataset, detector): one value per fit (shared by its attacks), averaged like robust AUROC."""
    per_fit: dict[tuple, float | None] = {}
    for record in records:
        fit = (record.dataset, record.detector, int(record.seed), record.normal_class)
        if record.ok and record.clean_auroc is not None:
            per_fit[fit] = float(record.clean_auroc)
        else:
            per_fit.setdefault(fit, None)
    groups: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    incomplete: dict[tuple, bool] = defaultdict(bool)
    for (dataset, detector, seed, _), value in per_fit.items():
        groups[dataset, detector].setdefault(seed, [])
        if value is None:
            incomplete[dataset, detector] = True
        else:
            groups[dataset, detector][seed].append(value)
    out = {key: summarise_seeds(per_seed, set(), incomplete[key]) for key, per_seed in groups.items()}
    return {key: summary for key, summary in out.items() if summary is not None}


def _ranked_auroc(scores: np.ndarray, n_anomaly: int) -> np.ndarray:
    """Row-wise AUROC of [B, N] scores whose first ``n_anomaly`` columns are the anomalies (Mann-Whitney U)."""
    ranks = rankdata(scores, axis=1)
    n_normal = scores.shape[1] - n_anomaly
    u = ranks[:, :n_anomaly].sum(axis=1) - n_anomaly * (n_anomaly + 1) / 2
    return u / (n_anomaly * n_normal)


def bootstrap_aurocs(
    scores: np.ndarray, is_anomaly: np.ndarray, *, n_resamples: int = 1000, generator: torch.Generator | None = None
) -> np.ndarray:
    """AUROC of each of ``n_resamples`` stratified bootstrap resamples of one cell's samples [n_resamples].

    Normals and anomalies are resampled separately, so every resample keeps both groups; ``generator`` (seed 0
    when None) draws the anomalies' indices, then the normals'.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(is_anomaly).astype(bool)
    auroc(scores, labels)  # validates labels and finiteness
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    anomalies, normals = scores[labels], scores[~labels]
    pick_a = torch.randint(len(anomalies), (n_resamples, len(anomalies)), generator=generator).numpy()
    pick_n = torch.randint(len(normals), (n_resamples, len(normals)), generator=generator).numpy()
    return _ranked_auroc(np.concatenate([anomalies[pick_a], normals[pick_n]], axis=1), len(anomalies))


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap values."""
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def bootstrap_auroc_ci(
    scores: np.ndarray,
    is_anomaly: np.ndarray,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of one cell's AUROC (``bootstrap_aurocs``), as fractions (low, high).

    Args:
        scores: per-sample scores [N], higher = more anomalous.
        is_anomaly: boolean labels [N].
        n_resamples: number of bootstrap resamples.
        level: coverage of the interval, e.g. 0.95.
        generator: the seeded source of the resampling indices (seed 0 when None).
    """
    values = bootstrap_aurocs(scores, is_anomaly, n_resamples=n_resamples, generator=generator)
    return percentile_interval(values, level)
