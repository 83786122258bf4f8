"""What does the concept bottleneck cost? Emotion r of explainable models vs the black box, with ceilings.

    python benchmarks/cost_of_interpretability.py --black-box compact-a2e \
        --model joint-7=compact-linear --model sequential-7=compact-linear-sequential \
        --model joint-10=runs/outside/models/joint-linear \
        --train-corpus corpora/train --heldout corpora/heldout-seed2 [--cache-dir runs/cache] [--out benchmarks/results]

On the ``--heldout`` test split (pieces no training split holds): per-target and mean Pearson r of the
black box (A2E) and of each ``--model LABEL=NAME_OR_DIR`` (two-stage models, whatever their concepts),
each model's *cost* (black box mean r minus its own) with a 95% paired bootstrap interval that resamples
whole pieces, and the *ceiling* of each bottleneck: a least-squares linear head fitted on the training
corpus's **true** ratings of the same concepts and applied to the held-out true ratings. A seven-concept
ceiling below the black box means the targets depend on something the seven concepts do not name (the
controlled corpus adds loudness, tempo and register terms by design); naming those as concepts
(``midlevel train --outside-concepts``) raises the ceiling.

Writes ``cost_of_interpretability.json`` and ``.md`` (or ``--stem``) under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LinearRegression

import midlevel
from midlevel.model import BlackBoxModel, TwoStageModel
from midlevel.training.cache import cached_log_spectrograms
from midlevel.training.data import clip_pieces, load_splits
from midlevel.training.loops import ArraySet, predict_targets
from midlevel.training.metrics import mean_r, paired_bootstrap_mean_r, pearson_per_column
from midlevel.zoo import weights_sha256

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, also when a test loads this file
from report_cli import report_parser, run_and_report  # noqa: E402


def parse_model(spec: str) -> tuple[str, str]:
    """``LABEL=NAME_OR_DIR`` -> (label, model)."""
    label, sep, model = spec.partition("=")
    if not sep or not label or not model:
        raise argparse.ArgumentTypeError(f"--model {spec!r}: expected LABEL=NAME_OR_DIR")
    return label, model


def targets_of(model, clips, cache_dir: Path) -> np.ndarray:
    spec = cached_log_spectrograms(clips.paths, model.frontend, model.config.window_samples, cache_dir, progress=False)
    return predict_targets(model, ArraySet(spec, clips.concepts, clips.targets))


def ceiling(train_corpus, heldout, concepts: list[str]) -> dict:
    """Held-out target r of a linear head fitted on the true ratings of ``concepts``."""
    train = load_splits(train_corpus, concepts=concepts)["train"]
    test = load_splits(heldout, concepts=concepts)["test"]
    pred = LinearRegression().fit(train.concepts, train.targets).predict(test.concepts)
    r = pearson_per_column(test.targets, pred)
    return {"concepts": concepts, "r": {**dict(zip(test.target_names, map(float, r))), "mean": mean_r(test.targets, pred)}}


def trained_on(model) -> str:
    """The corpus a model was trained on, as its config records it: models trained on more data are not
    compared like for like with the black box, and the table says so."""
    return str(model.config.metadata.get("corpus", "unrecorded"))


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    clips = load_splits(args.heldout)["test"]
    pieces, _ = clip_pieces(args.heldout, clips.ids)
    names = clips.target_names
    box = midlevel.load(args.black_box)
    if not isinstance(box, BlackBoxModel):
        raise SystemExit(f"--black-box {args.black_box} is not a black-box (A2E) model")
    box_pred = targets_of(box, clips, args.cache_dir)

    def row(pred):
        r = pearson_per_column(clips.targets, pred)
        return {**dict(zip(names, map(float, r))), "mean": mean_r(clips.targets, pred)}

    summary: dict = {
        "heldout": {"corpus": str(args.heldout), "clips": len(clips), "pieces": len(set(pieces))},
        "train_corpus": str(args.train_corpus), "targets": names,
        "black_box": {"model": args.black_box, "weights_sha256": weights_sha256(args.black_box),
                      "trained_on": trained_on(box), "r": row(box_pred)},
        "models": {}, "ceilings": {},
    }
    for label, name in args.model:
        model = midlevel.load(name)
        if not isinstance(model, TwoStageModel):
            raise SystemExit(f"--model {label}: {name} is not a two-stage model")
        pred = targets_of(model, clips, args.cache_dir)
        concepts = list(model.config.concept_names)
        entry = {"model": name, "weights_sha256": weights_sha256(name), "concepts": concepts,
                 "trained_on": trained_on(model), "r": row(pred)}
        entry["cost"] = summary["black_box"]["r"]["mean"] - entry["r"]["mean"]
        entry["cost_ci95_by_piece"] = [-v for v in paired_bootstrap_mean_r(
            clips.targets, pred, box_pred, groups=pieces, n=args.bootstrap)][::-1]
        summary["models"][label] = entry
        key = str(len(concepts)) + " concepts: " + ", ".join(concepts)
        if key not in summary["ceilings"]:
            summary["ceilings"][key] = ceiling(args.train_corpus, args.heldout, concepts)
        entry["ceiling"] = key
        print(f"{label}: mean r {entry['r']['mean']:.3f}, cost {entry['cost']:+.3f}", flush=True)
    return summary


def markdown(summary: dict) -> str:
    names, h, box = summary["targets"], summary["heldout"], summary["black_box"]
    head = "| | " + " | ".join(names) + " | mean | cost vs A2E (95% CI by piece) |"
    lines = ["# Cost of interpretability: explainable models vs their black box", "",
             f"Held-out: `{h['corpus']}` test split, {h['clips']} clips of {h['pieces']} pieces no training split holds. "
             "Pearson r per target; cost = the black box's mean r minus the model's.", "",
             head, "|---|" + "---|" * (len(names) + 2),
             f"| A2E `{box['model']}` (trained on `{box.get('trained_on')}`) | " + " | ".join(f"{box['r'][n]:.3f}" for n in names) + f" | {box['r']['mean']:.3f} | |"]
    for label, e in summary["models"].items():
        lo, hi = e["cost_ci95_by_piece"]
        lines.append(f"| {label} `{e['model']}` ({len(e['concepts'])} concepts; trained on `{e.get('trained_on')}`) | "
                     + " | ".join(f"{e['r'][n]:.3f}" for n in names)
                     + f" | {e['r']['mean']:.3f} | {e['cost']:+.3f} ({lo:+.3f} to {hi:+.3f}) |")
    lines += ["", "## Ceilings: a linear head on the true ratings", "",
              f"Fitted on the train split of `{summary['train_corpus']}`, applied to the held-out true ratings: "
              "what a perfect concept network with this bottleneck would reach.", "",
              "| bottleneck | " + " | ".join(names) + " | mean |", "|---|" + "---|" * (len(names) + 1)]
    for key, c in summary["ceilings"].items():
        lines.append(f"| {key} | " + " | ".join(f"{c['r'][n]:.3f}" for n in names) + f" | {c['r']['mean']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = report_parser(__doc__, "cost_of_interpretability")
    p.add_argument("--black-box", required=True, help="the A2E counterpart (zoo name or folder)")
    p.add_argument("--model", type=parse_model, action="append", required=True, metavar="LABEL=NAME_OR_DIR")
    p.add_argument("--train-corpus", required=True, help="corpus the models were trained on (for the ceilings)")
    p.add_argument("--heldout", required=True, help="corpus whose test split holds only unseen pieces")
    p.add_argument("--bootstrap", type=int, default=2000)
    return run_and_report(p.parse_args(argv), run, markdown)


if __name__ == "__main__":
    sys.exit(main())
