"""Do the models follow a vocoder's pitch shift and time stretch on the corpus's own music? (issue 30)

    python studies/vocoder_on_corpus.py --corpus corpora/rand3k --n 40 \\
        --model rand3k-joint=runs/rand3k-joint/models/joint-linear --model pv3k-last=runs/pv-joint/last

On recorded music the models' ``register`` rises after a +3 semitone shift on under half the excerpts and
``tempo`` barely follows a stretch (benchmarks/results/real_recordings.md). This asks whether that is the
vocoder or the music: the first ``--n`` validation clips of a controlled corpus are shifted by +3 semitones
and played 1.25x as fast, with Rubber Band (pedalboard, the tool ``midlevel corpus vocode`` trains with) and
with librosa's phase vocoder (the tool the real-recordings benchmark measures with), and each model's move
of ``register`` and ``tempo`` is set beside the move of the label the corpus defines (9/24 per semitone;
9 ln(f) / ln(170/50)). A stretched clip shorter than the clip is continued from its start, as the vocoder
corpus does. Writes ``studies/results/vocoder_on_corpus.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

SHIFT, STRETCH = 3, 1.25


def perturbations(x: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    import librosa

    from midlevel.datasets.controlled.vocoded import fit_length, render_variant

    return {
        "shift_rubberband": render_variant(x, sr, {"kind": "shift", "semitones": SHIFT, "stretch": 1.0, "formants": False}),
        "shift_librosa": librosa.effects.pitch_shift(x, sr=sr, n_steps=SHIFT),
        "stretch_rubberband": render_variant(x, sr, {"kind": "stretch", "semitones": 0, "stretch": STRETCH, "formants": True}),
        "stretch_librosa": fit_length(librosa.effects.time_stretch(x, rate=STRETCH), len(x)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="corpora/rand3k")
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--model", action="append", required=True, metavar="NAME=DIR")
    p.add_argument("--out", default="studies/results")
    args = p.parse_args(argv)

    import soundfile as sf
    import torch

    from midlevel.model import AudioModel
    from midlevel.training.data import load_splits

    torch.set_num_threads(1)
    models = {k: AudioModel.from_pretrained(v) for k, v in (m.split("=", 1) for m in args.model)}
    paths = load_splits(args.corpus, concepts=["register", "tempo"])["val"].paths[: args.n]
    moves: dict[str, dict[str, list[float]]] = {k: {} for k in models}
    for path in paths:
        x, sr = sf.read(path, dtype="float32")
        variants = perturbations(x, sr)
        for name, m in models.items():
            names = list(m.config.concept_names)
            before = np.asarray(m.predict(x, sample_rate=sr).concepts).ravel()
            for kind, y in variants.items():
                concept = "register" if kind.startswith("shift") else "tempo"
                after = np.asarray(m.predict(y, sample_rate=sr).concepts).ravel()
                moves[name].setdefault(kind, []).append(float(after[names.index(concept)] - before[names.index(concept)]))
    label = {"shift": SHIFT * 9 / 24, "stretch": 9 * math.log(STRETCH) / math.log(170 / 50)}
    summary = {name: {kind: {"rises": float(np.mean(np.array(v) > 0)), "mean_move": float(np.mean(v)),
                             "label_move": label[kind.split("_")[0]]} for kind, v in d.items()}
               for name, d in moves.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"corpus": args.corpus, "clips": len(paths), "models": dict(m.split("=", 1) for m in args.model),
              "shift_semitones": SHIFT, "stretch": STRETCH, "summary": summary, "moves": moves}
    (out / "vocoder_on_corpus.json").write_text(json.dumps(result, indent=2))
    rows = ["| model | perturbation | concept | rises on | mean move | label's move |", "|---|---|---|---|---|---|"]
    for name, d in summary.items():
        for kind, s in d.items():
            concept = "register" if kind.startswith("shift") else "tempo"
            rows.append(f"| `{name}` | {kind.replace('_', ', ')} | {concept} | {s['rises']:.0%} | {s['mean_move']:+.2f} | "
                        f"{s['label_move']:+.2f} |")
    text = (f"# Vocoder shifts and stretches on the corpus's own music\n\n`studies/vocoder_on_corpus.py` on the first "
            f"{len(paths)} validation clips of `{args.corpus}`: +{SHIFT} semitones and {STRETCH}x speed, Rubber Band "
            f"and librosa. One run.\n\n" + "\n".join(rows) + "\n")
    (out / "vocoder_on_corpus.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
