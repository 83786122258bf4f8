"""How well do concept networks generalise to pieces they never heard? Train vs val vs held-out r.

    python studies/concept_generalisation.py \
        --model shipped=emotion-compact-linear-mid7-ctrl3k-seq@corpora/train \
        --model diverse=runs/cpp1/models/a2mid@corpora/train-cpp1 \
        --heldout corpora/heldout-seed2 [--cache-dir runs/cache] [--out studies/results]

Each ``--model LABEL=NAME_OR_DIR@CORPUS`` is a two-stage model (zoo name or folder) and the corpus it
was trained on. For each, per-concept Pearson r on that corpus's train / val / test splits and on the
``--heldout`` test split (another seed, pieces no training split holds), the held-out r per style
group (when the metadata records one), and for every model after the first its held-out mean r minus
the first's, with a 95% paired bootstrap interval that resamples whole *pieces* (clips cut from one
piece share their errors, so they are not independent evidence).

A train-val gap much larger than the val-held-out gap says the network learned its training pieces
rather than the concepts; that is the question behind issue 5's "mean concept r >= 0.85".

Writes ``<--stem>.json`` and ``.md`` under ``--out``. The committed results:
``concept_generalisation`` (the shipped concept network vs the same recipe on a corpus of 2.4x as many
distinct pieces, ``--clips-per-piece 1``) and ``concept_generalisation_outside`` (the shipped joint
model vs the joint model trained with the outside concepts), ``concept_generalisation_transcribe``
(the transcribing backbone vs the descriptors alone), ``concept_generalisation_clips`` and
``concept_generalisation_clips12k`` (the transcribing recipe on 3000 vs 6000 vs 12000 clips),
``concept_generalisation_clips24k`` (the note-formula model on 12000 vs 24000 clips) and
``concept_generalisation_context`` (the transcriber with and without a second of context) and
``concept_generalisation_pulse`` (with and without ``PulseFeatures``) and
``concept_generalisation_ingredients`` (with and without the auxiliary loss on the ratings'
ingredients, ``--ingredient-weight``); see ``docs/studies/README.md``.
For a transcribing backbone and a controlled held-out corpus it also scores the notes it hears.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import midlevel
from midlevel.datasets.controlled.rolls import corpus_rolls
from midlevel.model import TwoStageModel
from midlevel.training.cache import cached_log_spectrograms
from midlevel.training.data import clip_pieces, load_splits
from midlevel.training.loops import ArraySet, network_outputs
from midlevel.training.metrics import mean_r, paired_bootstrap_mean_r, pearson_per_column
from midlevel.training.recipes import transcription_scores
from midlevel.zoo import weights_sha256

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, also when a test loads this file
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # report_cli, shared with benchmarks/
RESULTS = Path(__file__).resolve().parent / "results"
from report_cli import report_parser, run_and_report  # noqa: E402

SPLITS = ("train", "val", "test")


def parse_model(spec: str) -> tuple[str, str, str]:
    """``LABEL=NAME_OR_DIR@CORPUS`` -> (label, model, corpus)."""
    label, sep, rest = spec.partition("=")
    model, at, corpus = rest.rpartition("@")
    if not sep or not at or not label or not model or not corpus:
        raise argparse.ArgumentTypeError(f"--model {spec!r}: expected LABEL=NAME_OR_DIR@CORPUS")
    return label, model, corpus


def concept_r(y: np.ndarray, pred: np.ndarray, names: list[str]) -> dict[str, float]:
    r = pearson_per_column(y, pred)
    return {**{n: float(r[j]) for j, n in enumerate(names)}, "mean": mean_r(y, pred)}


def arrays(model: TwoStageModel, clips, cache_dir: Path) -> ArraySet:
    spec = cached_log_spectrograms(clips.paths, model.frontend, model.config.window_samples, cache_dir, progress=False)
    return ArraySet(spec, clips.concepts, clips.targets)


def outputs(model: TwoStageModel, clips, cache_dir: Path) -> np.ndarray:
    return network_outputs(model, arrays(model, clips, cache_dir))


def heldout_transcription(model: TwoStageModel, clips, data: ArraySet, corpus: Path, cache_dir: Path) -> dict | None:
    """A transcribing backbone's frame scores on the held-out clips' note rolls (a controlled corpus only)."""
    if not hasattr(model.backbone, "forward_with_salience") or not (Path(corpus) / "corpus.json").is_file():
        return None
    rolls = corpus_rolls(corpus, clips.ids, data.logspec.shape[-1], model.config.frontend.hop_length,
                         cache_dir=cache_dir, progress=False)
    return transcription_scores(model, data, rolls)


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    summary: dict = {"heldout": {"corpus": str(args.heldout)}, "models": {}}
    first = None
    for label, name, corpus in args.model:
        model = midlevel.load(name)
        if not isinstance(model, TwoStageModel):
            raise SystemExit(f"--model {label}: {name} is not a two-stage model (it predicts no concepts)")
        names = list(model.config.concept_names)
        splits = load_splits(corpus, concepts=names)
        heldout = load_splits(args.heldout, concepts=names)["test"]
        pieces, style = clip_pieces(args.heldout, heldout.ids)
        summary["heldout"].update(clips=len(heldout), pieces=len(set(pieces)))
        entry = {"model": name, "corpus": str(corpus), "weights_sha256": weights_sha256(name), "concepts": names,
                 "pieces": {s: len(set(clip_pieces(corpus, splits[s].ids)[0])) for s in SPLITS}, "r": {}}
        if not len(heldout):
            raise SystemExit(f"--heldout {args.heldout}: its test split is empty")
        for s in (s for s in SPLITS if len(splits[s])):  # an empty split (a tiny corpus) has no r
            entry["r"][s] = concept_r(splits[s].concepts, outputs(model, splits[s], args.cache_dir), names)
            print(f"{label} {s}: mean r {entry['r'][s]['mean']:.3f}", flush=True)
        held_arrays = arrays(model, heldout, args.cache_dir)
        pred = network_outputs(model, held_arrays)
        entry["r"]["heldout"] = concept_r(heldout.concepts, pred, names)
        print(f"{label} heldout: mean r {entry['r']['heldout']['mean']:.3f}", flush=True)
        transcription = heldout_transcription(model, heldout, held_arrays, args.heldout, args.cache_dir)
        if transcription is not None:
            entry["heldout_transcription"] = transcription
        if style is not None:
            entry["heldout_by_style"] = {
                g: {"clips": int((style == g).sum()), **concept_r(heldout.concepts[style == g], pred[style == g], names)}
                for g in sorted(set(style))}
        if first is None:
            first = (label, names, pred)
        elif set(first[1]) <= set(names):
            # compared on the first model's concepts (a model with extra concepts is not credited for them)
            cols = [names.index(n) for n in first[1]]
            y, mine = heldout.concepts[:, cols], pred[:, cols]
            entry["vs_first"] = {
                "first": first[0], "concepts": first[1], "mean_r_gain": mean_r(y, mine) - mean_r(y, first[2]),
                "ci95_by_piece": paired_bootstrap_mean_r(y, mine, first[2], groups=pieces, n=args.bootstrap)}
        summary["models"][label] = entry
    return summary


def cell(row: dict, name: str) -> str:
    return f"{row[name]:.3f}" if name in row else "-"


def markdown(summary: dict) -> str:
    h = summary["heldout"]
    names = list(dict.fromkeys(n for e in summary["models"].values() for n in e["concepts"]))
    lines = ["# Concept generalisation: training pieces vs unseen pieces", "",
             f"Held-out: `{h['corpus']}` test split, {h['clips']} clips of {h['pieces']} pieces that no training split holds.",
             "Pearson r per concept (mean over the model's own concepts; constant predictions count as 0).", "",
             "| model | split | pieces | " + " | ".join(names) + " | mean |", "|---|---|---|" + "---|" * (len(names) + 1)]
    for label, e in summary["models"].items():
        for s in (s for s in (*SPLITS, "heldout") if s in e["r"]):
            n = e["pieces"].get(s, h["pieces"])
            lines.append(f"| {label} | {s} | {n} | " + " | ".join(cell(e["r"][s], c) for c in names) + f" | {e['r'][s]['mean']:.3f} |")
    lines += ["", "## Held-out r by style group", "", "| model | style | clips | " + " | ".join(names) + " | mean |",
              "|---|---|---|" + "---|" * (len(names) + 1)]
    for label, e in summary["models"].items():
        for g, row in e.get("heldout_by_style", {}).items():
            lines.append(f"| {label} | {g} | {row['clips']} | " + " | ".join(cell(row, c) for c in names) + f" | {row['mean']:.3f} |")
    scored = {label: e["heldout_transcription"] for label, e in summary["models"].items() if "heldout_transcription" in e}
    if scored:
        lines += ["", "## Held-out transcription (frame level, probability 0.5)", "",
                  "| model | channel | precision | recall | F1 |", "|---|---|---|---|---|"]
        for label, channels in scored.items():
            lines += [f"| {label} | {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} |"
                      for c, v in channels.items()]
    gains = [(label, e["vs_first"]) for label, e in summary["models"].items() if "vs_first" in e]
    if gains:
        lines += ["", "## Held-out gain over the first model", ""]
        for label, g in gains:
            lo, hi = g["ci95_by_piece"]
            lines.append(f"- {label} - {g['first']}: {g['mean_r_gain']:+.3f} mean r "
                         f"(95% paired bootstrap over pieces: {lo:+.3f} to {hi:+.3f})")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = report_parser(__doc__, "concept_generalisation", RESULTS)
    p.add_argument("--model", type=parse_model, action="append", required=True, metavar="LABEL=NAME_OR_DIR@CORPUS")
    p.add_argument("--heldout", required=True, help="corpus whose test split holds only unseen pieces")
    p.add_argument("--bootstrap", type=int, default=2000)
    return run_and_report(p.parse_args(argv), run, markdown)


if __name__ == "__main__":
    sys.exit(main())
