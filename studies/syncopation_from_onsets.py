"""Can syncopation be read from when notes start, without the score? A route issue 5's concept bar rules out or in.

    python studies/syncopation_from_onsets.py --heldout corpora/heldout [--model emotion-measures-linear-mid10-ctrl12k] \
        [--cache-dir runs/cache] [--out studies/results] [--stem syncopation_from_onsets]

Rhythm complexity's largest missing ingredient is syncopation (``studies/results/concept_errors.md``:
the network's prediction follows it at r 0.56, the rating at 0.85). The corpus counts it per rhythmic
layer (each score part, each drum), from score positions and their metrical levels
(``datasets.controlled.ratings.rhythm_measures``). A network hears performed onsets instead. This
re-realises the ``--heldout`` clips and applies one audio-side count to their *performed* onset times
(timing jitter and rubato included): onsets more than 0.15 beat away from the beat that are not followed
by an onset on the next beat, per beat. The count is made

- per layer, against the true beat grid (the beats' performed times), the maximum over layers, as the
  corpus does: what a detector that separates the parts and knows the metre could reach;
- on all onsets pooled, against the true grid: parts not separated;
- on all onsets pooled, against the beats ``librosa.beat.beat_track`` finds in them: neither known;

and also as the plain share of pooled onsets off the beat. Each is compared with the recorded
``m_syncopation`` (Pearson r), beside the r of the model's rhythm complexity prediction with it.
Writes ``<--stem>.json`` and ``.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import librosa
import numpy as np
import torch
from tqdm import tqdm

import midlevel
from midlevel.datasets.controlled.factors import KIND_DETUNED, KIND_DRUM, KIND_SCORE
from midlevel.datasets.controlled.rolls import corpus_settings, realised_clip
from midlevel.training.cache import cached_log_spectrograms
from midlevel.training.data import load_splits
from midlevel.training.loops import ArraySet, network_outputs

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, also when a test loads this file
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # report_cli, shared with benchmarks/
RESULTS = Path(__file__).resolve().parent / "results"
from report_cli import report_parser, run_and_report  # noqa: E402
from concept_errors import factor_rows, number, pearson  # noqa: E402

OFF_BEAT = 0.15  # an onset further than this (in beats) from the beat before it is off the beat
ON_NEXT = 0.12  # an onset within this (in beats) of the next beat holds that beat

COUNTS = {
    "per_layer_true_grid": "per layer, true beat grid (max over layers)",
    "pooled_true_grid": "all onsets pooled, true beat grid",
    "pooled_tracked_grid": "all onsets pooled, beats tracked by librosa",
    "off_beat_share_true_grid": "share of pooled onsets off the beat, true beat grid",
    "off_beat_share_tracked_grid": "share of pooled onsets off the beat, tracked beats",
}


def off_beat(onsets: np.ndarray, beats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(off the beat, next beat held) per distinct onset (to 10 ms), both in seconds; beats past the last
    are extrapolated. Empty without onsets or without two beats to measure a period from."""
    onsets = np.unique(np.round(np.asarray(onsets, dtype=float), 2))
    beats = np.asarray(beats, dtype=float)
    if len(beats) < 2 or not len(onsets):
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
    period = float(np.median(np.diff(beats)))
    grid = np.concatenate([beats, beats[-1] + period * np.arange(1, 4)])
    nxt = np.minimum(np.searchsorted(grid, onsets + 0.05 * period), len(grid) - 1)
    phase = (onsets - grid[np.maximum(nxt - 1, 0)]) / period
    held = np.abs(grid[nxt][:, None] - onsets[None, :]).min(axis=1) < ON_NEXT * period
    return (phase > OFF_BEAT) & (phase < 1.0 - OFF_BEAT), held


def counts_of(off: np.ndarray, held: np.ndarray, n_beats: int) -> tuple[float, float]:
    """(syncopation: off-beat onsets whose next beat has no onset, per beat, at most 1 -- the corpus's rule on
    performed times; the share of onsets off the beat) from ``off_beat``'s masks."""
    if not len(off):
        return 0.0, 0.0
    return float(min(1.0, np.sum(off & ~held) / n_beats)), float(np.mean(off))


def syncopation_count(onsets: np.ndarray, beats: np.ndarray) -> float:
    return counts_of(*off_beat(onsets, beats), len(beats))[0]


def off_beat_share(onsets: np.ndarray, beats: np.ndarray) -> float:
    return counts_of(*off_beat(onsets, beats), len(beats))[1]


def performed_beats(clip) -> np.ndarray:
    """The seconds at which the clip's beats were played: each score position's median performed onset,
    interpolated (the beats without a note of their own get the tempo map between their neighbours)."""
    m = clip.kind != KIND_DETUNED
    positions = np.round(clip.onset_ql[m], 4)
    unique = np.unique(positions)
    seconds = np.array([np.median(clip.onset[m][positions == p]) for p in unique])
    return np.interp(clip.beats, unique, seconds)


def tracked_beats(onsets: np.ndarray, seconds: float, rate: int = 100) -> np.ndarray:
    """librosa's beat tracker on an onset envelope of the given onsets (smoothed impulses at ``rate`` Hz)."""
    env = np.zeros(int(seconds * rate) + 1)
    np.add.at(env, np.minimum((np.asarray(onsets) * rate).astype(int), len(env) - 1), 1.0)
    env = np.convolve(env, np.hanning(7), mode="same")
    _, beats = librosa.beat.beat_track(onset_envelope=env, sr=rate, hop_length=1, units="time")
    return np.asarray(beats, dtype=float)


def clip_counts(clip) -> dict[str, float]:
    heard = clip.kind != KIND_DETUNED
    pooled = clip.onset[heard]
    layers = [clip.onset[(clip.kind == KIND_SCORE) & (clip.part == p)] for p in np.unique(clip.part[clip.kind == KIND_SCORE])]
    layers += [clip.onset[(clip.kind == KIND_DRUM) & (clip.pitch == d)] for d in np.unique(clip.pitch[clip.kind == KIND_DRUM])]
    true_grid, tracked = performed_beats(clip), tracked_beats(pooled, clip.seconds)
    pooled_true = counts_of(*off_beat(pooled, true_grid), len(true_grid))
    pooled_tracked = counts_of(*off_beat(pooled, tracked), len(tracked))
    return {
        "per_layer_true_grid": max((syncopation_count(layer, true_grid) for layer in layers), default=0.0),
        "pooled_true_grid": pooled_true[0],
        "pooled_tracked_grid": pooled_tracked[0],
        "off_beat_share_true_grid": pooled_true[1],
        "off_beat_share_tracked_grid": pooled_tracked[1],
    }


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    model = midlevel.load(args.model)
    test = load_splits(args.heldout, concepts=model.config.concept_names)["test"]
    settings = corpus_settings(Path(args.heldout))  # refuses a corpus this music21 cannot re-realise exactly
    counts = [clip_counts(realised_clip(settings, i)) for i in tqdm(test.ids, desc="re-realising clips", unit="clip")]
    recorded = factor_rows(args.heldout, test.ids)["m_syncopation"].to_numpy(dtype=float)
    arrays = ArraySet(cached_log_spectrograms(test.paths, model.frontend, model.config.window_samples, args.cache_dir),
                      test.concepts, test.targets)
    predicted = network_outputs(model, arrays)[:, model.config.concept_names.index("rhythm_complexity")]
    return {
        "heldout": {"corpus": str(args.heldout), "clips": len(test.ids)},
        "model": args.model,
        "r_prediction": pearson(predicted, recorded),
        "r_counts": {k: pearson([c[k] for c in counts], recorded) for k in COUNTS},
    }


def markdown(s: dict) -> str:
    lines = ["# Syncopation from performed onsets", "",
             f"`{s['heldout']['corpus']}` test split, {s['heldout']['clips']} clips re-realised. Pearson r of each count "
             "with the recorded `m_syncopation` (the corpus counts it per layer, on score positions and metrical levels).",
             "", "| count | r |", "|---|---|"]
    lines += [f"| {COUNTS[k]} | {number(v)} |" for k, v in s["r_counts"].items()]
    lines += [f"| `{s['model']}`'s rhythm complexity prediction | {number(s['r_prediction'])} |", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = report_parser(__doc__, "syncopation_from_onsets", RESULTS)
    p.add_argument("--heldout", required=True, help="controlled corpus whose test split holds unseen pieces")
    p.add_argument("--model", default="emotion-measures-linear-mid10-ctrl12k", help="two-stage model with a rhythm_complexity concept")
    return run_and_report(p.parse_args(argv), run, markdown)


if __name__ == "__main__":
    sys.exit(main())
