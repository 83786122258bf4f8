"""Calibrate a model folder's out-of-distribution score: write MODEL/ood.safetensors (``midlevel.ood``).

    python scripts/calibrate_ood.py --model runs/x/models/joint-linear --corpus corpora/train [--n 500]

The Gaussian is fitted on clips of the corpus the model was trained on, and the threshold set on other
clips of it, so that it is the percentile of clips the fit never saw: a corpus with a ``split`` column
in ``metadata_annotations/metadata.csv`` (the controlled corpus) gives train clips to fit and val clips
(else test) to set the threshold; any other folder of audio files (``audio/`` or the folder itself) is
split 80/20 by a seeded shuffle. ``--n`` caps each of the two sets (a seeded sample). The file is written
atomically, and records the corpus, the clip counts and the sha256 of the weights; loading the folder
refuses it once the weights change. Needs the ``train`` extra (scikit-learn).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

AUDIO_SUFFIXES = {".flac", ".wav", ".mp3", ".ogg"}


def corpus_clips(corpus: Path, seed: int) -> tuple[list[Path], list[Path], str]:
    """(clips to fit on, clips to set the threshold on, how they were chosen)."""
    folder = corpus / "audio" if (corpus / "audio").is_dir() else corpus
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    metadata = corpus / "metadata_annotations" / "metadata.csv"
    if metadata.is_file():
        from midlevel.datasets.mid_level import read_metadata

        table = read_metadata(metadata)
        if "split" in table.columns:
            split = {path: table["split"].get(path.stem) for path in files}
            held = "val" if "val" in split.values() else "test"
            fit, threshold = [p for p in files if split[p] == "train"], [p for p in files if split[p] == held]
            if fit and threshold:
                return fit, threshold, f"train split, threshold on the {held} split"
    order = np.random.default_rng(seed).permutation(len(files))
    cut = int(round(0.8 * len(files)))
    return ([files[i] for i in sorted(order[:cut])], [files[i] for i in sorted(order[cut:])],
            "80/20 shuffle of the folder's audio files")


def sample(paths: list[Path], n: int | None, seed: int) -> list[Path]:
    if n is None or len(paths) <= n:
        return paths
    keep = np.random.default_rng(seed).choice(len(paths), size=n, replace=False)
    return [paths[i] for i in sorted(keep)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model folder (config.json + model.safetensors)")
    parser.add_argument("--corpus", required=True, help="clips like the model's training data")
    parser.add_argument("--n", type=int, help="at most this many clips to fit on, and to set the threshold on")
    parser.add_argument("--percentile", type=float, default=99.0, help="threshold percentile (default 99)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)

    from midlevel.errors import MidlevelError
    from midlevel.model import AudioModel
    from midlevel.ood import calibrate

    try:
        model = AudioModel.from_pretrained(args.model, with_ood=False)  # a stale calibration is replaced
        fit_paths, held_paths, how = corpus_clips(Path(args.corpus), args.seed)
        fit_paths, held_paths = sample(fit_paths, args.n, args.seed), sample(held_paths, args.n, args.seed + 1)
        if len(fit_paths) < 2 or not held_paths:
            raise SystemExit(f"calibrate_ood: {args.corpus}: {len(fit_paths)} clip(s) to fit on and "
                             f"{len(held_paths)} to set the threshold on; need at least 2 and 1")
        ood = calibrate(model, fit_paths, threshold_clips=held_paths, corpus=Path(args.corpus).name,
                        percentile=args.percentile, batch_size=args.batch_size, metadata={"clips": how})
        path = ood.save(args.model)
    except MidlevelError as exc:
        print(f"calibrate_ood: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}: {len(fit_paths)} clips fitted ({how}), threshold {ood.threshold:.3f} = the "
          f"{args.percentile:g}th percentile of {len(held_paths)} clips' distances; "
          f"Ledoit-Wolf shrinkage {ood.metadata['shrinkage']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
