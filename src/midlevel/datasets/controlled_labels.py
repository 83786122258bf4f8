"""What a controlled corpus's label files mean, without the generator that wrote them.

Training and evaluation read a controlled corpus like any labelled data set; where they need to know
how a recorded column maps to a rating (the loudness, tempo and register concepts from ``factors.csv``),
which columns hold the ratings' ingredients, or what the note-roll channels are, they read it here.
The generator (``datasets.controlled``: music21, FluidSynth, pedalboard) imports these definitions too,
so the two can never disagree, and nothing that trains or infers imports the generator.
"""

from __future__ import annotations

import numpy as np

OUTSIDE_STANDARDISATION: dict[str, dict] = {
    "loudness": {"factor": "velocity", "transform": "identity", "mean": 74.0, "sd": 25.4034},
    "tempo": {"factor": "tempo_bpm", "transform": "log", "mean": 4.523583, "sd": 0.353333},
    "register": {"factor": "transpose", "transform": "identity", "mean": 0.0, "sd": 7.211103},
}

OUTSIDE_RANGES: dict[str, tuple[float, float]] = {
    "loudness": (30.0, 118.0),  # velocity ~ U(30, 118)
    "tempo": (float(np.log(50.0)), float(np.log(170.0))),  # ln(tempo_bpm), tempo ~ log-U(50, 170)
    "register": (-12.0, 12.0),  # transpose ~ U{-12..12}
}
"""Range of each outside factor (after its transform) that maps onto the 1-10 concept scale."""


def transformed_factor(factors, spec: dict) -> np.ndarray:
    """One outside factor (``spec['factor']``) after its transform, from a Factors, mapping or DataFrame."""
    if hasattr(factors, "__dataclass_fields__"):
        v = getattr(factors, spec["factor"])
    else:  # a mapping or a DataFrame
        v = factors[spec["factor"]]
    v = np.asarray(v, dtype=float)
    return np.log(v) if spec["transform"] == "log" else v


def outside_ratings(factors) -> np.ndarray:
    """(n, 3) ratings on 1-10 of loudness, tempo and register (``concepts.OUTSIDE_CONCEPTS``) from the
    factors table (a DataFrame or mapping with ``velocity``, ``tempo_bpm``, ``transpose``).

    Each is an affine map of the factor the emotions use, so the emotion formula stays exactly linear
    in these ratings: one rating point of ``o`` moves emotion ``k`` by ``B[o, k] * (hi - lo) / (9 * sd_o)``
    points (``OUTSIDE_RANGES``, ``OUTSIDE_STANDARDISATION``).
    """
    out = []
    for name, spec in OUTSIDE_STANDARDISATION.items():
        lo, hi = OUTSIDE_RANGES[name]
        out.append(1.0 + 9.0 * np.clip((transformed_factor(factors, spec) - lo) / (hi - lo), 0.0, 1.0))
    return np.stack(out, axis=-1)


#: the recorded inputs of each rating's raw score (``datasets.controlled.ratings``), as ``factors.csv`` columns: measurements on the
#: sounding notes (``m_*``) and the performance factors jitter and rubato
INGREDIENTS: dict[str, tuple[str, ...]] = {
    "melodiousness": ("m_singability", "m_repetition", "m_prominence", "m_range", "m_notes_per_s"),
    "articulation": ("m_duration_ratio",),
    "rhythm_stability": ("jitter", "rubato", "m_beat_coverage", "m_syncopation"),
    "rhythm_complexity": ("m_syncopation", "m_ioi_entropy", "m_layers"),
    "dissonance": ("m_interval_roughness", "m_timbre_noise"),
    "tonal_stability": ("m_key_clarity", "m_local_key_clarity", "m_key_consistency"),
    "minorness": ("m_minor_mode", "m_minor_chord_share", "m_minor_vs_major"),
}
#: every ingredient once, in the order above
INGREDIENT_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(c for cols in INGREDIENTS.values() for c in cols))

#: channels of the note rolls (``datasets.controlled.rolls``): every sounding note, and the top voice's
ROLL_CHANNELS = ("notes", "melody")
