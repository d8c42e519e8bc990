"""Exact ranking and calibration metrics for CTR models, in numpy.

Keras' streaming `AUC` approximates the ROC curve with thresholds; the numbers
reported by `widedeep train` / `evaluate` come from these exact versions.
"""

from __future__ import annotations

import numpy as np


def _as_arrays(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(
            f"labels and scores differ in length: {labels.shape[0]} vs {scores.shape[0]}"
        )
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity")
    return labels.astype(np.int64), scores


def _grouped_average_ranks(scores: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks (1-based, ties averaged) of each score within its group, and the sort order."""
    order = np.lexsort((scores, groups))
    g = groups[order]
    s = scores[order]
    n = len(order)
    idx = np.arange(n)
    group_start = np.r_[True, g[1:] != g[:-1]]
    start_of = np.maximum.accumulate(np.where(group_start, idx, 0))
    position = idx - start_of + 1.0
    block_start = group_start | np.r_[True, s[1:] != s[:-1]]
    block_id = np.cumsum(block_start) - 1
    block_mean = np.bincount(block_id, weights=position) / np.bincount(block_id)
    ranks = np.empty(n)
    ranks[order] = block_mean[block_id]
    return ranks, order


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U), ties counted as one half.

    Returns NaN when only one class (or no row) is present.
    """
    labels, scores = _as_arrays(labels, scores)
    if labels.size == 0:
        return float("nan")
    return float(_group_aucs(labels, scores, np.zeros(len(labels), np.int64))[0][0])


def _group_aucs(
    labels: np.ndarray, scores: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-group AUC (NaN where a group lacks a class) and per-group impression counts."""
    _, inverse = np.unique(groups, return_inverse=True)
    ranks, _ = _grouped_average_ranks(scores, inverse)
    n_groups = inverse.max() + 1 if len(inverse) else 0
    pos = np.bincount(inverse, weights=labels, minlength=n_groups)
    count = np.bincount(inverse, minlength=n_groups).astype(np.float64)
    neg = count - pos
    rank_sum = np.bincount(inverse, weights=ranks * labels, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = (rank_sum - pos * (pos + 1) / 2) / (pos * neg)
    values[(pos == 0) | (neg == 0)] = np.nan
    return values, count


def gauc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float:
    """Group AUC: impression-weighted mean of per-user AUC over users with both classes.

    References:
        Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018.
    """
    labels, scores = _as_arrays(labels, scores)
    groups = np.asarray(groups).reshape(-1)
    if groups.shape != labels.shape:
        raise ValueError(
            f"groups and labels differ in length: {groups.shape[0]} vs {labels.shape[0]}"
        )
    if labels.size == 0:
        return float("nan")
    values, count = _group_aucs(labels, scores, groups)
    valid = ~np.isnan(values)
    if not valid.any():
        return float("nan")
    return float(np.sum(values[valid] * count[valid]) / np.sum(count[valid]))


def logloss(labels: np.ndarray, probabilities: np.ndarray, epsilon: float = 1e-7) -> float:
    """Mean binary cross-entropy, with probabilities clipped to `[epsilon, 1 - epsilon]`."""
    labels, p = _as_arrays(labels, probabilities)
    if len(p) == 0:
        return float("nan")
    p = np.clip(p, epsilon, 1 - epsilon)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)))


def ctr_metrics(
    labels: np.ndarray, probabilities: np.ndarray, groups: np.ndarray
) -> dict[str, float]:
    """`auc`, `gauc`, `logloss`, and the observed and predicted click rates."""
    labels_arr, p = _as_arrays(labels, probabilities)
    return {
        "auc": auc(labels_arr, p),
        "gauc": gauc(labels_arr, p, groups),
        "logloss": logloss(labels_arr, p),
        "ctr": float(labels_arr.mean()) if len(p) else float("nan"),
        "mean_prediction": float(p.mean()) if len(p) else float("nan"),
        "examples": int(len(p)),
    }
