"""What each stage of the default costs beside decoding: the room issue 31's floor bar leaves a model.

Issue 31 asks the default to annotate within 1.3x of the decode-only floor, so everything after decoding may
take at most 0.3 of the decoding time. One process, one thread (an ``annotate`` worker runs one), on recorded
tracks read into the page cache first; rounds alternate the stages, and the fastest round of each is reported:

- **decode**: ``midlevel.audio.load_audio`` at the model's rate (libsndfile, downmix, soxr): the floor;
- **front-end**: the log-frequency spectrograms of every window, as ``explain`` makes them
  (``frontend.window_spectrograms`` on chunks of 8 windows: each STFT frame once), and nothing after them;
- **explain**: the whole model on the decoded track (front-end, backbone, concepts, head, the track's checks).

Reported: x real time of each and its time as a share of decoding's (the bar allows 0.30 for everything after
decoding, front-end included).

    python benchmarks/stage_costs.py [--model NAME] [--tracks GLOB ...] [--max-seconds 900] [--rounds 3]

Writes benchmarks/results/stage_costs.json and .md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

import midlevel
from midlevel.audio import load_audio
from midlevel.ioutil import write_report
from midlevel.model import window_starts_tensor
from midlevel.numerics import flush_denormals
from midlevel.zoo import DEFAULT_MODEL
from annotate_scaling import source_name
from inference_throughput import add_track_options, pick_tracks
from report_cli import cpu_name

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "stage_costs"
#: what issue 31's bar (end to end within 1.3x of decoding alone) leaves everything after decoding
BUDGET = 0.3


def decode(paths: list[str], rate: int) -> list[np.ndarray]:
    return [load_audio(p, rate).samples for p in paths]


@torch.inference_mode()
@flush_denormals()
def front_end(model, tracks: list[np.ndarray], chunk: int = 8) -> None:
    window, hop = model.config.window_samples, model.config.hop_samples
    for samples in tracks:
        wave = torch.as_tensor(samples)[None]
        if wave.shape[-1] < window:
            wave = torch.nn.functional.pad(wave, (0, window - wave.shape[-1]))
        starts = window_starts_tensor(samples.shape[-1], window, hop, wave.device)
        for i in range(0, len(starts), chunk):
            model.frontend.window_spectrograms(wave, starts[i:i + chunk].tolist(), window)


def explain(model, tracks: list[np.ndarray]) -> None:
    for samples in tracks:
        model.explain(samples, sample_rate=model.config.sample_rate)


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def measure(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    paths = pick_tracks(args.tracks, args.max_seconds)
    for p in paths:
        Path(p).read_bytes()
    model = midlevel.load(args.model)
    rate = model.config.sample_rate
    tracks = decode(paths, rate)
    seconds = sum(len(t) for t in tracks) / rate
    explain(model, [tracks[0][: 30 * rate]])  # warm-up: thread pools, lazy buffers
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {"decode": [], "front-end": [], "explain": []}
    for _ in range(args.rounds):
        times["decode"].append(timed(lambda: decode(paths, rate)))
        times["front-end"].append(timed(lambda: front_end(model, tracks)))
        times["explain"].append(timed(lambda: explain(model, tracks)))
    best = {k: min(v) for k, v in times.items()}
    stages = [{"stage": k, "seconds": v, "rounds": times[k], "x_real_time": seconds / v,
               "share_of_decode": v / best["decode"]} for k, v in best.items()]
    return {"model": args.model, "tracks": [{"path": p, "source": source_name(p)} for p in paths],
            "audio_seconds": seconds, "rounds": args.rounds, "budget_share_of_decode": BUDGET, "stages": stages,
            "machine": {"cpu": cpu_name(), "cpus": os.cpu_count(), "loadavg_before": load_before,
                        "loadavg_after": os.getloadavg()},
            "versions": {"torch": torch.__version__, "midlevel": midlevel.__version__,
                         "python": platform.python_version()}}


def markdown(result: dict) -> str:
    m = result["machine"]
    sources = sorted({t["source"] for t in result["tracks"]})
    lines = [f"# What each stage of `{result['model']}` costs beside decoding", "",
             f"{len(result['tracks'])} recorded tracks ({result['audio_seconds'] / 60:.1f} min: {', '.join(sources)}), "
             f"one process, 1 thread, fastest of {result['rounds']} alternating rounds (`benchmarks/stage_costs.py`). "
             "Issue 31's floor bar (end to end within 1.3x of decoding alone) leaves everything after decoding "
             f"{result['budget_share_of_decode']:.2f} of decoding's time.", "",
             f"Machine: {m['cpu']}, {m['cpus']} CPUs; load average {m['loadavg_before'][0]:.2f} before, "
             f"{m['loadavg_after'][0]:.2f} after. torch {result['versions']['torch']}.", "",
             "| stage | x real time | time / decoding's | within the bar's 0.30? |", "| --- | ---: | ---: | --- |"]
    for s in result["stages"]:
        verdict = "" if s["stage"] == "decode" else ("yes" if s["share_of_decode"] <= result["budget_share_of_decode"]
                                                     else "no")
        lines.append(f"| {s['stage']} | {s['x_real_time']:.0f} | {s['share_of_decode']:.2f} | {verdict} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    add_track_options(parser)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    result = measure(args)
    write_report(Path(args.out), NAME, result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
