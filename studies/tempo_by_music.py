"""Is the tempo's stretch gap on recorded music the stretching tool or the music? (issue 30)

The stretch study trains on Rubber Band and a plain phase vocoder, never on librosa, the benchmark's tool, and on
soundtracks the benchmark never reads. This measures, with librosa's stretch at the benchmark's factors, how the tempo
concept follows on excerpts of the *training* soundtracks (drawn anew with ``shift_consistency.training_excerpts``,
so they may overlap excerpts training used) and on the benchmark's own (seed 0), per package and by the tempo read on
the unstretched excerpt (is a high reading the scale's ceiling?). If the training soundtracks follow and the
benchmark's do not at equal readings, the gap is the music, not the tool or the ceiling.

    python studies/tempo_by_music.py --model runs/v6-root/models/joint-linear --model v5=runs/v5/models/joint-linear
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "studies"))
import real_recordings as rr  # noqa: E402
from recorded_study import recorded_excerpts  # noqa: E402
from shift_consistency import PACKAGES, batched_concepts, log_spectrogram, training_excerpts, write_results  # noqa: E402

from midlevel import load  # noqa: E402
from midlevel.audio import load_audio  # noqa: E402
from midlevel.model import AudioModel  # noqa: E402

#: bins of the tempo read on the unstretched excerpt (rating points)
BINS = ((-np.inf, 5.0), (5.0, 7.0), (7.0, 8.5), (8.5, 10.0), (10.0, np.inf))


@torch.no_grad()
def stretched_spectrograms(model, excerpts: list) -> torch.Tensor:
    """(excerpts, factors, bands, frames) log spectrograms of each excerpt stretched by librosa at ``rr.STRETCH_FACTORS``
    (every model measured shares the front-end: one stretch serves them all)."""
    return torch.stack([torch.stack([log_spectrogram(model, load_audio(
        rr.stretch(ex.samples, int(round(rr.SECONDS * ex.sample_rate)), f), model.config.sample_rate,
        source_sample_rate=ex.sample_rate, check_level=False).samples) for f in rr.STRETCH_FACTORS])
        for ex in tqdm(excerpts, desc="stretching", unit="excerpt")])


def tempo_readings(model, specs: torch.Tensor) -> np.ndarray:
    """(excerpts, factors) tempo concept of ``stretched_spectrograms``."""
    tempo = list(model.config.concept_names).index("tempo")
    return batched_concepts(model, specs.flatten(0, 1))[:, tempo].reshape(specs.shape[:2]).numpy()


def summary(t: np.ndarray, rows: np.ndarray) -> dict:
    """Mean per-excerpt Spearman r with the factors and mean change from factor 1, over the ``rows`` mask."""
    unit = rr.STRETCH_FACTORS.index(1.0)
    return {"n": int(rows.sum()),
            "spearman": float(np.nanmean([spearmanr(rr.STRETCH_FACTORS, r)[0] for r in t[rows]])) if rows.any() else None,
            "change_from_1": [float(v) for v in (t[rows] - t[rows, unit:unit + 1]).mean(0)] if rows.any() else None}


def analyse(t: np.ndarray, packages: list[str]) -> dict:
    unit = rr.STRETCH_FACTORS.index(1.0)
    base = t[:, unit]
    return {"all": summary(t, np.ones(len(t), bool)),
            "by_package": {p: summary(t, np.array(packages) == p) for p in sorted(set(packages))},
            "by_reading": {f"{lo:g} to {hi:g}": summary(t, (base >= lo) & (base < hi)) for lo, hi in BINS}}


def markdown(res: dict) -> str:
    s = res["settings"]
    factors = ", ".join(f"{f:g}" for f in rr.STRETCH_FACTORS)
    lines = ["# The tempo's stretch gap: the tool or the music?", "",
             f"librosa's time stretch (the benchmark's tool; training never uses it) at {factors}; the tempo concept's "
             f"mean per-excerpt Spearman r with the factor and its mean change from factor 1. 'training music': "
             f"{s['train_n']} excerpts of {', '.join(PACKAGES)} drawn anew (seed 0; they may overlap the excerpts "
             f"training used); 'benchmark music': the benchmark's {s['bench_n']} excerpts (seed 0). By package, and by "
             "the tempo read on the unstretched excerpt.", "",
             "| model | music | rows | n | Spearman | change from factor 1 |", "|---|---|---|---|---|---|"]
    for label, per in res["models"].items():
        for music, r in per.items():
            for group, rows in (("all", {"": r["all"]}), ("package", r["by_package"]), ("reading", r["by_reading"])):
                for key, v in rows.items():
                    if v["n"]:
                        lines.append(f"| {label} | {music} | {group} {key} | {v['n']} | {v['spearman']:.2f} | "
                                     + ", ".join(f"{c:+.2f}" for c in v["change_from_1"]) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True,
                   help="a zoo name, or LABEL=MODEL_DIR for a model folder (repeatable)")
    p.add_argument("--train-n", type=int, default=150)
    p.add_argument("--bench-n", type=int, default=100)
    p.add_argument("--out", default="studies/results/tempo_by_music")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    music = {"training music": training_excerpts(args.train_n, seed=0),
             "benchmark music": recorded_excerpts(args.bench_n, 0)}
    res = {"settings": {"train_n": args.train_n, "bench_n": args.bench_n, "factors": list(rr.STRETCH_FACTORS)},
           "models": {}}
    models = {}
    for spec in args.model:
        label, _, folder = spec.partition("=")
        models[label] = AudioModel.from_pretrained(folder) if folder else load(label, replace_superseded=False)
    first = next(iter(models.values()))
    assert all(m.config.frontend == first.config.frontend for m in models.values()), "models with another front-end"
    specs = {m: stretched_spectrograms(first, ex) for m, ex in music.items()}
    for label, model in models.items():
        res["models"][label] = {m: analyse(tempo_readings(model, specs[m]), [e.package for e in ex])
                                for m, ex in music.items()}
    write_results(res, Path(args.out), markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
