"""Which ingredient of each concept's formula does a network fail to hear? A guide for issue 5's concept bar.

    python studies/concept_errors.py --model emotion-transcribe-linear-mid10-ctrl12k --heldout corpora/heldout \
        [--cache-dir runs/cache] [--out studies/results] [--stem concept_errors]

The controlled corpus computes every mid-level rating from a few recorded ingredients: measurements
on the sounding notes (``m_*`` in ``factors.csv``) and performance factors such as timing jitter and
rubato (``datasets.controlled.ratings.raw_scores``; ``ratings.INGREDIENTS`` lists them per concept).
For each concept a two-stage model predicts on the ``--heldout`` test split, and for each of its
ingredients, this reports

- r of the ingredient with the rating and with the prediction: an ingredient the rating follows
  closely and the prediction loosely is one the network under-reads;
- the held-out r of a ridge regression of the rating on the prediction *plus the true ingredient*,
  cross-validated in 5 folds grouped by piece, beside the same regression on the prediction alone:
  the gain is what hearing that ingredient perfectly would add (an upper bound for any better
  detector of it, given the network's other errors).

Writes ``<--stem>.json`` and ``.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GroupKFold, cross_val_predict

import midlevel
from midlevel.datasets.controlled.ratings import INGREDIENTS
from midlevel.model import TwoStageModel
from midlevel.training.cache import cached_log_spectrograms
from midlevel.training.data import load_splits
from midlevel.training.loops import ArraySet, network_outputs

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, also when a test loads this file
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # report_cli, shared with benchmarks/
RESULTS = Path(__file__).resolve().parent / "results"
from report_cli import report_parser, run_and_report  # noqa: E402

FOLDS = 5


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.corrcoef(a, b)[0, 1]) if np.std(a) > 0 and np.std(b) > 0 else None


def cross_validated_r(features: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float | None:
    """Held-out r of a ridge fit of ``y`` on ``features``, folds grouped by piece (no piece on both sides)."""
    ridge = RidgeCV(alphas=np.logspace(-3, 3, 13))
    pred = cross_val_predict(ridge, features, y, groups=groups, cv=GroupKFold(n_splits=FOLDS))
    return pearson(pred, y)


def ingredient_table(y: np.ndarray, pred: np.ndarray, table: pd.DataFrame, ingredients: tuple[str, ...],
                     groups: np.ndarray) -> dict:
    """One concept: r of rating and prediction, and each ingredient's reading and gain if known."""
    alone = cross_validated_r(pred[:, None], y, groups)
    rows = {}
    for name in ingredients:
        x = table[name].to_numpy(dtype=float)
        known = cross_validated_r(np.c_[pred, x], y, groups)
        rows[name] = {"r_rating": pearson(x, y), "r_prediction": pearson(x, pred), "r_if_known": known,
                      "gain": None if known is None or alone is None else known - alone}
    return {"r": pearson(pred, y), "r_cross_validated": alone, "ingredients": rows}


def factor_rows(corpus: str | Path, ids) -> pd.DataFrame:
    """The controlled corpus's ``factors.csv`` rows of clips ``ids``, in that order (a clear error if any is missing)."""
    path = Path(corpus) / "factors.csv"
    table = pd.read_csv(path, dtype={"song_id": str}).set_index("song_id")
    missing = [i for i in ids if i not in table.index]
    if missing:
        raise SystemExit(f"{path}: no row for clips {missing[:5]} (not a controlled corpus?)")
    return table.loc[list(ids)]


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    model = midlevel.load(args.model)
    if not isinstance(model, TwoStageModel):
        raise SystemExit(f"--model {args.model}: a black box predicts no concepts")
    names = [c for c in model.config.concept_names if c in INGREDIENTS]
    if not names:
        raise SystemExit(f"--model {args.model}: none of its concepts ({', '.join(model.config.concept_names)}) "
                         "has a formula in the controlled corpus")
    clips = load_splits(args.heldout, concepts=names)["test"]
    if not len(clips):
        raise SystemExit(f"--heldout {args.heldout}: its test split is empty")
    table = factor_rows(args.heldout, clips.ids)
    absent = sorted({c for n in names for c in INGREDIENTS[n]} - set(table.columns))
    if absent:
        raise SystemExit(f"{Path(args.heldout) / 'factors.csv'}: no column {absent} (a corpus of another build?)")
    spec = cached_log_spectrograms(clips.paths, model.frontend, model.config.window_samples, args.cache_dir)
    pred = network_outputs(model, ArraySet(spec))
    order = list(model.config.concept_names)
    groups = table["piece_id"].to_numpy()
    concepts = {n: ingredient_table(clips.concepts[:, k], pred[:, order.index(n)], table, INGREDIENTS[n], groups)
                for k, n in enumerate(names)}
    return {"model": str(args.model), "heldout": {"corpus": str(args.heldout), "clips": len(clips.ids),
                                                  "pieces": int(len(np.unique(groups)))},
            "model_concepts": len(order), "folds": FOLDS, "concepts": concepts}


def number(v: float | None, sign: bool = False) -> str:
    return "-" if v is None else (f"{v:+.3f}" if sign else f"{v:.3f}")


def markdown(s: dict) -> str:
    h = s["heldout"]
    lines = ["# Which ingredient of each concept does the network miss?", "",
             f"Model `{s['model']}` on `{h['corpus']}` (test split: {h['clips']} clips of {h['pieces']} pieces no "
             "training split holds). Per ingredient of the rating's formula: r with the rating, r with the "
             f"prediction, and the r of a ridge fit of the rating on the prediction plus the true ingredient "
             f"({s['folds']} folds grouped by piece) against the same fit on the prediction alone.", "",
             "| concept | r | ingredient | r with rating | r with prediction | r if known | gain |",
             "|---|---|---|---|---|---|---|"]
    for concept, c in s["concepts"].items():
        for i, (name, v) in enumerate(c["ingredients"].items()):
            head = f"| {concept} | {number(c['r'])} |" if i == 0 else "| | |"
            lines.append(f"{head} `{name}` | {number(v['r_rating'])} | {number(v['r_prediction'])} | "
                         f"{number(v['r_if_known'])} | {number(v['gain'], sign=True)} |")
    best = {n: max(c["ingredients"].items(), key=lambda kv: kv[1]["gain"] or -1.0) for n, c in s["concepts"].items()}
    lines += ["", "Largest gain per concept (and what it would add to the mean r over the model's "
              f"{s['model_concepts']} concepts): "
              + "; ".join(f"{n} `{k}` {number(v['gain'], sign=True)} ({number((v['gain'] or 0) / s['model_concepts'], sign=True)})"
                          for n, (k, v) in best.items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = report_parser(__doc__, "concept_errors", RESULTS)
    p.add_argument("--model", required=True, help="two-stage model: zoo name or folder")
    p.add_argument("--heldout", required=True, help="controlled corpus whose test split holds unseen pieces")
    return run_and_report(p.parse_args(argv), run, markdown)


if __name__ == "__main__":
    sys.exit(main())
