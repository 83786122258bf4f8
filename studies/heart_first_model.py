"""First heart-sound models (issue 34): named concepts heard from a phonocardiogram, an additive logistic head
for normal vs abnormal, its black-box twin, and where over the cardiac cycle the murmur concept is credited.

    midlevel corpus heart --out corpora/heart --n 3000 --seed 0 --workers 1
    midlevel corpus heart --out corpora/heart_heldout --n 600 --seed 1 --workers 1
    python studies/heart_first_model.py --corpus corpora/heart --heldout corpora/heart_heldout \
        --out runs/heart/models-e10 [--epochs 10]
    # the third round: twelve concepts (the ten, ectopic beats' share, a holosystolic murmur)
    python studies/heart_first_model.py --concepts card12 --out runs/heart/models-card12 --name heart_card12_model

Trains with ``midlevel.training.heart.train_heart_models`` (resumable; a finished run is only read), then
measures on the held-out corpus (another seed, read whole):

- the concepts (r, MAE; heart rate within 5 bpm on clean-to-moderately-noisy recordings; murmur detection
  AUC per grade), and the accuracy of both models (``results.json`` of the run);
- credit: on recordings with a systolic murmur of grade >= 3 (abnormal by that rule), how often the murmur
  concept's term is the largest positive term of the abnormal logit;
- the accuracy gap to the black box with a paired bootstrap 95% interval (the 600 recordings resampled), and
  per abnormal rule, how many of the recordings abnormal by that rule alone each model calls abnormal;
- timing: ``explain.cardiac_cycle`` on those recordings (0.3 s windows every 20 ms): in each beat, does the
  window where the systolic murmur adds most lie in systole (by the corpus's per-beat table, and by the
  learned segmenter)? The same for the diastolic murmur and diastole. Chance is each state's share of the
  cycle.

Writes ``studies/results/<name>.{json,md}`` (``--name``, default ``heart_first_model``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from report_cli import cpu_name  # noqa: E402

from midlevel.datasets.heart_corpus import (HEART_CONCEPT_SETS, HEART_CONCEPTS, STATES, frame_states,  # noqa: E402
                                            load_heart_corpus)
from midlevel.datasets.heart_sounds.physiology import ABNORMAL_RULES  # noqa: E402
from midlevel.training.heart import heart_config  # noqa: E402

from midlevel.explain.cardiac_cycle import cardiac_cycle, load_segmenter, peaks_in_systole  # noqa: E402
from midlevel.ioutil import write_report  # noqa: E402
from midlevel.audio import load_audio  # noqa: E402
from midlevel.model import BlackBoxModel, TwoStageModel  # noqa: E402
from midlevel.training.heart import recording_samples, track_outputs, train_heart_models  # noqa: E402


def credit(model: TwoStageModel, data, rows: np.ndarray, concept: str) -> dict:
    """How often ``concept``'s term is the largest positive term of the abnormal logit on ``rows``."""
    out = track_outputs(model, [data.paths[i] for i in rows], recording_samples(data))
    terms = out["contributions"][:, 1]  # (N, K): the abnormal logit's terms (normal is the reference, 0)
    names = list(model.config.concept_names)
    k = names.index(concept)
    top = terms.argmax(axis=1)
    extra = {}
    if concept == "systolic_murmur" and "holosystolic_murmur" in names:  # the murmur's two terms together
        h = names.index("holosystolic_murmur")
        both = terms.copy()
        both[:, k] += both[:, h]
        both[:, h] = -np.inf
        extra["largest_positive_term_with_holosystolic"] = float(np.mean((both.argmax(axis=1) == k) & (both[:, k] > 0)))
    return {"n": int(len(rows)), "largest_positive_term": float(np.mean((top == k) & (terms[:, k] > 0))), **extra,
            "positive_term": float(np.mean(terms[:, k] > 0)), "mean_term": float(terms[:, k].mean()),
            "predicted_abnormal": float(np.mean(out["logits"].argmax(axis=1) == 1)),
            "most_often_largest_other": names[int(np.bincount(top, minlength=len(names)).argmax())]}


def accuracy_gap(explainable: np.ndarray, black_box: np.ndarray, labels: np.ndarray, rules: pd.Series,
                 n_boot: int = 10000, seed: int = 0) -> dict:
    """Black box minus explainable accuracy (points), its paired bootstrap 95% interval (recordings resampled
    with replacement, both models on the same draw), and per abnormal rule the share of the recordings abnormal
    by that rule alone that each model calls abnormal (predictions: 1 = abnormal)."""
    right_e, right_b = explainable == labels, black_box == labels
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(labels), size=(n_boot, len(labels)))
    gaps = 100 * (right_b[idx].mean(axis=1) - right_e[idx].mean(axis=1))
    only = rules.fillna("").astype(str)
    alone = {}
    for rule in ABNORMAL_RULES:
        rows = np.flatnonzero(only.to_numpy() == rule)
        if len(rows):
            alone[rule] = {"n": int(len(rows)), "explainable": float(np.mean(explainable[rows] == 1)),
                           "black_box": float(np.mean(black_box[rows] == 1))}
    missed = np.flatnonzero((labels == 1) & (explainable == 0))
    return {"explainable": float(right_e.mean()), "black_box": float(right_b.mean()),
            "gap_points": float(100 * (right_b.mean() - right_e.mean())),
            "gap_interval_95": [float(np.percentile(gaps, 2.5)), float(np.percentile(gaps, 97.5))],
            "n_boot": n_boot, "abnormal_by_one_rule_alone": alone,
            "missed_abnormal": int(len(missed)),
            "missed_abnormal_by_one_rule": only.iloc[missed].value_counts().to_dict()}


def true_concept_head(corpus: str, data, concepts) -> dict:
    """The explainable model's head fitted on the training recordings' true concepts and read on the held-out
    ones: the accuracy the concepts allow if heard perfectly."""
    train = load_heart_corpus(corpus, concepts=concepts, check_audio=False)["train"]
    model = TwoStageModel(heart_config(concepts=concepts))
    model.head.fit(train.concepts, train.labels)
    with torch.no_grad():
        logits = model.head(torch.as_tensor(data.concepts, dtype=torch.float32))
    predicted = (logits[0] if isinstance(logits, tuple) else logits).argmax(1).numpy()
    return {"accuracy": float(np.mean(predicted == data.labels)),
            "accuracy_rule_labels": float(np.mean(predicted == data.labels_true))}


def timing(model, segmenter, data, rows: np.ndarray, concept: str, state: str) -> tuple[dict, pd.DataFrame]:
    """Per beat: is the window where ``concept`` adds most to the abnormal logit in ``state``?"""
    beats = []
    for i in rows:
        view = cardiac_cycle(model, str(data.paths[i]), segmenter=segmenter, segments=data.segments[i])
        peaks = peaks_in_systole(view, concept)
        peaks.insert(0, "record", data.names[i])
        peaks["level"] = data.frame["cond_level"].iloc[i]
        peaks["grade"] = data.frame[f"{concept}_grade"].iloc[i]
        seg = data.segments[i]
        cycle = seg["diastole_end"] - seg["s1_start"]
        peaks["share_of_state"] = float(np.mean(((seg["diastole_end"] - seg["s2_end"]) if state == "diastole"
                                                 else (seg["s2_start"] - seg["s1_end"])) / cycle))
        beats.append(peaks)
    beats = pd.concat(beats, ignore_index=True)
    flat = beats["contribution_range"] <= 0
    summary = {"recordings": int(len(rows)), "beats": int(len(beats)),
               "in_state": float(np.mean(beats["state"] == state)),
               "in_state_by_segmenter": float(np.mean(beats["state_predicted"] == state)),
               "chance": float(beats["share_of_state"].mean()),
               "flat_beats": int(flat.sum()),
               "states": beats["state"].value_counts(normalize=True).round(4).to_dict(),
               "by_grade": {int(g): float(np.mean(p["state"] == state)) for g, p in beats.groupby("grade")},
               "by_level": {str(lv): float(np.mean(p["state"] == state)) for lv, p in beats.groupby("level")},
               "recordings_with_most_beats_in_state": float(beats.groupby("record")["state"].apply(
                   lambda s: np.mean(s == state) > 0.5).mean())}
    return summary, beats


@torch.no_grad()
def segmenter_accuracy(segmenter, data) -> dict:
    right = seen = 0
    per_state = np.zeros((4, 4))
    for path, seg in zip(data.paths, data.segments):
        states = segmenter.states(load_audio(path, 2000).samples)
        truth = frame_states(seg, len(states), 100.0)
        known = truth >= 0
        right += int((states[known] == truth[known]).sum())
        seen += int(known.sum())
        np.add.at(per_state, (truth[known], states[known]), 1)
    recall = per_state.diagonal() / per_state.sum(axis=1)
    return {"frame_accuracy": right / seen, "recall": dict(zip(STATES, recall.round(4).tolist()))}


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    concepts = HEART_CONCEPT_SETS[args.concepts]
    results = train_heart_models(args.corpus, args.out, epochs=args.epochs, heldout=args.heldout, progress=False,
                                 backbone=args.backbone, concepts=concepts)
    out = Path(args.out)
    model = TwoStageModel.from_pretrained(out / "models" / "explainable")
    segmenter = load_segmenter(out / "models" / "segmenter")
    data = load_heart_corpus(args.heldout, fractions=(0.0, 0.0, 1.0), concepts=concepts)["test"]
    frame = data.frame
    fair = frame["cond_level"].isin(["clean", "moderate"]).to_numpy()
    loud_systolic = np.flatnonzero(frame["systolic_murmur_grade"].to_numpy() >= 3)
    diastolic = np.flatnonzero(frame["diastolic_murmur_grade"].to_numpy() >= 1)
    summary = {"corpus": args.corpus, "heldout": args.heldout, "epochs": args.epochs, "cpu": cpu_name(),
               "backbone": args.backbone, "concepts": list(concepts),
               "threads": args.threads, "run": results,
               "credit": {"systolic_murmur_grade_3_or_more": credit(model, data, loud_systolic, "systolic_murmur"),
                          "systolic_murmur_grade_3_or_more_clean_to_moderate": credit(
                              model, data, loud_systolic[fair[loud_systolic]], "systolic_murmur"),
                          "diastolic_murmur": credit(model, data, diastolic, "diastolic_murmur")},
               "segmenter": segmenter_accuracy(segmenter, data)}
    if (out / "models" / "black_box").is_dir():
        twin = BlackBoxModel.from_pretrained(out / "models" / "black_box")
        n = recording_samples(data)
        predicted = {k: track_outputs(m, data.paths, n)["logits"].argmax(axis=1) for k, m in
                     (("explainable", model), ("black_box", twin))}
        summary["gap"] = accuracy_gap(predicted["explainable"], predicted["black_box"], data.labels,
                                      frame["abnormal_rules"])
        summary["gap_rule_labels"] = accuracy_gap(predicted["explainable"], predicted["black_box"], data.labels_true,
                                                  frame["abnormal_rules"])
    summary["true_concept_head"] = true_concept_head(args.corpus, data, concepts)
    systolic_rows = np.flatnonzero(frame["systolic_murmur_grade"].to_numpy() >= 2)
    summary["timing"] = {}
    for name, rows, concept, state in (("systolic_murmur_grade_2_or_more", systolic_rows, "systolic_murmur", "systole"),
                                       ("diastolic_murmur", diastolic, "diastolic_murmur", "diastole")):
        summary["timing"][name], beats = timing(model, segmenter, data, rows, concept, state)
        summary["timing"][name]["concept"], summary["timing"][name]["state"] = concept, state
        beats.to_csv(out / f"timing_{name}.csv", index=False)
    summary["seconds"] = time.perf_counter() - started
    return summary


def markdown(s: dict) -> str:
    ex, bb = s["run"]["models"]["explainable"], s["run"]["models"].get("black_box", {})
    names = s.get("concepts", list(HEART_CONCEPTS))
    lines = ["# First heart-sound models (issue 34)", "",
             f"Training corpus `{s['corpus']}` (seed 0), held out `{s['heldout']}` (seed 1, read whole); "
             f"{s['epochs']} epochs; backbone `{s.get('backbone', 'compact_pcg')}`; {s['cpu']}, {s['threads']} thread(s).", "",
             "## Accuracy (normal vs abnormal)", "",
             "| model | test split (seed 0) | held out (seed 1) | held out, labels by the rules |", "|---|---|---|---|"]
    for name, m in ((f"explainable ({len(names)} concepts, {ex['head']['kind']} head)", ex), ("black box", bb)):
        if m:
            lines.append(f"| {name} | {m['test']['accuracy']:.3f} | {m['heldout']['accuracy']:.3f} | "
                         f"{m['heldout']['accuracy_rule_labels']:.3f} |")
    if "gap" in s:
        for key, what in (("gap", "observed labels"), ("gap_rule_labels", "labels by the rules")):
            g = s[key]
            lo, hi = g["gap_interval_95"]
            lines.append(f"\nHeld out, {what}: black box - explainable = {g['gap_points']:+.1f} points (paired bootstrap "
                         f"95% interval {lo:+.1f} to {hi:+.1f}, {g['n_boot']} draws).")
        lines += ["", "Recordings abnormal by one rule alone (held out), called abnormal:", "",
                  "| rule | n | explainable | black box |", "|---|---|---|---|"]
        for rule, v in s["gap"]["abnormal_by_one_rule_alone"].items():
            lines.append(f"| {rule} | {v['n']} | {v['explainable']:.2f} | {v['black_box']:.2f} |")
        lines.append(f"\nMissed abnormal recordings (observed labels): {s['gap']['missed_abnormal']}; by their rules: "
                     f"{s['gap']['missed_abnormal_by_one_rule']}.")
    if "true_concept_head" in s:
        t = s["true_concept_head"]
        lines.append(f"\nThe head on the true concepts (fitted on the training recordings'): {t['accuracy']:.3f} held "
                     f"out, {t['accuracy_rule_labels']:.3f} on the labels by the rules.")
    c = ex["heldout"]["concepts"]
    hr = c["heart_rate_bpm"]
    lines += ["", "## Concepts on the held-out corpus", "",
              f"Heart rate within 5 bpm: {hr['within_5_bpm_clean_to_moderate']:.3f} of the "
              f"{hr['n_clean_to_moderate']} clean-to-moderately-noisy recordings (MAE {hr['mae_clean_to_moderate']:.2f} bpm); "
              f"{hr['within_5_bpm']:.3f} of all.", "",
              "| concept | r | MAE (0-1) | MAE (unit) |", "|---|---|---|---|"]
    for name in names:
        lines.append(f"| {name} | {c[name]['r']:.3f} | {c[name]['mae_unit']:.3f} | {c[name]['mae']:.3g} |")
    lines += ["", "Murmur detection (the concept's value as the score; murmur of at least the grade vs none):", "",
              "| concept | grade | AUC | murmurs | none |", "|---|---|---|---|---|"]
    for name in ("systolic_murmur", "diastolic_murmur"):
        for key, v in c[name]["detection"].items():
            lines.append(f"| {name} | {key.split('_')[1]}+ | {v['auc']:.3f} | {v['n_murmur']} | {v['n_none']} |")
    grid = ex["head"]["grid"]
    shown = [0, 2, 4, 6, 8, 10]
    lines += ["", f"Head ({ex['head']['kind']}): each concept's term of the abnormal logit at concept values "
              f"{', '.join(f'{grid[i]:g}' for i in shown)} (intercept {ex['head']['intercept']:.2f}):", "",
              "| concept | " + " | ".join(f"{grid[i]:g}" for i in shown) + " |", "|---|" + "---|" * len(shown)]
    lines += [f"| {k} | " + " | ".join(f"{v[i]:+.2f}" for i in shown) + " |" for k, v in ex["head"]["curves"].items()]
    lines += ["", "## Credit and timing", "", "| recordings | n | murmur term largest positive | positive | predicted abnormal |",
              "|---|---|---|---|---|"]
    for name, v in s["credit"].items():
        lines.append(f"| {name} | {v['n']} | {v['largest_positive_term']:.3f} | {v['positive_term']:.3f} | "
                     f"{v['predicted_abnormal']:.3f} |")
    if "largest_positive_term_with_holosystolic" in s["credit"]["systolic_murmur_grade_3_or_more"]:
        lines.append("\nWith the holosystolic term counted as the murmur's: largest positive on " + ", ".join(
            f"{v['largest_positive_term_with_holosystolic']:.3f} ({name})" for name, v in s["credit"].items()
            if "largest_positive_term_with_holosystolic" in v) + ".")
    lines += ["", "| concept | recordings | beats | peak in its state (table) | (segmenter) | chance | states of the peaks |",
              "|---|---|---|---|---|---|---|"]
    for name, v in s["timing"].items():
        lines.append(f"| {v['concept']} in {v['state']} ({name}) | {v['recordings']} | {v['beats']} | {v['in_state']:.3f} | "
                     f"{v['in_state_by_segmenter']:.3f} | {v['chance']:.3f} | {v['states']} |")
    seg = s["segmenter"]
    lines += ["", f"Segmenter on the held-out corpus: frame accuracy {seg['frame_accuracy']:.3f}; recall "
              + ", ".join(f"{k} {v:.3f}" for k, v in seg["recall"].items()) + ".", ""]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="corpora/heart")
    p.add_argument("--heldout", default="corpora/heart_heldout")
    p.add_argument("--out", default="runs/heart/models-e10")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--backbone", default="compact_pcg_beats", help="compact_pcg_beats (default) or compact_pcg")
    p.add_argument("--concepts", default="card10", choices=sorted(HEART_CONCEPT_SETS),
                   help="card10: the issue's ten concepts (default); card12: and ectopic beats, a holosystolic murmur")
    p.add_argument("--name", default="heart_first_model", help="results file name (without extension)")
    p.add_argument("--results", default=str(Path(__file__).resolve().parent / "results"))
    args = p.parse_args()
    summary = run(args)
    write_report(args.results, args.name, summary, "")  # the numbers first, whatever the tables do
    write_report(args.results, args.name, summary, markdown(summary))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
