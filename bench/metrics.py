"""AUROC, the per-sample worst case over attacks, bootstrap resamples (bench.results aggregates over classes and seeds).

Anomalies are positives; higher score = more anomalous.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

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
