"""What the studies of recorded-music behaviour share (issue 30): the benchmark's excerpts drawn with another
seed, and a measure-once, analyse-often ``main`` (``--dump`` the measurements, ``--from-dump`` to re-analyse).

The excerpts come from ``benchmarks/real_recordings.py`` unchanged (same packages, same rules), so a choice made
on seed 1 is made on the same kind of music the benchmark scores on seed 0, never on those excerpts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import real_recordings as rr  # noqa: E402

from midlevel.audio import load_audio  # noqa: E402

CACHE = ROOT / "benchmarks/results/cache"


def recorded_excerpts(n: int, seed: int, packages: tuple[str, ...] = rr.DEFAULT_PACKAGES) -> list:
    """``n`` excerpts drawn as the real-recordings benchmark draws them, with ``seed`` (from other ``packages``, for
    a look at training's music)."""
    recordings = rr.list_recordings(packages, CACHE)
    lengths_file = CACHE / "real_recordings_track_lengths.json"
    lengths = json.loads(lengths_file.read_text()) if lengths_file.is_file() else {}
    return rr.pick_excerpts(recordings, n, seed=seed, lengths=lengths)


def controlled_clips(model, corpus: Path, measure_one: Callable, desc: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """``measure_one(model, audio)`` -> (measurements, network value) on every clip of a controlled corpus, as two
    arrays in ``factors.csv`` order, with that table (indexed by ``song_id``) for the labels."""
    factors = pd.read_csv(corpus / "factors.csv").set_index("song_id")
    rows, nets = [], []
    for sid in tqdm(factors.index, desc=f"{desc} on {corpus.name}", unit="clip"):
        m, c = measure_one(model, load_audio(corpus / "audio" / f"{sid}.flac", model.config.sample_rate).samples)
        rows.append(m)
        nets.append(c)
    return np.array(rows), np.array(nets), factors


def add_dump_options(p: argparse.ArgumentParser, out: str) -> None:
    p.add_argument("--n", type=int, default=100, help="recorded excerpts")
    p.add_argument("--seed", type=int, default=1, help="which recorded excerpts (the benchmark draws seed 0)")
    p.add_argument("--dump", help="save every measurement to this .npz")
    p.add_argument("--from-dump", help="analyse an earlier --dump instead of measuring")
    p.add_argument("--out", default=out)


def run(args: argparse.Namespace, measure: Callable[[argparse.Namespace], dict[str, np.ndarray]],
        analyse: Callable[[dict[str, np.ndarray]], dict], markdown: Callable[[dict], str]) -> int:
    """Measure (one torch thread, denormals flushed) or load the dump, analyse, write OUT.json and OUT.md."""
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    if args.from_dump:
        with np.load(args.from_dump) as z:
            data = {k: z[k] for k in z.files}
    else:
        data = measure(args)
        if args.dump:
            np.savez(args.dump, **data)
    res = analyse(data)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    return 0
