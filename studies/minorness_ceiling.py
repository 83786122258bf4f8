"""How much of the minorness rating can the audible notes support? A ceiling for issue 5's concept bar.

    python studies/minorness_ceiling.py --train corpora/train12k --heldout corpora/heldout \
        [--model runs/transcribe12k/models/joint-linear] [--train-clips 2000] [--cache-dir runs/cache]

Minorness is the concept the shipped networks predict worst (held-out r 0.67). Its formula
(``datasets.controlled.ratings``) gives 0.4 of the raw score to the clip's *mode label*: the key
finder's verdict on the notated excerpt (which runs a little past the audible 10 s) *before*
modulations and wrong notes are added, after the mode change about the found tonic. Relative major
and minor keys share their notes, so that verdict is fragile. This benchmark measures how well the
label and the rating can be recovered from what is audible, with a perfect transcription:

- **mode from the sounding notes**: the duration-weighted pitch-class profile of the clip's true
  note roll (``datasets.controlled.rolls``), classified (a) by the Krumhansl-Kessler rule (best
  minor key vs best major key) and (b) by gradient boosting on transposition-invariant profile
  features (DFT magnitudes, circular autocorrelation, triple correlations, which fix a profile up
  to transposition) trained on ``--train-clips`` training clips;
- **minorness from every audible measurement**: gradient boosting from every measurement the
  corpus recorded (``m_*`` in ``factors.csv``, notes as sounded: chords, key fit, melody, rhythm)
  except the mode label, trained on the training corpus; with the label added, as a check that
  the regressor can learn the formula at all.

Neither is a proof of a ceiling (a better classifier may exist), but both read perfect notes,
which a network hearing audio does not have. Writes ``minorness_ceiling.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import roc_auc_score

import midlevel
from midlevel.config import FrontendConfig
from midlevel.datasets.controlled.rolls import ROLL_LOW, corpus_rolls
from midlevel.datasets.controlled.theory import key_correlations
from midlevel.frontend import LogFrequencySpectrogram
from midlevel.ioutil import atomic_write_text
from midlevel.training.cache import cached_log_spectrograms
from midlevel.training.data import LabelledClips, load_splits
from midlevel.training.loops import ArraySet, network_outputs

MODE_LABEL = "m_minor_mode"
SEED = 0


def pitch_class_profiles(rolls: np.ndarray) -> np.ndarray:
    """(N, channels, pitches, frames) note rolls -> (N, 12) duration-weighted pitch-class shares (C = 0)."""
    per_pitch = rolls[:, 0].sum(-1, dtype=np.float64)  # frames each pitch sounds
    profiles = np.zeros((len(rolls), 12))
    for p in range(per_pitch.shape[1]):
        profiles[:, (p + ROLL_LOW) % 12] += per_pitch[:, p]
    return profiles / np.maximum(profiles.sum(1, keepdims=True), 1e-12)


def invariant_features(profiles: np.ndarray) -> np.ndarray:
    """(N, 12) -> transposition-invariant features: |DFT| (6), circular autocorrelation (6) and the
    triple correlations sum_p x[p] x[p+a] x[p+b], 1 <= a < b <= 11 (55)."""
    x = np.asarray(profiles, dtype=float)
    dft = np.abs(np.fft.fft(x, axis=1))[:, 1:7]
    auto = np.stack([(x * np.roll(x, -k, axis=1)).sum(1) for k in range(1, 7)], axis=1)
    triple = np.stack([(x * np.roll(x, -a, axis=1) * np.roll(x, -b, axis=1)).sum(1)
                       for a in range(1, 12) for b in range(a + 1, 12)], axis=1)
    return np.concatenate([dft, auto, triple], axis=1)


def kk_minor_evidence(profiles: np.ndarray) -> np.ndarray:
    """Best minor-key minus best major-key Krumhansl-Kessler correlation, per profile (> 0: minor)."""
    corr = np.stack([key_correlations(p) for p in profiles])
    return corr[:, 12:].max(1) - corr[:, :12].max(1)


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson r, or None where either side is constant (a tiny split)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.corrcoef(a, b)[0, 1]) if np.std(a) > 0 and np.std(b) > 0 else None


def classification(label: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float | None]:
    """Accuracy at ``threshold``, AUC and Pearson r of a minor-mode score (None where a split has one class)."""
    both = len(np.unique(label > 0.5)) == 2
    return {"accuracy": float(np.mean((score > threshold) == (label > 0.5))),
            "auc": float(roc_auc_score(label > 0.5, score)) if both else None,
            "r": pearson(score, label)}


def split_table(corpus: Path, split: str) -> tuple[LabelledClips, pd.DataFrame, np.ndarray]:
    """(the split's clips, their factors.csv rows, their minorness ratings) for one split of a controlled corpus."""
    clips = load_splits(corpus, concepts=["minorness"])[split]
    table = pd.read_csv(corpus / "factors.csv", dtype={"song_id": str}).set_index("song_id")
    missing = [i for i in clips.ids if i not in table.index]
    if missing:
        raise SystemExit(f"{corpus / 'factors.csv'}: no row for clips {missing[:5]} (not a controlled corpus?)")
    return clips, table.loc[list(clips.ids)], clips.concepts[:, 0]


def training_draw(n_clips: int, size: int) -> np.ndarray:
    """Sorted indices of the training clips whose note rolls the ceilings re-realise (the same draw for every
    ceiling benchmark, so they share the cached rolls)."""
    return np.sort(np.random.default_rng(SEED).choice(n_clips, size=min(size, n_clips), replace=False))


def concept_prediction(name: str, concept: str, clips: LabelledClips, cache_dir: Path) -> np.ndarray:
    """Model ``name``'s (zoo name or folder) prediction of ``concept`` for ``clips``; refused if it has none."""
    model = midlevel.load(name)
    if concept not in getattr(model.config, "concept_names", ()):
        raise SystemExit(f"--model {name}: it predicts no {concept}")
    spec = cached_log_spectrograms(clips.paths, model.frontend, model.config.window_samples, cache_dir, progress=False)
    return network_outputs(model, ArraySet(spec))[:, list(model.config.concept_names).index(concept)]


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    frontend = FrontendConfig()
    n_frames = LogFrequencySpectrogram(frontend).n_frames(int(args.window_seconds * frontend.sample_rate))
    train_clips, train, y_train = split_table(args.train, "train")
    held_clips, held, y_held = split_table(args.heldout, "test")
    train_ids, held_ids = list(train_clips.ids), list(held_clips.ids)
    if not held_ids:
        raise SystemExit(f"--heldout {args.heldout}: its test split is empty")
    label_train, label_held = train[MODE_LABEL].to_numpy(), held[MODE_LABEL].to_numpy()

    pick = training_draw(len(train_ids), args.train_clips)
    prof_train = pitch_class_profiles(corpus_rolls(args.train, [train_ids[i] for i in pick], n_frames,
                                                   frontend.hop_length, cache_dir=args.cache_dir))
    prof_held = pitch_class_profiles(corpus_rolls(args.heldout, held_ids, n_frames, frontend.hop_length,
                                                  cache_dir=args.cache_dir))
    boosted = HistGradientBoostingClassifier(max_iter=300, random_state=SEED).fit(
        invariant_features(prof_train), label_train[pick])
    mode = {"kk_rule": classification(label_held, kk_minor_evidence(prof_held), 0.0),
            "boosted_invariant": classification(
                label_held, boosted.predict_proba(invariant_features(prof_held))[:, 1], 0.5)}

    measured = [c for c in train.columns if c.startswith("m_")]
    rating = {}
    for name, cols in (("without_mode_label", [c for c in measured if c != MODE_LABEL]), ("with_mode_label", measured)):
        reg = HistGradientBoostingRegressor(max_iter=300, random_state=SEED).fit(train[cols], y_train)
        rating[name] = {"measurements": len(cols), "r": pearson(reg.predict(held[cols]), y_held)}
    summary = {"train": {"corpus": str(args.train), "clips": len(train_ids), "profile_clips": len(pick)},
               "heldout": {"corpus": str(args.heldout), "clips": len(held_ids),
                           "minor_share": float(np.mean(label_held))},
               "mode_from_true_notes": mode, "minorness_from_measurements": rating}
    if args.model:
        pred = concept_prediction(args.model, "minorness", held_clips, args.cache_dir)
        summary["model"] = {"name": str(args.model), "minorness_r": pearson(pred, y_held),
                            "mode_label_r": pearson(pred, label_held)}
    return summary


def number(v: float | None) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.3f}"


def markdown(s: dict) -> str:
    h, t = s["heldout"], s["train"]
    lines = ["# Minorness: how much the audible notes can support", "",
             f"Held-out: `{h['corpus']}` test split, {h['clips']} clips ({h['minor_share']:.0%} labelled minor). "
             f"Trained on `{t['corpus']}` ({t['clips']} clips; {t['profile_clips']} for the profile classifier).", "",
             "## The mode label from a perfect transcription", "",
             "| classifier on the true notes' pitch-class profile | accuracy | AUC | r with the label |", "|---|---|---|---|"]
    names = {"kk_rule": "Krumhansl-Kessler: best minor vs best major key",
             "boosted_invariant": "gradient boosting, transposition-invariant features"}
    for k, v in s["mode_from_true_notes"].items():
        lines.append(f"| {names[k]} | {v['accuracy']:.3f} | {number(v['auc'])} | {number(v['r'])} |")
    lines += ["", "## The minorness rating from the corpus's measurements (gradient boosting)", "",
              "| inputs | measurements | held-out r |", "|---|---|---|"]
    for k, v in s["minorness_from_measurements"].items():
        lines.append(f"| {k.replace('_', ' ')} | {v['measurements']} | {number(v['r'])} |")
    if "model" in s:
        m = s["model"]
        lines += ["", f"The network `{m['name']}` hears audio only: held-out minorness r {number(m['minorness_r'])}, "
                      f"r with the mode label {number(m['mode_label_r'])}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=Path, required=True, help="controlled corpus the models were trained on")
    p.add_argument("--heldout", type=Path, required=True, help="controlled corpus whose test split holds unseen pieces")
    p.add_argument("--model", help="optional: a two-stage model (zoo name or folder) to set beside the ceiling")
    p.add_argument("--train-clips", type=int, default=2000, help="training clips re-realised for note rolls")
    p.add_argument("--window-seconds", type=float, default=10.0, help="clip length the rolls cover")
    p.add_argument("--cache-dir", type=Path, default=Path("runs/cache"))
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    summary = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "minorness_ceiling.json", json.dumps(summary, indent=1) + "\n")
    atomic_write_text(args.out / "minorness_ceiling.md", markdown(summary))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
