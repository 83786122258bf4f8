"""How much of the MP3 round trip's move is the codec's bandwidth? (issue 30; the question behind
``codec_consistency.py``)

At 32 kb/s mono (22050 Hz) LAME low-passes near 8 kHz. If the default's concepts moved under MP3 mostly
because the top bands vanish, a front-end that ignores them would be invariant by design; if the codec's
quantisation moves them, invariance has to be learned. On the benchmark's packages with **seed 1** (100
excerpts): the concepts moved (in sd over the excerpts, the benchmark's unit) by the MP3 round trip, by
8th-order Butterworth low-passes (zero phase) at 8, 6 and 5 kHz, and by MP3 of the 5 kHz low-passed excerpt
against that excerpt (the codec with no bandwidth left to remove).

    python studies/codec_bandwidth.py   # ~3 min on 2 cores
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import scipy.signal
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "studies"))
import real_recordings as rr  # noqa: E402
from recorded_study import recorded_excerpts  # noqa: E402

from midlevel import load  # noqa: E402

MODEL = "emotion-structural-linear-mid10-rand3k"
CUTOFFS_HZ = (8000, 6000, 5000)


def low_pass(x: np.ndarray, sr: int, hz: float) -> np.ndarray:
    sos = scipy.signal.butter(8, hz, fs=sr, output="sos")
    return scipy.signal.sosfiltfilt(sos, x).astype(np.float32)


def band_edge(x: np.ndarray, y: np.ndarray, sr: int) -> float:
    """The lowest frequency above 2 kHz where ``y`` keeps under 1% of ``x``'s power (Welch, 4096 points)."""
    f, px = scipy.signal.welch(x, fs=sr, nperseg=4096)
    _, py = scipy.signal.welch(y, fs=sr, nperseg=4096)
    gone = (py < 0.01 * np.maximum(px, 1e-20)) & (f > 2000)
    return float(f[np.argmax(gone)]) if gone.any() else float("nan")


def main() -> int:
    torch.set_num_threads(2)
    model = load(MODEL, replace_superseded=False)  # its results are of these weights, never a successor's
    names = list(model.config.concept_names)
    rows: dict[str, list] = {}
    edges = []
    for ex in tqdm(recorded_excerpts(100, 1), desc="excerpts", unit="excerpt"):
        x, sr = ex.audio.astype(np.float32), ex.sample_rate
        versions = {"original": x, "mp3": rr.mp3(x, sr)} | {f"low-pass {hz // 1000} kHz": low_pass(x, sr, hz)
                                                             for hz in CUTOFFS_HZ}
        versions["mp3 of low-pass 5 kHz"] = rr.mp3(versions["low-pass 5 kHz"], sr)
        for k, v in versions.items():
            rows.setdefault(k, []).append(rr.outputs_of(model, v, sr)[0])
        edges.append(band_edge(x, versions["mp3"][: len(x)], sr))
    data = {k: np.array(v) for k, v in rows.items()}
    sd = rr.sd_of(data["original"])
    moves = {k: rr.moved(data["original"], data[k], sd, names) for k in data if k not in ("original", "mp3 of low-pass 5 kHz")}
    moves["mp3 of low-pass 5 kHz, against the low-pass"] = rr.moved(data["low-pass 5 kHz"], data["mp3 of low-pass 5 kHz"], sd, names)
    res = {"model": MODEL, "excerpts": len(edges), "seed": 1, "mp3_band_edge_hz_median": float(np.nanmedian(edges)),
           "moved": moves}
    out = ROOT / "studies/results/codec_bandwidth"
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    lines = ["# How much of the MP3 move is bandwidth?", "",
             f"`{MODEL}`, 100 recorded excerpts (seed 1); the 32 kb/s MP3's band edge: median "
             f"{res['mp3_band_edge_hz_median']:.0f} Hz. Concepts moved, in sd over the excerpts.", "",
             "| version | mean | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for k, m in moves.items():
        lines.append(f"| {k} | **{m['mean']:.3f}** | " + " | ".join(f"{m['per_concept'][n]:.2f}" for n in names) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
