"""How much of the register rating can the audible notes support? A second ceiling for issue 5's concept bar.

    python studies/register_ceiling.py --train corpora/train12k --heldout corpora/heldout \
        [--model emotion-measures-linear-mid10-ctrl12k] [--train-clips 2000] [--cache-dir runs/cache]

The register concept is an affine map of the clip's *transposition*: every note of the score moved by
a whole number of semitones, uniform on -12..12 (``datasets.controlled.factors``). A listener hears the
transposed pitches, not the transposition: a high piece moved down and a low piece moved up can sound
alike. This benchmark measures how well the rating can be recovered from a perfect transcription, the
true note rolls (``datasets.controlled.rolls``) of the clips:

- **one statistic, no fitting**: the mean sounding pitch of all notes, and of the top voice;
- **gradient boosting** on the absolute pitch content (sounding-frame share of each pitch, for all
  notes and for the top voice, and the 10th, 50th and 90th percentiles of each), trained on
  ``--train-clips`` training clips (the same clips ``minorness_ceiling.py`` draws, so the two share
  their cached rolls).

Neither is a proof of a ceiling (a better regressor may exist), but both read perfect notes, which a
network hearing audio does not have. Writes ``register_ceiling.json`` and ``.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingRegressor

from midlevel.config import FrontendConfig
from midlevel.datasets.controlled.rolls import ROLL_LOW, ROLL_PITCHES, corpus_rolls
from midlevel.frontend import LogFrequencySpectrogram
from midlevel.training.data import load_splits

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, also when a test loads this file
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # report_cli, shared with benchmarks/
RESULTS = Path(__file__).resolve().parent / "results"
from minorness_ceiling import SEED, concept_prediction, number, pearson, training_draw  # noqa: E402
from report_cli import report_parser, run_and_report  # noqa: E402

PERCENTILES = (10, 50, 90)


def pitch_shares(rolls: np.ndarray, channel: int) -> np.ndarray:
    """(N, channels, pitches, frames) note rolls -> (N, pitches) share of sounding frames per pitch
    (all zeros where the channel is silent)."""
    per_pitch = rolls[:, channel].sum(-1, dtype=np.float64)
    return per_pitch / np.maximum(per_pitch.sum(1, keepdims=True), 1e-12)


def pitch_statistics(shares: np.ndarray) -> np.ndarray:
    """(N, pitches) shares -> (N, 1 + len(PERCENTILES)) mean MIDI pitch and its percentiles
    (NaN for a silent clip; gradient boosting takes NaN as missing)."""
    midi = ROLL_LOW + np.arange(ROLL_PITCHES)
    silent = shares.sum(1) <= 0
    mean = np.where(silent, np.nan, shares @ midi)
    cdf = np.cumsum(shares, axis=1)
    pct = [np.where(silent, np.nan, midi[np.minimum((cdf < q / 100).sum(1), ROLL_PITCHES - 1)]) for q in PERCENTILES]
    return np.column_stack([mean, *pct])


def pitch_features(rolls: np.ndarray) -> np.ndarray:
    """Absolute pitch content of note rolls: shares and statistics, for all notes then for the top voice."""
    parts = []
    for channel in (0, 1):
        shares = pitch_shares(rolls, channel)
        parts += [pitch_statistics(shares), shares]
    return np.concatenate(parts, axis=1)


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    frontend = FrontendConfig()
    n_frames = LogFrequencySpectrogram(frontend).n_frames(int(args.window_seconds * frontend.sample_rate))
    train = load_splits(args.train, concepts=["register"])["train"]
    held = load_splits(args.heldout, concepts=["register"])["test"]
    if not len(held.ids):
        raise SystemExit(f"--heldout {args.heldout}: its test split is empty")
    pick = training_draw(len(train.ids), args.train_clips)  # minorness_ceiling.py's draw: shared cached rolls
    roll_train = corpus_rolls(args.train, [train.ids[i] for i in pick], n_frames, frontend.hop_length,
                              cache_dir=args.cache_dir)
    roll_held = corpus_rolls(args.heldout, list(held.ids), n_frames, frontend.hop_length, cache_dir=args.cache_dir)
    x_train, x_held = pitch_features(roll_train), pitch_features(roll_held)
    y_train, y_held = train.concepts[pick, 0], held.concepts[:, 0]
    statistic = {"mean pitch, all notes": pearson(x_held[:, 0], y_held),
                 "mean pitch, top voice": pearson(np.nan_to_num(x_held[:, 1 + len(PERCENTILES) + ROLL_PITCHES],
                                                                nan=np.nanmean(x_held[:, 0])), y_held)}
    boosted = HistGradientBoostingRegressor(max_iter=300, random_state=SEED).fit(x_train, y_train)
    summary = {"train": {"corpus": str(args.train), "clips": len(train.ids), "roll_clips": len(pick)},
               "heldout": {"corpus": str(args.heldout), "clips": len(held.ids)},
               "statistic_r": statistic,
               "boosted_r": pearson(boosted.predict(x_held), y_held),
               "boosted_train_r": pearson(boosted.predict(x_train), y_train)}
    if args.model:
        pred = concept_prediction(args.model, "register", held, args.cache_dir)
        summary["model"] = {"name": str(args.model), "register_r": pearson(pred, y_held)}
    return summary


def markdown(s: dict) -> str:
    h, t = s["heldout"], s["train"]
    lines = ["# Register: how much the audible notes can support", "",
             f"Held-out: `{h['corpus']}` test split, {h['clips']} clips. Gradient boosting trained on "
             f"{t['roll_clips']} clips of `{t['corpus']}`'s training split. The rating is an affine map of the "
             "transposition; the inputs are the clips' true note rolls.", "",
             "| from the true notes | held-out r with the register rating |", "|---|---|"]
    lines += [f"| {k} | {number(v)} |" for k, v in s["statistic_r"].items()]
    lines += [f"| gradient boosting on absolute pitch content (train r {number(s['boosted_train_r'])}) | "
              f"{number(s['boosted_r'])} |"]
    if "model" in s:
        lines += [f"| `{s['model']['name']}` from audio | {number(s['model']['register_r'])} |"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = report_parser(__doc__, "register_ceiling", RESULTS)
    p.add_argument("--train", type=Path, required=True, help="controlled corpus the models were trained on")
    p.add_argument("--heldout", type=Path, required=True, help="controlled corpus whose test split holds unseen pieces")
    p.add_argument("--model", help="optional: a two-stage model (zoo name or folder) to set beside the ceiling")
    p.add_argument("--train-clips", type=int, default=2000, help="training clips re-realised for note rolls")
    p.add_argument("--window-seconds", type=float, default=10.0, help="clip length the rolls cover")
    return run_and_report(p.parse_args(argv), run, markdown)


if __name__ == "__main__":
    sys.exit(main())
