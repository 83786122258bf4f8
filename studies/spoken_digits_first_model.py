"""First explainable spoken-digit model: can concepts heard from audio carry digit and sex on unseen voices?

    python studies/spoken_digits_first_model.py --corpus corpora/speech --out runs/speech-first [--epochs 12]

The corpus is ``midlevel corpus speech`` (98 synthesiser voices; splits by voice). A compact CNN learns the
15 concepts (8 phone classes, syllables, 6 Praat speaker measures, each mapped to 0-1 by the fixed ranges
in ``SCALES``) with the library's ``train_network`` ("concepts" setup, level-normalised front-end at 16 kHz).
Then two sparse logistic heads (``midlevel.heads.SparseLogisticHead``) are fitted on the predicted concepts
of the training voices: one for the digit, one for the speaker's sex. Reported on the held-out voices:
accuracy of each head; the same heads on the *true* concepts (what the bottleneck allows); a logistic
regression on the CNN's embedding (what the network heard, unconstrained by the concepts); concept r and
accuracy per concept. Writes ``studies/results/spoken_digits_first_model.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from report_cli import cpu_name  # noqa: E402

from midlevel.config import FrontendConfig, ModelConfig  # noqa: E402
from midlevel.heads.logistic import SparseLogisticHead  # noqa: E402
from midlevel.ioutil import write_report  # noqa: E402
from midlevel.model import TwoStageModel  # noqa: E402
from midlevel.training.cache import cached_log_spectrograms  # noqa: E402
from midlevel.training.loops import ArraySet, TrainSettings, batched_outputs, network_outputs, train_network  # noqa: E402
from midlevel.training.metrics import pearson_per_column  # noqa: E402

PHONETIC = ["sibilant", "fricative", "nasal", "plosive", "liquid_glide", "vowel_front", "vowel_back", "vowel_open"]
#: concept -> (low, high, log?) mapped to 0-1
SCALES = {"syllables": (1, 2, False), "f0_median_hz": (60, 400, True), "f0_range_st": (0, 12, False),
          "f1_hz": (250, 1000, False), "f2_hz": (800, 2800, False), "f3_hz": (2000, 4000, False),
          "hnr_db": (0, 30, False)}
CONCEPTS = PHONETIC + list(SCALES)
FRONTEND = FrontendConfig(sample_rate=16000, n_fft=512, hop_length=160, bands_per_octave=12, fmin=50.0,
                          fmax=8000.0, level_target_dbfs=-20.0)
WINDOW_S = 1.2


def unit_concepts(labels: pd.DataFrame) -> np.ndarray:
    cols = [labels[c].to_numpy(float) for c in PHONETIC]
    for name, (lo, hi, log) in SCALES.items():
        v = labels[name].to_numpy(float)
        v = (np.log(v / lo) / np.log(hi / lo)) if log else (v - lo) / (hi - lo)
        cols.append(np.clip(v, 0, 1))
    return np.stack(cols, axis=1)


def accuracy(head: SparseLogisticHead, concepts: np.ndarray, labels: np.ndarray) -> float:
    return float((head.predict_class(concepts) == labels).mean())


def run(args: argparse.Namespace) -> dict:
    started = time.time()
    labels = pd.read_csv(args.corpus / "labels.csv")
    labels = labels[np.isfinite(unit_concepts(labels)).all(axis=1)].reset_index(drop=True)
    config = ModelConfig(backbone="compact", frontend=FRONTEND, window_seconds=WINDOW_S, hop_seconds=WINDOW_S / 2,
                         concept_names=CONCEPTS, concept_scale=(0.0, 1.0), target_names=["digit"], target_scale=(0, 9),
                         name="spoken-digits-study")
    torch.manual_seed(args.seed)
    model = TwoStageModel(config)
    arrays, parts = {}, {}
    for split in ("train", "val", "test"):
        part = labels[labels["split"] == split].reset_index(drop=True)
        spec = cached_log_spectrograms([args.corpus / f for f in part["file"]], model.frontend, config.window_samples,
                                       args.out / "cache", progress=False)
        arrays[split], parts[split] = ArraySet(spec, unit_concepts(part)), part
    logspec = arrays["train"].logspec.float()
    model.set_input_normalization(logspec.mean(dim=(0, 2)), logspec.std(dim=(0, 2)))
    settings = TrainSettings(setup="concepts", epochs=args.epochs, batch_size=32, lr=2e-3, patience=4, seed=args.seed,
                             lr_schedule="cosine")
    state = train_network(model, arrays["train"], arrays["val"], settings, args.out / "run", progress=False)
    predicted = {s: np.clip(network_outputs(model, arrays[s]), 0, 1) for s in arrays}
    embedded = {s: batched_outputs(model, arrays[s], model.backbone) for s in arrays}
    truth = {s: arrays[s].concepts for s in arrays}
    tasks = {"digit": "digit", "sex": "sex"}
    out: dict = {"clips": {s: len(p) for s, p in parts.items()},
                 "voices": {s: int(p["speaker"].nunique()) for s, p in parts.items()},
                 "epochs": len(state["history"]), "best_epoch": state["best_epoch"], "tasks": {}}
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    for task, column in tasks.items():
        y = {s: (parts[s][column] == "female").to_numpy(int) if task == "sex" else parts[s][column].to_numpy(int)
             for s in parts}
        n_classes = 10 if task == "digit" else 2
        on_pred = SparseLogisticHead(len(CONCEPTS), n_classes, concept_names=CONCEPTS, C=args.head_c).fit(
            predicted["train"], y["train"])
        on_true = SparseLogisticHead(len(CONCEPTS), n_classes, concept_names=CONCEPTS, C=args.head_c).fit(
            truth["train"], y["train"])
        scaler = StandardScaler().fit(embedded["train"])
        probe = LogisticRegression(max_iter=2000).fit(scaler.transform(embedded["train"]), y["train"])
        weights = np.abs(on_pred.coef_).sum(axis=0)
        out["tasks"][task] = {
            "explainable_test_accuracy": accuracy(on_pred, predicted["test"], y["test"]),
            "true_concepts_test_accuracy": accuracy(on_true, truth["test"], y["test"]),
            "embedding_probe_test_accuracy": float(probe.score(scaler.transform(embedded["test"]), y["test"])),
            "top_concepts": [CONCEPTS[k] for k in np.argsort(-weights)[:6]],
        }
    r = pearson_per_column(truth["test"], predicted["test"])
    out["concepts"] = {}
    for k, name in enumerate(CONCEPTS):
        row = {"r": float(r[k])}
        if name in PHONETIC:
            row["accuracy"] = float(((predicted["test"][:, k] > 0.5) == (truth["test"][:, k] > 0.5)).mean())
        out["concepts"][name] = row
    out.update({"machine": f"{cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
                "seconds": round(time.time() - started), "seed": args.seed, "corpus": str(args.corpus)})
    return out


def markdown(s: dict) -> str:
    lines = ["# First explainable spoken-digit model (study)", "",
             f"Corpus `{s['corpus']}`: {s['clips']['train']}/{s['clips']['val']}/{s['clips']['test']} clips from "
             f"{s['voices']['train']}/{s['voices']['val']}/{s['voices']['test']} voices (train/val/test; test voices "
             f"never heard in training); compact CNN, {s['epochs']} epochs (best {s['best_epoch']}); {s['machine']}; "
             f"{s['date']}; {s['seconds']} s. Produced by `studies/spoken_digits_first_model.py`.", "",
             "| task | explainable (head on predicted concepts) | head on true concepts | probe of the CNN's embedding | "
             "concepts with the largest weights |", "|---|---|---|---|---|"]
    for task, t in s["tasks"].items():
        lines.append(f"| {task} | {t['explainable_test_accuracy']:.3f} | {t['true_concepts_test_accuracy']:.3f} | "
                     f"{t['embedding_probe_test_accuracy']:.3f} | {', '.join(t['top_concepts'])} |")
    lines += ["", "| concept | r on held-out voices | accuracy (present/absent) |", "|---|---|---|"]
    for name, c in s["concepts"].items():
        acc = f"{c['accuracy']:.3f}" if "accuracy" in c else ""
        lines.append(f"| {name} | {c['r']:.3f} | {acc} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=Path("corpora/speech"))
    p.add_argument("--out", type=Path, default=Path("runs/speech-first"))
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--head-c", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    summary = run(args)
    write_report(args.results, "spoken_digits_first_model", summary, markdown(summary))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
