"""Names and rating scales of the default concepts and targets.

The seven mid-level perceptual features (Aljanaki & Soleymani, ISMIR 2018) are rated on a
1-10 scale; the eight Soundtracks emotion scales (Eerola & Vuoskoski 2011) on 1-9.
Order follows the 2019 paper's weight table (REFERENCES.md section 4) read top to bottom
in reverse, i.e. the order of the Mid-level dataset's annotation columns.
"""

MIDLEVEL_FEATURES: tuple[str, ...] = (
    "melodiousness",
    "articulation",
    "rhythm_stability",
    "rhythm_complexity",
    "dissonance",
    "tonal_stability",
    "minorness",
)
MIDLEVEL_SCALE: tuple[float, float] = (1.0, 10.0)

OUTSIDE_CONCEPTS: tuple[str, ...] = ("loudness", "tempo", "register")
"""Performance qualities outside the seven features that the controlled corpus's emotions also
depend on (``datasets.controlled.emotions``). Optional extra concepts, on the same 1-10 scale: a
bottleneck of only the seven cannot carry them, which is the measured cost of interpretability;
naming them keeps every contribution readable while closing that gap."""

EMOTIONS: tuple[str, ...] = (
    "valence",
    "energy",
    "tension",
    "anger",
    "fear",
    "happy",
    "sad",
    "tender",
)
EMOTION_SCALE: tuple[float, float] = (1.0, 9.0)
