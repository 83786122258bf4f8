"""Measures that compare explanation methods: faithfulness, stability, and agreement with truth.

* **Deletion** (faithfulness): remove the features an explanation credits most first (replace
  them by the baseline) and record how far the output drops; the area under that curve, against
  the same for random orders, says whether the ranking finds what the model uses.
* **Perturbations** (stability): small changes a listener would not call a different clip --
  noise at 30 dB SNR, 3 dB gain, a 50 ms delay -- after which an explanation should look alike
  (cosine similarity of the targets x features attribution matrices).
* **Truth** (controlled corpus only): per emotion, the Spearman correlation between a method's
  global concept importance (mean |attribution| over clips) and |generating coefficient|.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from scipy.stats import spearmanr

from ..datasets import DatasetError

GROUND_TRUTH_FILE = "ground_truth.json"
COEFFICIENT_KEYS = ("W", "weights", "coefficients", "generating_coefficients")
PERTURBATIONS = ("noise_30db", "gain_3db", "shift_50ms")


# -- faithfulness --------------------------------------------------------------------------
def deletion_auc(value: Callable[[np.ndarray], np.ndarray], attributions: np.ndarray, *,
                 steps: int | None = None, n_random: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per target: area under the output drop as top-attributed features are removed, and for random orders.

    ``value`` maps (B, M) presence masks to (B, T) outputs; ``attributions`` is (T, M). Features
    are removed in order of decreasing (signed) attribution -- the claimed strongest evidence for
    a high output first -- at ``steps + 1`` evenly spaced counts from none to all (default: one at
    a time), and the drop ``output(all) - output(rest)`` is integrated over the fraction removed,
    so areas are in output units. For an additive model explained exactly (attributions = the
    output change each removal causes) this order is optimal: no order has a larger area.
    """
    n_targets, n_features = attributions.shape
    counts = np.unique(np.round(np.linspace(0, n_features, (steps or n_features) + 1)).astype(int))
    rng = np.random.default_rng(seed)
    orders = [np.argsort(-a, kind="stable") for a in attributions]
    orders += [rng.permutation(n_features) for _ in range(n_random)]
    masks = np.ones((len(orders), len(counts), n_features))
    for i, order in enumerate(orders):
        for j, k in enumerate(counts):
            masks[i, j, order[:k]] = 0.0
    outputs = value(masks.reshape(-1, n_features)).reshape(len(orders), len(counts), n_targets)
    drop = value(np.ones((1, n_features)))[0] - outputs
    x = counts / n_features
    ranked = np.array([np.trapezoid(drop[t, :, t], x) for t in range(n_targets)])
    random = np.trapezoid(drop[n_targets:], x, axis=1).mean(axis=0)
    return ranked, random


def concept_value(predict: Callable[[np.ndarray], np.ndarray], concepts: np.ndarray,
                  background: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Presence masks -> mean output of ``predict`` with absent concepts taken from each background row.

    The same interventional value function that SHAP over concepts explains, so an exact
    attribution of an additive head predicts every point of its deletion curve.
    """
    def value(keep: np.ndarray) -> np.ndarray:
        rows = np.where(keep[:, None, :] > 0.5, concepts[None, None], background[None])  # (B, R, K)
        out = np.asarray(predict(rows.reshape(-1, rows.shape[-1])))
        return out.reshape(len(keep), len(background), -1).mean(axis=1)
    return value


# -- stability -----------------------------------------------------------------------------
def perturb(samples: np.ndarray, sample_rate: int, kind: str, *, seed: int = 0) -> np.ndarray:
    """One of ``PERTURBATIONS`` applied to mono samples (same length, float32)."""
    x = np.asarray(samples, dtype=np.float64)
    if kind == "noise_30db":
        rms = np.sqrt(np.mean(x ** 2))
        y = x + np.random.default_rng(seed).standard_normal(len(x)) * rms * 10 ** (-30 / 20)
    elif kind == "gain_3db":
        y = x * 10 ** (3 / 20)
    elif kind == "shift_50ms":
        delay = int(round(0.05 * sample_rate))
        y = np.concatenate([np.zeros(delay), x[:len(x) - delay]])
    else:
        raise ValueError(f"unknown perturbation {kind!r}; choose from {PERTURBATIONS}")
    return y.astype(np.float32)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two attribution arrays, flattened; 1 when both are all zero."""
    a, b = np.ravel(a), np.ravel(b)
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    if norm == 0:
        return float(np.allclose(a, b))
    return float(a @ b / norm)


# -- truth ---------------------------------------------------------------------------------
def _matrix(raw, concepts: Sequence[str], targets: Sequence[str], data: dict, where: Path) -> np.ndarray:
    """(K, T) from {concept: {target: v}}, {target: {concept: v}} or a nested list."""
    if isinstance(raw, dict):
        if set(concepts) <= set(raw):
            return np.array([[raw[c][t] for t in targets] for c in concepts], dtype=np.float64)
        if set(targets) <= set(raw):
            return np.array([[raw[t][c] for t in targets] for c in concepts], dtype=np.float64)
        raise DatasetError(where, f"coefficients are keyed by {sorted(raw)}; expected the concepts "
                                  f"{list(concepts)} or the targets {list(targets)}")
    rows = data.get("features", data.get("concepts", list(concepts)))
    cols = data.get("emotions", data.get("targets", list(targets)))
    table = np.asarray(raw, dtype=np.float64)
    if table.shape != (len(rows), len(cols)):
        raise DatasetError(where, f"coefficient table has shape {table.shape}, expected ({len(rows)}, {len(cols)})")
    return table[np.ix_([rows.index(c) for c in concepts], [cols.index(t) for t in targets])]


def read_generating_coefficients(path: str | Path, concepts: Sequence[str], targets: Sequence[str]) -> np.ndarray:
    """(K, T) generating coefficients of each target on each concept from a corpus's ground truth.

    ``path`` is the corpus root or the JSON file; the table is read from the first of
    ``COEFFICIENT_KEYS`` present, in either orientation. Concepts it lacks are looked up in
    ``outside_terms`` (the controlled corpus's loudness, tempo and register: their ``B``).
    """
    path = Path(path)
    if path.is_dir():
        path = path / GROUND_TRUTH_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    key = next((k for k in COEFFICIENT_KEYS if k in data), None)
    if key is None:
        raise DatasetError(path, f"no generating coefficients: expected one of the keys {list(COEFFICIENT_KEYS)}")
    raw = data[key]
    outside = data.get("outside_terms", {})
    if isinstance(raw, dict) and outside and set(concepts) & set(raw):
        # the controlled corpus keeps the outside concepts' weights (loudness, tempo, register) apart, per
        # standard deviation of their factor, which is one of their rating (an increasing affine map of it)
        raw = {**{c: term["B"] for c, term in outside.items() if c not in raw}, **raw}
    try:
        return _matrix(raw, concepts, targets, data, path)
    except (KeyError, ValueError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(path, f"{key!r} lacks a concept or target: {exc}") from None


def truth_agreement(importance: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """(T,) Spearman r between importance (T, K) and |coefficients| (K, T), per target.

    NaN where either side ranks nothing (e.g. a sparse head that gives a target no concept).
    """
    rho = []
    for t in range(len(importance)):
        a, b = importance[t], np.abs(coefficients[:, t])
        rho.append(np.nan if np.ptp(a) == 0 or np.ptp(b) == 0 else spearmanr(a, b).statistic)
    return np.array(rho)
