"""Benchmark: throughput of the controlled-corpus build, size on disk, and label statistics.

    python studies/corpus_build.py --n 300 --seconds 10 --workers 2 [--out DIR] [--cache DIR]

Builds a fresh corpus (cold music21 cache unless --cache points at a warm one), then writes
studies/results/corpus_build.json and corpus_build.md with clips/s, MB per 1000 clips, the
extrapolated time for 3000 clips, and the built corpus's rating spread, feature correlations and
ground-truth recovery. Not a test: timings depend on the machine and on what else runs on it
(the load average is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from midlevel.concepts import EMOTIONS, MIDLEVEL_FEATURES
from midlevel.datasets.controlled import (
    build_corpus,
    fit_generating_weights,
    outside_matrix,
    standardise_outside,
    standardise_ratings,
    weight_matrix,
)

RESULTS = Path(__file__).resolve().parent / "results"


def _dir_bytes(path: Path, exclude=(".cache",)) -> int:
    total = 0
    for p in path.rglob("*"):
        if p.is_file() and not any(part in exclude for part in p.relative_to(path).parts):
            total += p.stat().st_size
    return total


def label_stats(out: Path) -> dict:
    ann = pd.read_csv(out / "metadata_annotations/annotations.csv", index_col="song_id")
    emo = pd.read_csv(out / "mean_ratings_set1.csv", index_col="number")
    fac = pd.read_csv(out / "factors.csv", index_col="song_id")
    r = ann[list(MIDLEVEL_FEATURES)]
    corr = r.corr()
    off = (corr.abs() - np.eye(len(MIDLEVEL_FEATURES))).to_numpy()
    i, j = np.unravel_index(np.argmax(off), off.shape)
    z = standardise_ratings(r.to_numpy())
    x = standardise_outside(fac[["velocity", "tempo_bpm", "transpose"]].astype(float))
    e = emo.loc[r.index, list(EMOTIONS)].to_numpy()
    coef_all, r2_all = fit_generating_weights(np.column_stack([z, x]), e)
    coef_r, r2_r = fit_generating_weights(z, e)
    return {
        "rating_sd": {f: round(float(r[f].std()), 3) for f in MIDLEVEL_FEATURES},
        "rating_mean": {f: round(float(r[f].mean()), 3) for f in MIDLEVEL_FEATURES},
        "max_abs_feature_correlation": round(float(off.max()), 3),
        "max_correlation_pair": [MIDLEVEL_FEATURES[i], MIDLEVEL_FEATURES[j]],
        "r2_ratings_only": {k: round(float(v), 3) for k, v in zip(EMOTIONS, r2_r)},
        "r2_all_factors": {k: round(float(v), 3) for k, v in zip(EMOTIONS, r2_all)},
        "r2_ratings_only_mean": round(float(r2_r.mean()), 3),
        "r2_all_factors_mean": round(float(r2_all.mean()), 3),
        "max_abs_W_error_ratings_only": round(float(np.abs(coef_r[1:8] - weight_matrix()).max()), 3),
        "max_abs_W_error_all_factors": round(float(np.abs(coef_all[1:8] - weight_matrix()).max()), 3),
        "max_abs_B_error_all_factors": round(float(np.abs(coef_all[8:] - outside_matrix()).max()), 3),
        "clips_limited": int((fac["limiter_gain"] < 1).sum()),
        "peak_max": round(float(fac["peak"].max()), 3),
        "rms_dbfs_range": [round(float(fac["rms_dbfs"].min()), 1), round(float(fac["rms_dbfs"].max()), 1)],
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--audio-format", default="flac")
    ap.add_argument("--out", default=None, help="corpus folder (default: a temporary one, deleted)")
    ap.add_argument("--cache", default=None, help="music21 piece cache (default: cold, inside the corpus)")
    ap.add_argument("--tag", default="corpus_build", help="results file name")
    args = ap.parse_args(argv)

    tmp = None
    out = Path(args.out) if args.out else Path(tmp := tempfile.mkdtemp(prefix="midlevel-bench-")) / "corpus"
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    summary = build_corpus(out, args.n, seconds=args.seconds, seed=args.seed, workers=args.workers,
                           audio_format=args.audio_format, cache_dir=args.cache)  # fmt: skip
    wall = time.perf_counter() - t0
    load1 = os.getloadavg()
    total_bytes = _dir_bytes(out)
    stats = label_stats(out)
    n_built = summary["built"]
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "load_average_before": [round(x, 2) for x in load0],
        "load_average_after": [round(x, 2) for x in load1],
        "n": args.n,
        "built": n_built,
        "seconds_per_clip": args.seconds,
        "workers": args.workers,
        "seed": args.seed,
        "audio_format": args.audio_format,
        "tag": args.tag,
        "cold_music21_cache": args.cache is None,
        "wall_s": round(wall, 1),
        "clips_per_s": round(n_built / wall, 3) if n_built else None,
        "extrapolated_3000_clips_min": round(3000 / (n_built / wall) / 60, 1) if n_built else None,
        "audio_mb_per_1000_clips": round(summary["audio_bytes"] / args.n * 1000 / 1e6, 1),
        "corpus_mb_per_1000_clips": round(total_bytes / args.n * 1000 / 1e6, 1),
        "clips_per_split": summary["clips_per_split"],
        "pieces_per_split": summary["pieces_per_split"],
        "labels": stats,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.tag}.md").write_text(_markdown(result))
    print(json.dumps(result, indent=2))
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _markdown(r: dict) -> str:
    lab = r["labels"]
    lines = [
        "# Controlled corpus build benchmark",
        "",
        f"`python studies/corpus_build.py --n {r['n']} --seconds {r['seconds_per_clip']:g} --workers {r['workers']}"
        f"{'' if r.get('tag', 'corpus_build') == 'corpus_build' else ' --tag ' + r['tag']}`"
        f" on {r['machine']['cpus']} CPUs ({r['machine']['platform']}); load average before/after:"
        f" {r['load_average_before'][0]} / {r['load_average_after'][0]} (other processes shared the CPUs)."
        f" music21 cache {'cold (every piece parsed during the build)' if r['cold_music21_cache'] else 'warm'}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| clips built | {r['built']} x {r['seconds_per_clip']:g} s |",
        f"| wall time | {r['wall_s']} s |",
        f"| throughput | **{r['clips_per_s']} clips/s** |",
        f"| 3000 clips, extrapolated | {r['extrapolated_3000_clips_min']} min |",
        f"| audio ({r['audio_format']}, 16-bit mono 22050 Hz) per 1000 clips | {r['audio_mb_per_1000_clips']} MB |",
        f"| whole corpus folder (audio, records, tables) per 1000 clips | {r['corpus_mb_per_1000_clips']} MB |",
        f"| clips per split (train/val/test) | {r['clips_per_split']} |",
        f"| pieces per split | {r['pieces_per_split']} |",
        "",
        "## Labels of the built corpus",
        "",
        "| feature | mean | sd |",
        "|---|---|---|",
    ]
    for f in MIDLEVEL_FEATURES:
        lines.append(f"| {f} | {lab['rating_mean'][f]} | {lab['rating_sd'][f]} |")
    lines += [
        "",
        f"- largest |correlation| between two features: {lab['max_abs_feature_correlation']}"
        f" ({' / '.join(lab['max_correlation_pair'])})",
        f"- emotions on the true ratings: mean R^2 {lab['r2_ratings_only_mean']} (ratings only) vs"
        f" {lab['r2_all_factors_mean']} (ratings + loudness, tempo, register)",
        f"- largest |fitted W - published W|: {lab['max_abs_W_error_ratings_only']} (ratings only),"
        f" {lab['max_abs_W_error_all_factors']} (all factors); outside terms B: {lab['max_abs_B_error_all_factors']}",
        f"- audio: peak max {lab['peak_max']}, clips scaled down to avoid clipping: {lab['clips_limited']},"
        f" RMS range {lab['rms_dbfs_range'][0]} to {lab['rms_dbfs_range'][1]} dBFS",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
