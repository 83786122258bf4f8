"""Emotion targets by construction: the ground-truth explanation of the controlled corpus.

For clip i and emotion k (the eight Soundtracks scales, 1-9)::

    e_ik = clip(5 + sum_j W[j, k] * z_ij + sum_o B[o, k] * x_io + noise_ik, 1, 9)

    z_ij = (rating_ij - RATING_MEAN[j]) / RATING_SD[j]          the seven mid-level ratings
    x_io  = standardised factors outside the seven features:
            loudness  = (velocity - 74) / 25.40                    (velocity ~ U(30, 118))
            tempo     = (ln(tempo_bpm) - 4.5236) / 0.35333         (tempo ~ log-U(50, 170))
            register  = transpose / 7.2111                         (transpose ~ U{-12..12})
    noise_ik ~ N(0, NOISE_SD^2), independent

W is the joint model's weight table of Chowdhury et al. 2019 (REFERENCES.md section 4), read as
"effect of one standard deviation of the feature, in emotion-scale points". The RATING_MEAN /
RATING_SD constants are fixed (the ratings' mean and sd over a 3000-clip calibration sample), so
z is close to standard. The numbers are written with every corpus to ``ground_truth.json``.
"""

from __future__ import annotations

import numpy as np

from ...concepts import EMOTIONS, MIDLEVEL_FEATURES
from ..controlled_labels import OUTSIDE_RANGES, OUTSIDE_STANDARDISATION, outside_ratings
from ..controlled_labels import transformed_factor as _transformed_factor

PUBLISHED_WEIGHTS: dict[str, tuple[float, ...]] = {
    # valence energy tension anger fear happy sad tender
    "minorness": (-0.01, -0.17, 0.47, 0.15, 0.28, -0.41, 0.27, -0.01),
    "tonal_stability": (0.19, -0.26, 0.21, -0.19, 0.24, 0.42, 0.10, 0.37),
    "dissonance": (-0.31, 0.03, 0.05, 0.18, 0.57, -0.46, -0.14, 0.01),
    "rhythm_stability": (0.06, 0.04, -0.30, -0.21, -0.24, -0.16, 0.36, 0.08),
    "rhythm_complexity": (0.27, 0.28, 0.38, 0.11, 0.11, 0.37, 0.11, -0.03),
    "articulation": (-0.04, 0.44, 0.24, 0.25, 0.01, 0.18, -0.54, -0.20),
    "melodiousness": (0.48, 0.10, -0.36, -0.14, -0.39, -0.01, 0.01, 0.47),
}
"""Joint-model weights (rows: feature; columns: EMOTIONS), REFERENCES.md section 4."""

OUTSIDE_WEIGHTS: dict[str, tuple[float, ...]] = {
    # valence energy tension anger fear happy sad tender
    "loudness": (0.00, 0.45, 0.25, 0.40, 0.10, 0.05, -0.20, -0.35),
    "tempo": (0.20, 0.40, 0.15, 0.15, 0.00, 0.35, -0.35, -0.20),
    "register": (0.20, 0.10, -0.05, -0.15, -0.10, 0.25, -0.05, 0.15),
}
"""Effects of the factors outside the bottleneck (per standard deviation of the factor)."""



# Mean and sd of each rating over a 3000-clip calibration sample (fixed constants).
RATING_MEAN: dict[str, float] = {
    "melodiousness": 5.19,
    "articulation": 5.44,
    "rhythm_stability": 6.38,
    "rhythm_complexity": 4.55,
    "dissonance": 4.36,
    "tonal_stability": 5.35,
    "minorness": 5.26,
}
RATING_SD: dict[str, float] = {
    "melodiousness": 2.85,
    "articulation": 2.68,
    "rhythm_stability": 2.34,
    "rhythm_complexity": 2.34,
    "dissonance": 2.25,
    "tonal_stability": 2.32,
    "minorness": 2.96,
}

INTERCEPT = 5.0
NOISE_SD = 0.3
EMOTION_RANGE = (1.0, 9.0)


def weight_matrix() -> np.ndarray:
    """W as a (7, 8) array, rows in MIDLEVEL_FEATURES order, columns in EMOTIONS order."""
    return np.array([PUBLISHED_WEIGHTS[f] for f in MIDLEVEL_FEATURES], dtype=float)


def outside_matrix() -> np.ndarray:
    """B as a (3, 8) array, rows loudness, tempo, register."""
    return np.array([OUTSIDE_WEIGHTS[o] for o in OUTSIDE_WEIGHTS], dtype=float)


def standardise_ratings(ratings) -> np.ndarray:
    """z for a mapping feature -> rating, or an (n, 7) array in MIDLEVEL_FEATURES order."""
    mean = np.array([RATING_MEAN[f] for f in MIDLEVEL_FEATURES])
    sd = np.array([RATING_SD[f] for f in MIDLEVEL_FEATURES])
    if isinstance(ratings, dict):
        r = np.array([ratings[f] for f in MIDLEVEL_FEATURES], dtype=float)
    else:
        r = np.asarray(ratings, dtype=float)
    return (r - mean) / sd


def standardise_outside(factors) -> np.ndarray:
    """x (loudness, tempo, register) for a Factors/dict, or (n, 3) from columns of a DataFrame."""
    return np.stack([(_transformed_factor(factors, spec) - spec["mean"]) / spec["sd"]
                     for spec in OUTSIDE_STANDARDISATION.values()], axis=-1)


def emotion_targets(ratings: dict, factors, rng: np.random.Generator) -> tuple[dict[str, float], dict[str, float]]:
    """(emotions on 1-9, the noise-free linear predictor) for one clip; ``rng`` draws the noise."""
    z = standardise_ratings(ratings)
    x = standardise_outside(factors)
    noise = rng.standard_normal(len(EMOTIONS)) * NOISE_SD
    clean = INTERCEPT + z @ weight_matrix() + x @ outside_matrix()
    e = np.clip(clean + noise, *EMOTION_RANGE)
    return dict(zip(EMOTIONS, map(float, e))), dict(zip(EMOTIONS, map(float, clean)))


def fit_generating_weights(predictors: np.ndarray, emotions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ordinary least squares of emotions on an intercept and ``predictors``: how a corpus shows it recovers W.

    Returns the (1 + P, T) coefficients, intercept row first (rows 1..7 estimate W when the
    predictors start with the seven standardised ratings, the next ones B), and each emotion's R^2.
    """
    design = np.column_stack([np.ones(len(predictors)), predictors])
    coef, *_ = np.linalg.lstsq(design, emotions, rcond=None)
    resid = emotions - design @ coef
    r2 = 1 - (resid**2).sum(axis=0) / ((emotions - emotions.mean(axis=0)) ** 2).sum(axis=0)
    return coef, r2


def ground_truth() -> dict:
    """Everything that generated the emotions, for ground_truth.json."""
    return {
        "formula": (
            "e_k = clip(intercept + sum_j W[j][k] * z_j + sum_o B[o][k] * x_o + noise_k, 1, 9); "
            "z_j = (rating_j - rating_mean[j]) / rating_sd[j]; "
            "x_o = (transform(factor_o) - mean_o) / sd_o; noise_k ~ N(0, noise_sd^2)"
        ),
        "features": list(MIDLEVEL_FEATURES),
        "emotions": list(EMOTIONS),
        "intercept": INTERCEPT,
        "W": {f: dict(zip(EMOTIONS, PUBLISHED_WEIGHTS[f])) for f in MIDLEVEL_FEATURES},
        "W_source": "Chowdhury et al. 2019, joint A2Mid2E model weights read off the poster (REFERENCES.md section 4)",
        "rating_mean": dict(RATING_MEAN),
        "rating_sd": dict(RATING_SD),
        "outside_terms": {
            o: {**OUTSIDE_STANDARDISATION[o], "B": dict(zip(EMOTIONS, OUTSIDE_WEIGHTS[o]))} for o in OUTSIDE_WEIGHTS
        },
        "noise_sd": NOISE_SD,
        "clip": list(EMOTION_RANGE),
    }
