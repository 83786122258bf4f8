"""Does a pretrained backbone help on a small data set with new concepts? Fine-tuned vs from scratch.

    python benchmarks/finetune_vs_scratch.py --base ZOO_NAME_OR_DIR --data DATA --out WORK \
        [--corpus CONTROLLED_CORPUS] [--n-clips 200] [--seeds 0,1,2] [--epochs 30]

``DATA`` is a small data set in the Mid-level layout whose four concepts (``flow``, ``pulse``,
``busyness``, ``darkness``) are none of the base's: each is a transformed combination of the
corpus's seven ratings (see ``RENAMED``). When ``DATA`` does not exist it is generated from
``--corpus`` (Mid-level layout; audio in ``audio/``, ratings in
``metadata_annotations/annotations.csv``), drawing clips outside the corpus's ``train`` split
when it records one, so the base has not heard them.

Per seed (which fixes the split and the initialisation), the same ``midlevel.training.finetune``
run is made twice with the same settings: from the base, and from a randomly initialised model of
the same architecture (with the base's input normalisation). "Before" is where training starts:
for the pretrained run a linear probe of its backbone, for the scratch run the random model;
"after" is the trained model. The gap in mean test
concept r gets a paired bootstrap interval over test clips.

Writes ``benchmarks/results/finetune_vs_scratch.json`` and ``.md`` (or under ``--results``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import midlevel
from midlevel.datasets import DatasetError, load_midlevel
from midlevel.model import TwoStageModel
from midlevel.training.annotations import read_finetune_annotations
from midlevel.training.cache import cached_log_spectrograms
from midlevel.training.finetune import finetune
from midlevel.training.loops import ArraySet, network_outputs
from midlevel.training.metrics import mean_r, paired_bootstrap_mean_r

RENAMED = {
    "flow": lambda r: (r["melodiousness"] + 11 - r["articulation"]) / 2,
    "pulse": lambda r: 1 + 9 * ((r["rhythm_stability"] - 1) / 9) ** 1.5,
    "busyness": lambda r: np.maximum(r["rhythm_complexity"], r["articulation"]),
    "darkness": lambda r: (r["minorness"] + r["dissonance"] + 11 - r["tonal_stability"]) / 3,
}
"""New concept -> its rating from the seven mid-level ratings; every value stays on 1-10."""
RENAMED_TEXT = {
    "flow": "(melodiousness + 11 - articulation) / 2",
    "pulse": "1 + 9 * ((rhythm_stability - 1) / 9) ** 1.5",
    "busyness": "max(rhythm_complexity, articulation)",
    "darkness": "(minorness + dissonance + 11 - tonal_stability) / 3",
}
RESULTS = Path(__file__).parent / "results"


def make_renamed_dataset(corpus: str | Path, out: str | Path, *, n_clips: int = 200, seed: int = 0) -> Path:
    """Write a Mid-level-layout data set with the ``RENAMED`` concepts; appears at ``out`` only when complete."""
    ds = load_midlevel(corpus)
    missing = ds.missing_audio()
    if missing:
        raise DatasetError(ds.audio_dir, f"audio missing for {len(missing)} song(s): {', '.join(missing)}")
    ids = list(ds.ratings.index)
    held_out = ds.metadata is not None and "split" in ds.metadata.columns
    if held_out:
        ids = [i for i in ids if ds.metadata["split"].get(i) != "train"]
    picked = np.random.default_rng(seed).choice(ids, size=min(n_clips, len(ids)), replace=False)
    chosen = sorted(picked, key=ids.index)
    ratings = ds.ratings.loc[chosen]
    new = pd.DataFrame({name: np.clip(f(ratings), 1, 10) for name, f in RENAMED.items()}, index=ratings.index)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    (staging / "metadata_annotations").mkdir()
    (staging / "audio").mkdir()
    new.round(3).to_csv(staging / "metadata_annotations" / "annotations.csv", index_label="song_id")
    if ds.metadata is not None and "artist" in ds.metadata.columns:
        artists = ds.metadata["artist"].reindex(chosen).fillna("")
        lines = ["song id;Artist"] + [f"{i};{a}" for i, a in artists.items()]
        (staging / "metadata_annotations" / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for song in chosen:
        source = ds.audio_path(song)
        target = staging / "audio" / source.name
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
    (staging / "README.md").write_text(
        f"{len(chosen)} clips of {corpus} "
        + ("outside its train split" if held_out else "(the corpus records no split: the base may have heard them)")
        + f", seed {seed}. Concepts:\n\n" + "".join(f"- `{k}` = {v}\n" for k, v in RENAMED_TEXT.items()),
        encoding="utf-8")
    os.replace(staging, out)
    return out


def scratch_base(base: str, folder: Path, seed: int) -> Path:
    """The base's architecture with the new concepts, randomly initialised (only the input
    normalisation is copied): ``finetune`` sees its own concepts and trains it as it stands,
    so nothing but the starting weights differs from the pretrained run. Its head is the
    identity, as the pretrained run's is (no target ratings)."""
    reference = midlevel.load(base)
    names = list(RENAMED)
    config = replace(reference.config, concept_names=names, target_names=names,
                     target_scale=reference.config.concept_scale, head="linear", head_params={})
    torch.manual_seed(seed)
    model = TwoStageModel(config)
    model.frontend.load_state_dict(reference.frontend.state_dict())
    with torch.no_grad():
        model.head.weight.copy_(torch.eye(len(names)))
        model.head.bias.zero_()
    return model.save_pretrained(folder)


def held_out_outputs(model_dir: Path, data: Path, seed: int, fractions, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """True and predicted test concepts, recomputed from the same split and cache the runs used."""
    model = midlevel.load(model_dir)
    ann = read_finetune_annotations(data / "metadata_annotations" / "annotations.csv", data / "audio",
                                    concept_scale=model.config.concept_scale, target_scale=model.config.target_scale)
    paths, concepts, _ = ann.rows(ann.split(fractions, seed)["test"])
    spec = cached_log_spectrograms(paths, model.frontend, model.config.window_samples, cache, progress=False)
    order = [list(ann.concepts.columns).index(n) for n in model.config.concept_names]
    return concepts[:, order], network_outputs(model, ArraySet(spec))


def _with_mean_r(table: dict) -> dict:
    """A finetune metric table with its mean r recomputed as ``mean_r`` does (NaN as 0)."""
    r = [v["r"] for k, v in table.items() if k != "mean"]
    return {**table, "mean": {**table["mean"], "r": float(np.nan_to_num(r).mean())}}


def run(args: argparse.Namespace) -> dict:
    data, work = Path(args.data), Path(args.out)
    if not data.exists():
        if not args.corpus:
            sys.exit(f"{data} does not exist; pass --corpus to generate it")
        make_renamed_dataset(args.corpus, data, n_clips=args.n_clips, seed=0)
    cache = work / "cache"
    settings = dict(epochs=args.epochs, patience=args.patience, batch_size=args.batch_size, lr=args.lr,
                    split=args.split, cache_dir=cache, overwrite=True)
    runs = []
    for seed in args.seeds:
        started = time.perf_counter()
        init = scratch_base(args.base, work / f"scratch-init-{seed}", seed)
        outcome = {}
        for label, base in (("pretrained", args.base), ("scratch", str(init))):
            result = finetune(base, data / "metadata_annotations" / "annotations.csv", data / "audio",
                              work / f"{label}-{seed}", seed=seed, **settings)
            outcome[label] = result
        y, tuned = held_out_outputs(work / f"pretrained-{seed}", data, seed, args.split, cache)
        _, scratch = held_out_outputs(work / f"scratch-{seed}", data, seed, args.split, cache)
        runs.append({
            "seed": seed, "split": outcome["pretrained"]["split"]["sizes"], "seconds": time.perf_counter() - started,
            "test": {f"{label} {when}": _with_mean_r(outcome[label]["metrics"][when]["test"]["concepts"])
                     for label in ("pretrained", "scratch") for when in ("before", "after")},
            "training": {label: {k: outcome[label]["training"][k] for k in ("epochs_run", "best_epoch", "kept_start")}
                         for label in outcome},
            "gap_after": mean_r(y, tuned) - mean_r(y, scratch),
            "gap_after_ci95": paired_bootstrap_mean_r(y, tuned, scratch),
        })
    gaps = [r["gap_after"] for r in runs]
    return {"base": args.base, "data": str(data), "rows": outcome["pretrained"]["data"]["rows"],
            "concepts": RENAMED_TEXT,
            "settings": {k: v for k, v in vars(args).items() if k not in ("base", "data", "out")},
            "runs": runs, "mean_gap_after": float(np.mean(gaps)),
            "pretrained_wins": int(sum(g > 0 for g in gaps)),
            "pretrained_wins_ci": int(sum(r["gap_after_ci95"][0] > 0 for r in runs)), "seeds": len(gaps)}


def markdown(summary: dict) -> str:
    lines = ["# Fine-tuned vs from scratch on a small renamed-concept data set", "",
             f"Base `{summary['base']}`; data `{summary['data']}` ({summary['rows']} clips); concepts:", "",
             *[f"- `{k}` = {v}" for k, v in summary["concepts"].items()], "",
             "Both columns of each pair come from `midlevel.training.finetune` with the same split, settings "
             "and epochs; *scratch* starts from random weights of the same architecture. *Before* is where training "
             "starts (pretrained: a linear probe of the backbone; scratch: random weights), *after* the trained "
             "model. Test-set Pearson r; `nan` marks a constant prediction, counted as 0 in the mean.", ""]
    for r in summary["runs"]:
        names = list(r["test"]["pretrained after"])
        sizes = "/".join(str(r["split"][k]) for k in ("train", "val", "test"))
        lines += [f"## Seed {r['seed']} (train/val/test {sizes})",
                  "", "| concept | " + " | ".join(r["test"]) + " |", "|---|" + "---|" * len(r["test"])]
        lines += [f"| {n} | " + " | ".join(f"{t[n]['r']:.3f}" for t in r["test"].values()) + " |" for n in names]
        low, high = r["gap_after_ci95"]
        lines += ["", f"Gap in mean r after training (pretrained - scratch): {r['gap_after']:+.3f} "
                      f"(95% paired bootstrap over test clips: {low:+.3f} to {high:+.3f}).", ""]
    lines.append(f"**Mean gap over {summary['seeds']} seed(s): {summary['mean_gap_after']:+.3f}; "
                 f"the pretrained model wins {summary['pretrained_wins']} of {summary['seeds']}, "
                 f"{summary['pretrained_wins_ci']} with the whole 95% interval above 0.**")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="zoo name or model folder")
    p.add_argument("--data", required=True, help="renamed-concept data set (Mid-level layout); generated if absent")
    p.add_argument("--out", required=True, help="work folder for the models and the spectrogram cache")
    p.add_argument("--corpus", help="controlled corpus to generate --data from")
    p.add_argument("--n-clips", type=int, default=200)
    p.add_argument("--seeds", type=lambda t: [int(v) for v in t.split(",")], default=[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--patience", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--split", type=lambda t: tuple(float(v) for v in t.split(",")), default=(0.6, 0.2, 0.2))
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    summary = run(args)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "finetune_vs_scratch.json").write_text(json.dumps(summary, indent=1, default=str) + "\n",
                                                           encoding="utf-8")
    (args.results / "finetune_vs_scratch.md").write_text(markdown(summary), encoding="utf-8")
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
