"""CTR metrics: ROC AUC (ties get the average rank, i.e. count one half) and log loss."""
from __future__ import annotations

import numpy as np


def roc_auc(label: np.ndarray, score: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counting ½ (Mann–Whitney U)."""
    label = np.asarray(label).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    pos, neg = int(label.sum()), int((~label).sum())
    if pos == 0 or neg == 0:
        raise ValueError(f"AUC needs both classes; got {pos} positive and {neg} negative labels")
    order = np.argsort(score, kind="mergesort")
    sorted_scores = score[order]
    ranks = np.empty(len(score), dtype=np.float64)
    # average 1-based rank within each run of equal scores
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(score)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return float((ranks[label].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def log_loss(label: np.ndarray, prob: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross entropy, probabilities clipped to [eps, 1 − eps]."""
    label = np.asarray(label, dtype=np.float64)
    prob = np.clip(np.asarray(prob, dtype=np.float64), eps, 1 - eps)
    return float(-np.mean(label * np.log(prob) + (1 - label) * np.log(1 - prob)))
