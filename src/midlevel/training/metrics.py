"""Per-column Pearson r and R^2, the numbers the 2019 paper and the model cards report."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import r2_score


def pearson_per_column(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pearson r of each column; NaN where either column is constant."""
    a = np.asarray(y_true, dtype=np.float64)
    b = np.asarray(y_pred, dtype=np.float64)
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    denom = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(axis=0) / denom, np.nan)


def metric_table(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, float]]:
    """{name: {"r": .., "r2": ..}} for each column, plus "mean" over columns."""
    r = pearson_per_column(y_true, y_pred)
    r2 = r2_score(y_true, y_pred, multioutput="raw_values")
    table = {n: {"r": float(r[i]), "r2": float(r2[i])} for i, n in enumerate(names)}
    table["mean"] = {"r": float(np.nanmean(r)), "r2": float(np.mean(r2))}
    return table


def mean_r(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean Pearson r over columns, a constant prediction (r undefined) counting as 0, not skipped."""
    return float(np.nan_to_num(pearson_per_column(y_true, y_pred)).mean())


def paired_bootstrap_mean_r(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, *,
                            groups: Sequence | None = None, n: int = 2000, seed: int = 0) -> list[float]:
    """95% interval of ``mean_r(a) - mean_r(b)`` over resampled rows.

    With ``groups`` (e.g. the piece of each clip) whole groups are resampled, so clips cut from the
    same piece, whose errors are alike, do not count as independent evidence.
    """
    y_true, pred_a, pred_b = (np.asarray(v, dtype=np.float64) for v in (y_true, pred_a, pred_b))
    if groups is None:
        members = [np.array([i]) for i in range(len(y_true))]
    else:
        labels = np.asarray(groups)
        members = [np.flatnonzero(labels == g) for g in dict.fromkeys(labels.tolist())]
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        idx = np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])
        diffs.append(mean_r(y_true[idx], pred_a[idx]) - mean_r(y_true[idx], pred_b[idx]))
    return [float(v) for v in np.percentile(diffs, [2.5, 97.5])]
