"""When is each phone class heard? The timeline of a spoken-digit model trained on span-labelled crops.

    python studies/spoken_digits_timing.py [--corpus corpora/speech] [--crop 0.3] [--epochs 10]

``midlevel train-speech``'s digit model trains its concept network on random 0.3 s crops whose phone-class
labels say whether the crop overlaps where the class was said (``training.loops.timed_labels``). Here, on the
corpus's held-out test voices, the concept timeline (windows of the crop length every 10 ms,
``explain.timeline``) is read for words whose phones have known spans: the window where a concept is
strongest, as a share of the word (0 = its start, 1 = its end), and whether that window overlaps the
concept's labelled span. Writes ``studies/results/spoken_digits_timing.{json,md}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from midlevel import load
from midlevel.audio import load_audio
from midlevel.explain.timeline import timeline
from midlevel.ioutil import write_report
from midlevel.training.speech import train_speech_models

CASES = (("sibilant", "seven"), ("nasal", "seven"), ("sibilant", "zero"), ("plosive", "eight"), ("nasal", "nine"))


def run(args) -> dict:
    out = Path(args.out)
    results = train_speech_models(args.corpus, out, task="digit", epochs=args.epochs, black_box=False,
                                  progress=False, crop_seconds=args.crop)
    model = load(out / "models" / "explainable")
    labels = pd.read_csv(Path(args.corpus) / "labels.csv")
    rows = []
    for concept, word in CASES:
        part = labels[(labels["word"] == word) & (labels["split"] == "test")]
        where, overlaps = [], []
        for _, row in part.iterrows():
            line = timeline(model, load_audio(str(Path(args.corpus) / row["file"]), model.config.sample_rate),
                            window_seconds=args.crop, hop_seconds=0.01)
            peak = float(line.centres[int(np.argmax(line.concepts[:, line.concept_names.index(concept)]))])
            where.append((peak - row["offset_s"]) / row["word_s"])
            lo, hi = row[f"{concept}_start_s"], row[f"{concept}_end_s"]
            overlaps.append(lo - args.crop / 2 <= peak <= hi + args.crop / 2)
        where = np.array(where)
        rows.append({"concept": concept, "word": word, "n": len(part), "median_share": float(np.median(where)),
                     "first_quarter": float(np.mean(where <= 0.25)), "second_half": float(np.mean(where >= 0.5)),
                     "window_overlaps_span": float(np.mean(overlaps))})
    test = results["models"]["explainable"]["test"]
    return {"corpus": str(args.corpus), "crop_seconds": args.crop, "epochs": args.epochs,
            "test_accuracy": test["accuracy"], "test_concept_r": test["concept_r"], "test_voices": test["voices"],
            "rows": rows, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def markdown(s: dict) -> str:
    lines = ["# When each phone class is heard (spoken digits, held-out voices)", "",
             f"Corpus `{s['corpus']}`; concept network trained on {s['crop_seconds']} s span-labelled crops, "
             f"{s['epochs']} epochs; on the {s['test_voices']} test voices the digit accuracy is "
             f"{s['test_accuracy']:.3f} and the whole-clip concept r {s['test_concept_r']:.3f}. Timeline windows of "
             f"{s['crop_seconds']} s every 10 ms; 'where' is the strongest window's centre as a share of the word. "
             f"{s['date']}. Produced by `studies/spoken_digits_timing.py`.", "",
             "| concept | word | clips | median where | in the first quarter | in the second half | "
             "strongest window overlaps the labelled span |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['concept']} | {r['word']} | {r['n']} | {r['median_share']:.2f} | {r['first_quarter']:.2f} | "
              f"{r['second_half']:.2f} | {r['window_overlaps_span']:.2f} |" for r in s["rows"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="corpora/speech")
    p.add_argument("--out", default="runs/speech-digit-timing")
    p.add_argument("--crop", type=float, default=0.3)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args()
    torch.set_num_threads(2)
    summary = run(args)
    write_report(args.results, "spoken_digits_timing", summary, markdown(summary))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
