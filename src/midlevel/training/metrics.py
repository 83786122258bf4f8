"""Per-column Pearson r and R^2, the numbers the 2019 paper and the model cards report, with their counts and
bootstrap intervals: the one scoring code of ``recipes.evaluate`` (the cards) and ``midlevel evaluate``."""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

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


def resample_sets(groups: Sequence | None, n_rows: int, resamples: int = 1000, seed: int = 0
                  ) -> list[np.ndarray]:
    """Row indices of each bootstrap resample: whole ``groups`` (e.g. pieces) drawn with replacement, or
    single rows when ``groups`` is None."""
    if groups is None:
        members = [np.array([i]) for i in range(n_rows)]
    else:
        labels = np.asarray(groups, dtype=object)
        position: dict[Any, list[int]] = {}
        for i, g in enumerate(labels.tolist()):
            position.setdefault(g, []).append(i)
        members = [np.asarray(v) for v in position.values()]
    rng = np.random.default_rng(seed)
    return [np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])
            for _ in range(resamples)]


def _column_r(y_true: np.ndarray, y_pred: np.ndarray, valid: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """r of each column over ``rows`` (each column only where its truth is ``valid``)."""
    full = valid[rows].all(axis=0)
    r = np.full(y_true.shape[1], np.nan)
    if full.any():
        r[full] = pearson_per_column(y_true[np.ix_(rows, full)], y_pred[np.ix_(rows, full)])
    for k in np.flatnonzero(~full):
        sel = rows[valid[rows, k]]
        if len(sel) >= 2:
            r[k] = pearson_per_column(y_true[sel, k:k + 1], y_pred[sel, k:k + 1])[0]
    return r


def score_table(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str], *, counts: bool = False,
                resamples: Sequence[np.ndarray] | None = None) -> dict[str, dict[str, Any]]:
    """``metric_table`` of the rated cells (a NaN truth is an unrated cell, left out of its column).

    ``counts`` adds each column's ``n`` (rated clips). With ``resamples`` (``resample_sets``) each column
    also gets ``r_ci``, the 2.5 and 97.5 percentiles of its r over the resamples, and "mean" the interval
    of the mean r."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    valid = np.isfinite(y_true)
    if valid.all():
        table = metric_table(y_true, y_pred, names)
    else:
        r, r2 = np.full(len(names), np.nan), np.full(len(names), np.nan)
        for k in range(len(names)):
            rows = valid[:, k]
            if rows.sum() >= 2:
                one = metric_table(y_true[rows, k:k + 1], y_pred[rows, k:k + 1], [names[k]])[names[k]]
                r[k], r2[k] = one["r"], one["r2"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # every column unrated: the mean is NaN
            table = {n: {"r": float(r[i]), "r2": float(r2[i])} for i, n in enumerate(names)}
            table["mean"] = {"r": float(np.nanmean(r)), "r2": float(np.nanmean(r2))}
    if counts:
        for i, n in enumerate(names):
            table[n]["n"] = int(valid[:, i].sum())
    if resamples is not None:
        boot = np.array([_column_r(y_true, y_pred, valid, idx) for idx in resamples]).reshape(-1, len(names))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample with a constant column
            lo, hi = np.nanpercentile(boot, [2.5, 97.5], axis=0)
            mean_lo, mean_hi = np.nanpercentile(np.nanmean(boot, axis=1), [2.5, 97.5])
        for i, n in enumerate(names):
            table[n]["r_ci"] = [float(lo[i]), float(hi[i])]
        table["mean"]["r_ci"] = [float(mean_lo), float(mean_hi)]
    return table


def score_outputs(columns: Mapping[str, tuple[np.ndarray, np.ndarray, Sequence[str]]], *,
                  groups: Sequence | None = None, counts: bool = False, resamples: int = 0,
                  seed: int = 0) -> dict[str, Any]:
    """{"n": rows, "concepts": table, "targets": table} for ``columns`` = {"concepts": (truth, predicted,
    names), "targets": (...)} (either may be absent). ``counts`` adds each column's n; ``resamples`` > 0
    adds bootstrap intervals of r (``score_table``), resampled by ``groups`` when given. Without either,
    the tables are exactly the model cards' (``recipes.evaluate``); ``midlevel evaluate``
    (``midlevel.evaluation``) adds both."""
    n = len(next(iter(columns.values()))[0]) if columns else 0
    sets = resample_sets(groups, n, resamples, seed) if resamples else None
    result: dict[str, Any] = {"n": n}
    for kind, (truth, predicted, names) in columns.items():
        result[kind] = score_table(truth, predicted, names, counts=counts, resamples=sets)
    return result
