"""Mid-level ratings by construction: a documented formula per feature over the clip's notes.

Each feature first gets a *raw score* from measurements on the performed clip (what is audible in
the ``seconds`` of audio: notes are counted only while they sound, and percussive instruments only
for as long as they ring), then a fixed affine map onto the 1-10 scale with clipping::

    rating = 1 + 9 * clip((raw - lo) / (hi - lo), 0, 1)        (lo, hi) = RATING_MAPS[feature]

The maps are constants (calibrated once on a large sample of clips so that each rating spans the
scale), so a clip's rating never depends on the rest of the corpus. docs/controlled_corpus.md puts
every formula beside the question the human raters answered (REFERENCES.md section 2).
"""

from __future__ import annotations

import numpy as np

from ...concepts import MIDLEVEL_FEATURES
from .factors import DECAY_S, KIND_DETUNED, KIND_DRUM, KIND_INJECTED, KIND_SCORE, TIMBRE_NOISE, Clip, Factors
from .theory import key_correlations
from ..controlled_labels import INGREDIENT_COLUMNS, INGREDIENTS  # noqa: F401 (re-exported)

# (lo, hi) raw-score range mapped onto 1..10
RATING_MAPS: dict[str, tuple[float, float]] = {
    "melodiousness": (0.0, 0.68),
    "articulation": (0.04, 0.83),
    "rhythm_stability": (0.33, 1.25),
    "rhythm_complexity": (0.05, 0.85),
    "dissonance": (0.0, 0.78),
    "tonal_stability": (0.24, 0.83),
    "minorness": (0.09, 0.88),
}
"""Fixed (lo, hi) per feature: about the 2nd and 98th percentiles of the raw score over 3000
sampled clips (seed 0, 10 s), rounded."""

# roughness of an interval class (semitones mod 12) between two simultaneous notes
INTERVAL_ROUGHNESS = np.array([0.0, 1.0, 0.5, 0.15, 0.05, 0.1, 0.7, 0.0, 0.1, 0.05, 0.4, 0.8])

# how singable a melodic interval of |k| semitones is (>12: 0)
SINGABILITY = np.array([0.6, 1.0, 1.0, 0.7, 0.7, 0.5, 0.1, 0.4, 0.15, 0.15, 0.1, 0.1, 0.2])

FRAME_S = 0.05  # time grid for simultaneity measures


def to_scale(raw: float, feature: str) -> float:
    lo, hi = RATING_MAPS[feature]
    return float(1.0 + 9.0 * np.clip((raw - lo) / (hi - lo), 0.0, 1.0))


def _decay(program: np.ndarray) -> np.ndarray:
    return np.array([DECAY_S.get(int(p), np.inf) for p in program], dtype=float)


def audible_end(clip: Clip) -> np.ndarray:
    """When each note stops being heard: released, decayed (percussive programs) or clip end."""
    end = np.minimum(clip.end, clip.onset + _decay(clip.program))
    return np.minimum(end, clip.seconds)


# ------------------------------------------------------------------------------ measures


def articulation_measures(clip: Clip) -> dict[str, float]:
    """Mean audible length / notated length of the score notes (1 = legato, small = staccato)."""
    m = clip.kind == KIND_SCORE
    if not np.any(m):
        return {"duration_ratio": 1.0}
    heard = np.minimum(clip.end[m], clip.onset[m] + _decay(clip.program[m])) - clip.onset[m]
    ratio = np.clip(heard / clip.notated[m], 0.0, 1.0)
    return {"duration_ratio": float(np.mean(ratio))}


def _layers(clip: Clip) -> list[np.ndarray]:
    """Rhythmic layers: each score part, and each drum (kick, snare, hi-hat), as sorted onset
    positions in quarter lengths."""
    out = []
    for p in np.unique(clip.part[clip.kind == KIND_SCORE]):
        q = clip.onset_ql[(clip.kind == KIND_SCORE) & (clip.part == p)]
        out.append(np.unique(np.round(q, 4)))
    for d in np.unique(clip.pitch[clip.kind == KIND_DRUM]):
        q = clip.onset_ql[(clip.kind == KIND_DRUM) & (clip.pitch == d)]
        out.append(np.unique(np.round(q, 4)))
    return [x for x in out if len(x)]


def rhythm_measures(clip: Clip) -> dict[str, float]:
    """Syncopation index, onset-interval entropy, distinct layer count, beat coverage."""
    beat = clip.beat_ql
    n_beats = max(len(clip.beats), 1)
    layers = _layers(clip)
    # syncopation: an onset off the beat (level >= 2) whose layer has no onset on the next beat
    sync_by_layer = []
    score = clip.kind != KIND_DETUNED
    pos_all = np.round(clip.onset_ql[score], 4)
    lev_all = clip.level[score]
    level_of = dict(zip(pos_all.tolist(), lev_all.tolist()))
    grid = clip.beats if len(clip.beats) else np.zeros(1)
    for q in layers:
        lv = np.array([level_of.get(float(x), 1) for x in q])
        k = np.searchsorted(grid, q + 1e-6, side="left")  # first beat after the onset
        nxt = np.where(k < len(grid), grid[np.minimum(k, len(grid) - 1)], grid[-1] + (k - len(grid) + 1) * beat)
        has_next = (np.abs(np.round(nxt, 4)[:, None] - q[None, :]) < 1e-3).any(axis=1)
        sync_by_layer.append(float(np.sum((lv >= 2) & ~has_next)) / n_beats)
    sync = float(min(1.0, max(sync_by_layer))) if sync_by_layer else 0.0
    # onset-interval entropy, pooled over layers, IOIs in beats rounded to 1/12
    iois = np.concatenate([np.diff(q) / beat for q in layers if len(q) > 1] or [np.zeros(0)])
    iois = iois[iois > 1e-6]
    if len(iois):
        _, counts = np.unique(np.round(np.minimum(iois, 4.0) * 12), return_counts=True)
        pr = counts / counts.sum()
        entropy = float(-(pr * np.log2(pr)).sum() / 3.0)
    else:
        entropy = 0.0
    # distinct layers: a layer counts if its onsets differ from every counted one (Jaccard < 0.6)
    kept: list[set] = []
    for q in sorted(layers, key=len, reverse=True):
        s = set(q.tolist())
        if all(len(s & k) / len(s | k) < 0.6 for k in kept):
            kept.append(s)
    # beat coverage: share of the clip's beats on which something starts
    allq = np.unique(np.round(clip.onset_ql[clip.kind != KIND_DETUNED], 4))
    if len(clip.beats):
        d = np.abs(clip.beats[:, None] - allq[None, :]) if len(allq) else np.full((len(clip.beats), 1), np.inf)
        coverage = float(np.mean(d.min(axis=1) < 0.02))
    else:
        coverage = 0.0
    return {
        "syncopation": sync,
        "ioi_entropy": min(1.0, entropy),
        "layers": float(len(kept)),
        "beat_coverage": coverage,
    }


def dissonance_measures(clip: Clip) -> dict[str, float]:
    """Mean roughness of simultaneous intervals (per sounding note, on a 50 ms grid), detuned
    unisons by their beat rate, and the share of noisy timbres."""
    m = clip.kind != KIND_DRUM
    on, off = clip.onset[m], audible_end(clip)[m]
    pitch = clip.pitch[m] + clip.cents[m] / 100.0
    if not np.any(m):
        return {"interval_roughness": 0.0, "timbre_noise": 0.0}
    frames = np.arange(0.0, clip.seconds, FRAME_S) + FRAME_S / 2
    active = (on[None, :] <= frames[:, None]) & (off[None, :] > frames[:, None])
    d = np.abs(pitch[:, None] - pitch[None, :])
    ic = np.mod(np.round(d).astype(int), 12)
    w = INTERVAL_ROUGHNESS[ic] * np.where(d > 12.5, 0.6, 1.0)
    freq = 440.0 * 2 ** ((np.minimum(pitch[:, None], pitch[None, :]) - 69) / 12)
    beat_hz = freq * np.abs(2 ** (d / 12) - 1)
    unison = d < 0.9
    w = np.where(unison, np.minimum(1.0, beat_hz / 15.0), w)
    np.fill_diagonal(w, 0.0)
    a = active.astype(float)
    pair = 0.5 * np.einsum("fi,ij,fj->f", a, w, a)
    n = a.sum(axis=1)
    sounding = n >= 1
    rough = np.where(n >= 2, pair / np.maximum(n, 1), 0.0)
    interval = float(rough[sounding].mean()) if np.any(sounding) else 0.0
    dur = np.maximum(off - on, 0.0)
    noise = np.array([TIMBRE_NOISE.get(int(p), 0.0) for p in clip.program[m]])
    timbre = float((noise * dur).sum() / max(dur.sum(), 1e-9))
    return {"interval_roughness": interval, "timbre_noise": timbre}


def _window_profiles(clip: Clip, edges: np.ndarray) -> np.ndarray:
    m = (clip.kind == KIND_SCORE) | (clip.kind == KIND_INJECTED)
    on, off, pc = clip.onset[m], audible_end(clip)[m], clip.pitch[m] % 12
    out = np.zeros((len(edges) - 1, 12))
    for i in range(len(edges) - 1):
        ov = np.clip(np.minimum(off, edges[i + 1]) - np.maximum(on, edges[i]), 0.0, None)
        np.add.at(out[i], pc, ov)
    return out


def tonal_measures(clip: Clip) -> dict[str, float]:
    """Key clarity (best Krumhansl-Kessler correlation) over the whole clip and in five
    overlapping windows (a third of the clip each), key consistency (how well the clip's key fits
    each window: low after a modulation), and the major/minor evidence of the whole clip."""
    whole = _window_profiles(clip, np.array([0.0, clip.seconds]))[0]
    corr = key_correlations(whole)
    k_global = int(np.argmax(corr))
    win = clip.seconds / 3.0
    starts = np.arange(5) * win / 2.0
    local_c, fit = [], []
    for s in starts:
        prof = _window_profiles(clip, np.array([s, s + win]))[0]
        if prof.sum() <= 0:
            continue
        c = key_correlations(prof)
        local_c.append(float(c.max()))
        fit.append(float(c[k_global]))
    return {
        "key_clarity": float(corr.max()),
        "local_key_clarity": float(np.mean(local_c)) if local_c else 0.0,
        "key_consistency": float(np.min(fit)) if fit else 0.0,
        "minor_vs_major": float(corr[12:].max() - corr[:12].max()),
    }


_TRIADS = np.array(
    [[(r + i) % 12 for i in (0, 4, 7)] for r in range(12)] + [[(r + i) % 12 for i in (0, 3, 7)] for r in range(12)]
)


def chord_measures(clip: Clip) -> dict[str, float]:
    """Share of minor among the major/minor triads that best fit each window of the score
    (one beat; two beats when fewer than three voices sound)."""
    m = (clip.kind == KIND_SCORE) | (clip.kind == KIND_INJECTED)
    q0, q1, pc = clip.onset_ql[m], clip.onset_ql[m] + clip.dur_ql[m], clip.pitch[m] % 12
    if not np.any(m) or not len(clip.beats):
        return {"minor_chord_share": 0.5, "chords_found": 0.0}
    step = clip.beat_ql * (1 if clip.n_parts >= 3 else 2)
    edges = np.arange(clip.beats[0], clip.beats[-1] + clip.beat_ql, step)
    n_min = n_maj = 0
    for a in edges:
        ov = np.clip(np.minimum(q1, a + step) - np.maximum(q0, a), 0.0, None)
        if ov.sum() <= 0:
            continue
        prof = np.zeros(12)
        np.add.at(prof, pc, ov)
        prof = prof / prof.sum()
        inside = prof[_TRIADS].sum(axis=1)
        score = inside - 0.5 * (1.0 - inside)
        has_third = prof[_TRIADS[:, 1]] > 0
        has_root = prof[_TRIADS[:, 0]] > 0
        score = np.where(has_third & has_root, score, -np.inf)
        k = int(np.argmax(score))
        if not np.isfinite(score[k]) or inside[k] < 0.5:
            continue
        if k < 12:
            n_maj += 1
        else:
            n_min += 1
    found = n_maj + n_min
    share = n_min / found if found else 0.5
    return {"minor_chord_share": float(share), "chords_found": float(found)}


def melody_measures(clip: Clip) -> dict[str, float]:
    """The top voice: mean singability of its intervals, range, motif repetition, prominence
    over the accompaniment, and speed."""
    m = (clip.kind == KIND_SCORE) & (clip.part == 0)
    on, pitch, vel = clip.onset_ql[m], clip.pitch[m], clip.velocity[m]
    if len(on) == 0:
        return {"singability": 0.0, "range": 0.0, "repetition": 0.0, "prominence": 0.0, "notes_per_s": 0.0}
    # monophonic reduction: highest pitch per onset
    order = np.lexsort((-pitch, on))
    on, pitch = on[order], pitch[order]
    first = np.concatenate([[True], np.diff(on) > 1e-6])
    mel = pitch[first]
    iv = np.diff(mel)
    if len(iv):
        a = np.abs(iv)
        sing = float(np.mean(np.where(a <= 12, SINGABILITY[np.minimum(a, 12)], 0.0)))
    else:
        sing = 0.5
    rng = float(mel.max() - mel.min())
    grams = [tuple(iv[i : i + 3]) for i in range(len(iv) - 2)]
    if grams:
        from collections import Counter

        c = Counter(grams)
        rep = float(sum(1 for g in grams if c[g] > 1) / len(grams))
    else:
        rep = 0.0
    acc = (clip.kind == KIND_SCORE) & (clip.part > 0)
    if np.any(acc):
        prom = float(np.clip(0.5 + (vel.mean() - clip.velocity[acc].mean()) / 40.0, 0.0, 1.0))
    else:
        prom = 1.0
    span = max(clip.seconds, 1e-6)
    return {
        "singability": sing,
        "range": rng,
        "repetition": rep,
        "prominence": prom,
        "notes_per_s": float(len(mel) / span),
    }


# ------------------------------------------------------------------------------ ratings


def raw_scores(clip: Clip, factors: Factors) -> tuple[dict[str, float], dict[str, float]]:
    """(raw score per feature, every measurement it was made of)."""
    art = articulation_measures(clip)
    rhy = rhythm_measures(clip)
    dis = dissonance_measures(clip)
    ton = tonal_measures(clip)
    cho = chord_measures(clip)
    mel = melody_measures(clip)
    meas = {**art, **rhy, **dis, **ton, **cho, **mel}
    meas["jitter"] = float(factors.jitter)
    meas["rubato"] = float(factors.rubato)
    meas["minor_mode"] = 1.0 if clip.mode_after == "minor" else 0.0
    raw = {
        "melodiousness": (
            0.55 * mel["singability"]
            + 0.15 * mel["repetition"]
            + 0.15 * mel["prominence"]
            - 0.25 * float(np.clip((mel["range"] - 12.0) / 12.0, 0.0, 1.0))
            - 0.15 * float(np.clip((mel["notes_per_s"] - 5.0) / 5.0, 0.0, 1.0))
        ),
        "articulation": 1.0 - art["duration_ratio"],
        "rhythm_stability": (
            1.0
            - 2.8 * factors.jitter
            - 1.6 * factors.rubato
            + 0.25 * rhy["beat_coverage"]
            - 0.2 * rhy["syncopation"]
        ),
        "rhythm_complexity": (
            0.45 * rhy["syncopation"] + 0.30 * rhy["ioi_entropy"] + 0.25 * float(np.clip((rhy["layers"] - 1.0) / 4.0, 0.0, 1.0))
        ),
        "dissonance": dis["interval_roughness"] + 0.5 * dis["timbre_noise"],
        "tonal_stability": (
            0.4 * ton["key_clarity"] + 0.3 * ton["local_key_clarity"] + 0.3 * ton["key_consistency"]
        ),
        "minorness": (
            0.4 * meas["minor_mode"]
            + 0.3 * cho["minor_chord_share"]
            + 0.3 * float(np.clip(ton["minor_vs_major"] + 0.5, 0.0, 1.0))
        ),
    }
    return raw, meas


def compute_ratings(clip: Clip, factors: Factors) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """(ratings on 1-10 in MIDLEVEL_FEATURES order, raw scores, measurements)."""
    raw, meas = raw_scores(clip, factors)
    ratings = {f: to_scale(raw[f], f) for f in MIDLEVEL_FEATURES}
    return ratings, raw, meas
