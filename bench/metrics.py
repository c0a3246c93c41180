"""AUROC and the per-sample worst case over attacks (anomalies are positives; higher score = more anomalous)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def auroc(scores: np.ndarray, is_anomaly: np.ndarray) -> float:
    """Area under the ROC curve with anomalies as positives; ties count one half."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(is_anomaly).astype(bool)
    if labels.all() or not labels.any():
        raise ValueError("AUROC needs both normal and anomalous samples")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    return float(roc_auc_score(labels, scores))


def worst_case(adv_scores: list[np.ndarray], is_anomaly: np.ndarray) -> np.ndarray:
    """Per-sample worst case over attacks: the highest score of each normal, the lowest of each anomaly.

    AUROC is monotone in each sample's score, so this is a valid (stronger) adversary for an ensemble.
    """
    stacked = np.stack([np.asarray(s, dtype=np.float64) for s in adv_scores])
    return np.where(np.asarray(is_anomaly).astype(bool), stacked.min(axis=0), stacked.max(axis=0))
