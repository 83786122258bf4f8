"""Is it the transcriber or the reading? The concept formulas recomputed from a network's own notes.

    python studies/transcribed_ingredients.py --model emotion-transcribe-linear-mid10-ctrl12k --heldout corpora/heldout \
        [--cache-dir runs/cache] [--out studies/results] [--stem transcribed_ingredients]

``concept_errors.py`` found the ingredients a transcribing model under-reads most: the melody's
singability (melodiousness) and key clarity and consistency (tonal stability). Those are formulas
over notes, and a transcribing backbone predicts notes. This recomputes them from note rolls, with
the corpus's own tables (``ratings.SINGABILITY``, ``theory.key_correlations``), twice:

- from the *true* rolls (``datasets.controlled.rolls``): how much of the recorded measurement a
  frame-level roll keeps at all (a roll cannot show a repeated note played legato, for instance);
- from the model's *transcribed* rolls (probability > 0.5): what its own notes support.

For each measurement it reports r with the recorded ``m_*`` value for both, beside r with the
model's concept prediction, and the gain in held-out r of a ridge fit of the rating on the
prediction plus the transcribed measurements of that concept, against the prediction alone
(5 folds grouped by piece, as in ``concept_errors.py``). A large gain would say the network
under-uses notes it already hears; a transcribed r far below the true-roll r says the notes
themselves are what is missing.

Writes ``<--stem>.json`` and ``.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import midlevel
from midlevel.datasets.controlled.ratings import SINGABILITY
from midlevel.datasets.controlled.rolls import ROLL_LOW, corpus_rolls
from midlevel.datasets.controlled.theory import key_correlations
from midlevel.model import TwoStageModel
from midlevel.training.cache import cached_log_spectrograms
from midlevel.training.data import load_splits
from midlevel.training.loops import ArraySet, network_outputs
from midlevel.training.recipes import transcribed_rolls

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, also when a test loads this file
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # report_cli, shared with benchmarks/
RESULTS = Path(__file__).resolve().parent / "results"
from report_cli import report_parser, run_and_report  # noqa: E402
from concept_errors import cross_validated_r, factor_rows, number, pearson  # noqa: E402

#: measurement -> the concept whose formula uses it (``docs/controlled_corpus.md``)
MEASURES = {"m_singability": "melodiousness", "m_range": "melodiousness", "m_notes_per_s": "melodiousness",
            "m_key_clarity": "tonal_stability", "m_local_key_clarity": "tonal_stability",
            "m_key_consistency": "tonal_stability", "m_minor_vs_major": "minorness"}
#: a melody note must last this many frames (~64 ms at hop 704): shorter runs are transcription flicker
MIN_NOTE_FRAMES = 2


def melody_notes(melody: np.ndarray, min_frames: int = MIN_NOTE_FRAMES) -> np.ndarray:
    """(pitches, frames) 0/1 melody roll -> the pitch row of each note, in order.

    A note is a run of frames whose highest active row is the same; a rest splits runs, so the same
    pitch before and after a rest counts as a repeated note (a unison interval), as in the score."""
    active = melody.any(axis=0)
    track = np.where(active, melody.shape[0] - 1 - np.argmax(melody[::-1], axis=0), -1)
    change = np.flatnonzero(np.diff(track)) + 1
    starts, ends = np.r_[0, change], np.r_[change, len(track)]
    keep = (track[starts] >= 0) & (ends - starts >= min_frames)
    return track[starts[keep]]


def melody_measures(melody: np.ndarray, seconds: float) -> dict[str, float]:
    """Singability, range and notes per second of a melody roll (``ratings.melody_measures`` on notes)."""
    notes = melody_notes(melody)
    if len(notes) == 0:
        return {"m_singability": 0.0, "m_range": 0.0, "m_notes_per_s": 0.0}
    steps = np.abs(np.diff(notes))
    sing = float(np.mean(np.where(steps <= 12, SINGABILITY[np.minimum(steps, 12)], 0.0))) if len(steps) else 0.5
    return {"m_singability": sing, "m_range": float(notes.max() - notes.min()),
            "m_notes_per_s": len(notes) / max(seconds, 1e-6)}


def tonal_measures(notes: np.ndarray, seconds: float) -> dict[str, float]:
    """Key clarity, local key clarity, key consistency and minor-vs-major of a (pitches, frames) roll,
    with ``ratings.tonal_measures``' windows (five, a third of the clip each, hop a sixth)."""
    folded = np.zeros((12, notes.shape[1]))
    np.add.at(folded, (np.arange(notes.shape[0]) + ROLL_LOW) % 12, notes.astype(float))
    corr = key_correlations(folded.sum(1))
    key = int(np.argmax(corr))
    times = np.arange(notes.shape[1]) * seconds / notes.shape[1]
    win = seconds / 3.0
    local, fit = [], []
    for start in np.arange(5) * win / 2.0:
        profile = folded[:, (times >= start) & (times < start + win)].sum(1)
        if profile.sum() <= 0:
            continue
        c = key_correlations(profile)
        local.append(float(c.max()))
        fit.append(float(c[key]))
    return {"m_key_clarity": float(corr.max()), "m_local_key_clarity": float(np.mean(local)) if local else 0.0,
            "m_key_consistency": float(np.min(fit)) if fit else 0.0,
            "m_minor_vs_major": float(corr[12:].max() - corr[:12].max())}


def roll_measures(rolls: np.ndarray, seconds: float) -> pd.DataFrame:
    """One row of ``MEASURES`` per (notes, melody) roll."""
    return pd.DataFrame([melody_measures(r[1], seconds) | tonal_measures(r[0], seconds) for r in rolls])[list(MEASURES)]


def measure_table(recorded: pd.DataFrame, true: pd.DataFrame, transcribed: pd.DataFrame, pred: dict[str, np.ndarray],
                  ratings: dict[str, np.ndarray], groups: np.ndarray) -> dict:
    """Per measurement its r with the recorded value (true and transcribed rolls) and with the concept
    prediction; per concept the cross-validated gain of adding its transcribed measurements."""
    rows = {m: {"concept": c, "r_true_roll": pearson(true[m], recorded[m]),
                "r_transcribed": pearson(transcribed[m], recorded[m]),
                "r_prediction": pearson(pred[c], recorded[m])} for m, c in MEASURES.items()}
    concepts = {}
    for c in dict.fromkeys(MEASURES.values()):
        cols = [m for m, owner in MEASURES.items() if owner == c]
        alone = cross_validated_r(pred[c][:, None], ratings[c], groups)
        added = cross_validated_r(np.c_[pred[c], transcribed[cols].to_numpy()], ratings[c], groups)
        concepts[c] = {"measures": cols, "r_cross_validated": alone, "r_with_transcribed": added,
                       "gain": None if alone is None or added is None else added - alone}
    return {"measures": rows, "concepts": concepts}


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    model = midlevel.load(args.model)
    if not isinstance(model, TwoStageModel) or not hasattr(model.backbone, "forward_with_salience"):
        raise SystemExit(f"--model {args.model}: needs a two-stage model with a transcribing backbone")
    names = list(model.config.concept_names)
    missing = sorted(set(MEASURES.values()) - set(names))
    if missing:
        raise SystemExit(f"--model {args.model}: predicts no {missing}")
    clips = load_splits(args.heldout, concepts=names)["test"]
    if not len(clips):
        raise SystemExit(f"--heldout {args.heldout}: its test split is empty")
    table = factor_rows(args.heldout, clips.ids)
    seconds = float(json.loads((Path(args.heldout) / "corpus.json").read_text())["settings"]["seconds"])
    data = ArraySet(cached_log_spectrograms(clips.paths, model.frontend, model.config.window_samples, args.cache_dir))
    out = network_outputs(model, data)
    rolls = corpus_rolls(args.heldout, clips.ids, data.logspec.shape[-1], model.config.frontend.hop_length,
                         cache_dir=args.cache_dir)
    true, transcribed = roll_measures(rolls, seconds), roll_measures(transcribed_rolls(model, data), seconds)
    concepts = set(MEASURES.values())
    pred = {c: out[:, names.index(c)] for c in concepts}
    ratings = {c: clips.concepts[:, names.index(c)] for c in concepts}
    groups = table["piece_id"].to_numpy()
    result = measure_table(table.reset_index(drop=True), true, transcribed, pred, ratings, groups)
    return {"model": str(args.model), "heldout": {"corpus": str(args.heldout), "clips": len(clips.ids),
                                                  "pieces": int(len(np.unique(groups)))},
            "model_concepts": len(names), "min_note_frames": MIN_NOTE_FRAMES, **result}


def markdown(s: dict) -> str:
    h, n = s["heldout"], number
    lines = ["# The concept formulas from the model's own notes", "",
             f"Model `{s['model']}` on `{h['corpus']}` (test split: {h['clips']} clips of {h['pieces']} pieces no "
             "training split holds). Each measurement recomputed from frame-level note rolls with the corpus's "
             f"tables (melody notes: runs of at least {s['min_note_frames']} frames), from the true rolls and from "
             "the model's transcription (probability > 0.5); r with the recorded value, beside the r of the "
             "model's concept prediction with it.", "",
             "| measurement | concept | r, true rolls | r, transcribed | r, concept prediction |", "|---|---|---|---|---|"]
    for m, v in s["measures"].items():
        lines.append(f"| `{m}` | {v['concept']} | {n(v['r_true_roll'])} | {n(v['r_transcribed'])} | {n(v['r_prediction'])} |")
    lines += ["", "Held-out r of a ridge fit of each rating on the concept prediction, alone and with that concept's "
              "transcribed measurements (5 folds grouped by piece), and what the gain would add to the mean r over "
              f"the model's {s['model_concepts']} concepts:", "",
              "| concept | measurements | r, prediction | r, with transcribed | gain | on the mean |", "|---|---|---|---|---|---|"]
    for c, v in s["concepts"].items():
        lines.append(f"| {c} | {', '.join(f'`{m}`' for m in v['measures'])} | {n(v['r_cross_validated'])} | "
                     f"{n(v['r_with_transcribed'])} | {n(v['gain'], sign=True)} | "
                     f"{n((v['gain'] or 0.0) / s['model_concepts'], sign=True)} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = report_parser(__doc__, "transcribed_ingredients", RESULTS)
    p.add_argument("--model", required=True, help="two-stage model with a transcribing backbone: zoo name or folder")
    p.add_argument("--heldout", required=True, help="controlled corpus whose test split holds unseen pieces")
    return run_and_report(p.parse_args(argv), run, markdown)


if __name__ == "__main__":
    sys.exit(main())
