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
