"""The controlled corpus: real scores, rendered with real instruments, labels known by construction.

Scores from music21's bundled corpus (chorales, quartets, folk tunes, madrigals, a rag, ...) are
excerpted, performed with sampled factors (tempo, articulation, jitter/rubato, dynamics, General
MIDI instrumentation, register, mode change, dissonance injection, tonal blur, percussion with
syncopation), rendered with FluidSynth + FluidR3 GM, and labelled with

* seven mid-level ratings (1-10), each a documented formula over the performed notes and factors
  (``ratings``), and
* eight Soundtracks emotions (1-9) generated from the ratings with the published joint-model
  weights, plus loudness / tempo / register terms outside the bottleneck, plus noise
  (``emotions``); the generating coefficients are written to ``ground_truth.json``.

The corpus is written in the real datasets' layouts, so ``load_midlevel`` and ``load_soundtracks``
read it unchanged. Every formula, factor range and file is documented in
docs/controlled_corpus.md.

Entry points::

    build_corpus(out_dir, n, seconds=10.0, seed=0, workers=1, *, audio_format="flac", ...) -> dict
    sample_ratings(n, seed=0, seconds=10.0, *, pieces=None, ...) -> DataFrame   # no audio
    make_clip(seed, index, seconds, **factor_overrides) -> (piece, factors, clip)

music21, pretty_midi and tqdm come with the ``corpus`` extra; importing this package without them says so in one line.
"""

from ..._extras import require_all

require_all(("music21", "pretty_midi", "tqdm"), "corpus", "the controlled-corpus builder")

from .build import (  # noqa: E402
    BuildSettings,
    CorpusBuildError,
    build_corpus,
    clip_labels,
    make_clip,
    piece_for,
    read_splits,
    sample_ratings,
    split_of,
)
from .emotions import (  # noqa: E402
    NOISE_SD,
    OUTSIDE_RANGES,
    OUTSIDE_WEIGHTS,
    PUBLISHED_WEIGHTS,
    emotion_targets,
    fit_generating_weights,
    ground_truth,
    outside_matrix,
    outside_ratings,
    standardise_outside,
    standardise_ratings,
    weight_matrix,
)
from .factors import ENSEMBLES, FACTOR_RANGES, Clip, Factors, neutral_factors, realize, sample_factors  # noqa: E402
from .ratings import RATING_MAPS, compute_ratings  # noqa: E402
from .render import RenderDependencyError, check_dependencies, clip_to_midi, render_clip, write_audio  # noqa: E402
from .sources import Piece, PieceRef, SourceError, catalogue, load_piece  # noqa: E402

__all__ = [
    "BuildSettings",
    "Clip",
    "CorpusBuildError",
    "ENSEMBLES",
    "FACTOR_RANGES",
    "Factors",
    "NOISE_SD",
    "OUTSIDE_RANGES",
    "OUTSIDE_WEIGHTS",
    "PUBLISHED_WEIGHTS",
    "Piece",
    "PieceRef",
    "RATING_MAPS",
    "RenderDependencyError",
    "SourceError",
    "build_corpus",
    "catalogue",
    "check_dependencies",
    "clip_labels",
    "clip_to_midi",
    "compute_ratings",
    "emotion_targets",
    "fit_generating_weights",
    "ground_truth",
    "load_piece",
    "make_clip",
    "neutral_factors",
    "outside_matrix",
    "outside_ratings",
    "piece_for",
    "read_splits",
    "realize",
    "render_clip",
    "sample_factors",
    "sample_ratings",
    "split_of",
    "standardise_outside",
    "standardise_ratings",
    "weight_matrix",
    "write_audio",
]
