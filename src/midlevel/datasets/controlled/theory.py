"""Small music-theory helpers shared by the factors and the ratings: key finding, metre."""

from __future__ import annotations

import numpy as np

# Krumhansl & Kessler (1982) probe-tone profiles, tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def _key_matrix() -> np.ndarray:
    """(24, 12): rows 0-11 the major keys on C..B, rows 12-23 the minor keys, each z-scored."""
    rows = [np.roll(KK_MAJOR, t) for t in range(12)] + [np.roll(KK_MINOR, t) for t in range(12)]
    m = np.asarray(rows, dtype=float)
    m = m - m.mean(axis=1, keepdims=True)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


KEY_MATRIX = _key_matrix()
KEY_NAMES = [f"{n} major" for n in "C C# D Eb E F F# G Ab A Bb B".split()] + [
    f"{n} minor" for n in "C C# D Eb E F F# G Ab A Bb B".split()
]


def pc_profile(pitch: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Weighted pitch-class histogram (12,)."""
    prof = np.zeros(12)
    if len(pitch):
        np.add.at(prof, np.asarray(pitch, dtype=int) % 12, np.asarray(weight, dtype=float))
    return prof


def key_correlations(profile: np.ndarray) -> np.ndarray:
    """Pearson correlation of a pitch-class profile with the 24 Krumhansl-Kessler key profiles.

    A flat (or empty) profile correlates 0 with every key.
    """
    x = np.asarray(profile, dtype=float) - np.mean(profile)
    n = np.linalg.norm(x)
    if n < 1e-12:
        return np.zeros(24)
    return KEY_MATRIX @ (x / n)


def best_key(profile: np.ndarray) -> tuple[int, str, float]:
    """(tonic pitch class, 'major'|'minor', correlation) of the best-matching key."""
    c = key_correlations(profile)
    k = int(np.argmax(c))
    return k % 12, ("major" if k < 12 else "minor"), float(c[k])


def metric_level(pos_in_bar: np.ndarray, beat_ql: np.ndarray) -> np.ndarray:
    """Metrical level of positions within a bar: 0 downbeat, 1 beat, 2 half (or third) of a
    beat, 3 quarter (or sixth) of a beat, 4 anything finer. Compound beats (dotted, 1.5 ql)
    divide in three."""
    pos = np.asarray(pos_in_bar, dtype=float)
    beat = np.broadcast_to(np.asarray(beat_ql, dtype=float), pos.shape)
    compound = np.isclose(np.mod(beat / 1.5, 1.0), 0.0) & (beat >= 1.5 - 1e-9) & ~np.isclose(np.mod(beat, 2.0), 0.0)
    div = np.where(compound, 3.0, 2.0)

    def on(grid):
        r = np.mod(pos / grid, 1.0)
        return (r < 1e-3) | (r > 1 - 1e-3)

    level = np.full(pos.shape, 4, dtype=int)
    level[on(beat / (div * 2))] = 3
    level[on(beat / div)] = 2
    level[on(beat)] = 1
    level[np.abs(pos) < 1e-3] = 0
    return level
