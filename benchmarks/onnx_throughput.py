"""onnxruntime vs PyTorch throughput on 30 s clips, as ratios measured in one run.

Both runtimes compute the same thing, the exported track graph (``midlevel.export.TrackGraph``:
5 windows of 10 s for a 30 s clip, front-end, backbone, mean, head), in one process with the
same number of threads; ``model.explain`` (the same work, windowing in Python) is timed too
because it is what a PyTorch user calls. Calls alternate between runtimes so that a change in
machine load hits all of them alike. Reported per runtime: the median and the fastest call; as
ratios, the median of per-repetition ratios (robust to drifting load) and the ratio of the
fastest calls (closest to an idle machine); and where onnxruntime spends its time. Each thread
count in ``--threads`` is a separate comparison: on a busy machine, 2 threads can be slower
than 1 for PyTorch (OpenMP waits for the thread that lost its core), which no ratio hides.

    python benchmarks/onnx_throughput.py [--threads 1,2] [--reps 15] [--models compact-linear,...]

Writes benchmarks/results/onnx_throughput.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from midlevel import ModelConfig, TwoStageModel, example_clip, load_audio
from midlevel.export import TrackGraph, export_onnx
from midlevel.ioutil import atomic_write_text
from report_cli import cpu_name

RESULTS = Path(__file__).resolve().parent / "results"
RUNTIMES = ("onnxruntime", "torch", "torch_explain")


def clip(seconds: float, sample_rate: int) -> np.ndarray:
    """The bundled example clip repeated to ``seconds`` (real music, not noise)."""
    real = load_audio(example_clip(), sample_rate).samples
    n = int(seconds * sample_rate)
    return np.ascontiguousarray(np.tile(real, n // len(real) + 1)[:n])


def session(path: Path, threads: int, *, profile: bool = False) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = str(path.with_suffix(""))
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def time_calls(calls: dict, warmup: int, reps: int) -> dict[str, list[float]]:
    """Seconds per call for each named callable, alternating between them every repetition."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(reps):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def op_shares(path: Path, batch: np.ndarray, threads: int, top: int = 4) -> dict[str, float]:
    """Share of onnxruntime's kernel time per op type (from its profiler), largest first."""
    sess = session(path, threads, profile=True)
    for _ in range(3):
        sess.run(None, {"wave": batch})
    totals: Counter[str] = Counter()
    for event in json.loads(Path(sess.end_profiling()).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"]
    whole = sum(totals.values())
    return {op: t / whole for op, t in totals.most_common(top)}


def bench(model: TwoStageModel, path: Path, wave: np.ndarray, threads: int, warmup: int, reps: int) -> dict:
    """One comparison at one thread count."""
    torch.set_num_threads(threads)
    sess = session(path, threads)
    graph = TrackGraph(model).eval()
    batch = wave[None]
    tensor = torch.from_numpy(batch)

    def torch_graph():
        with torch.inference_mode():
            graph(tensor)

    times = time_calls({"onnxruntime": lambda: sess.run(None, {"wave": batch}), "torch": torch_graph,
                        "torch_explain": lambda: model.explain(wave, sample_rate=model.config.sample_rate)},
                       warmup, reps)
    median = {name: statistics.median(t) for name, t in times.items()}
    best = {name: min(t) for name, t in times.items()}
    ort_times = times["onnxruntime"]
    return {
        "model": model.name,
        "threads": threads,
        "median_s_per_clip": median,
        "min_s_per_clip": best,
        "paired_ratio": {name: statistics.median(a / b for a, b in zip(times[name], ort_times))
                         for name in RUNTIMES[1:]},
        "best_ratio": {name: best[name] / best["onnxruntime"] for name in RUNTIMES[1:]},
        "onnxruntime_op_shares": op_shares(path, batch, threads),
        "all_s": times,
    }


def markdown(result: dict) -> str:
    s, machine, versions = result["settings"], result["machine"], result["versions"]
    lines = [
        "# onnxruntime vs PyTorch throughput",
        "",
        f"{s['clip_seconds']:.0f} s clips (the example clip repeated), batch 1, {s['warmup']} warm-up + "
        f"{s['reps']} timed calls per runtime, alternating; both runtimes get the row's thread count. `torch` "
        "runs the exported graph's module, `explain` is `model.explain` (same work, windowing in Python). "
        "Ratio = PyTorch time / onnxruntime time, so > 1 means onnxruntime is faster; 'paired' is the median of "
        "per-repetition ratios, 'best' the ratio of the fastest calls (closest to an idle machine).",
        "",
        f"Machine: {machine['cpu']}, {machine['cpus']} CPUs, load average {machine['loadavg_before'][0]:.2f} "
        f"before / {machine['loadavg_after'][0]:.2f} after (at or above the CPU count, other work shared the "
        f"machine). torch {versions['torch']}, onnxruntime {versions['onnxruntime']}.",
        "",
        "| model | threads | median s/clip ORT / torch / explain | best s/clip ORT / torch / explain "
        "| paired ratio vs torch / explain | best ratio vs torch / explain | ORT time by op |",
        "| --- | ---: | --- | --- | --- | --- | --- |",
    ]
    for r in result["runs"]:
        med, best = r["median_s_per_clip"], r["min_s_per_clip"]
        ops = ", ".join(f"{op} {share:.0%}" for op, share in r["onnxruntime_op_shares"].items())
        lines.append(
            f"| {r['model']} | {r['threads']} | " + " / ".join(f"{med[n]:.3f}" for n in RUNTIMES)
            + " | " + " / ".join(f"{best[n]:.3f}" for n in RUNTIMES)
            + " | " + " / ".join(f"{r['paired_ratio'][n]:.2f}" for n in RUNTIMES[1:])
            + " | " + " / ".join(f"{r['best_ratio'][n]:.2f}" for n in RUNTIMES[1:]) + f" | {ops} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="compact-linear,compact-gam,vgg-linear",
                        help="BACKBONE-HEAD, comma-separated")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    wave = clip(args.seconds, ModelConfig().sample_rate)
    load_before = os.getloadavg()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.models.split(","):
            backbone, head = spec.split("-")
            torch.manual_seed(0)
            model = TwoStageModel(ModelConfig(backbone=backbone, head=head, name=spec)).eval()
            path = export_onnx(model, Path(tmp) / f"{spec}.onnx")
            runs += [bench(model, path, wave, int(t), args.warmup, args.reps) for t in args.threads.split(",")]
    result = {
        "settings": {"clip_seconds": args.seconds, "warmup": args.warmup, "reps": args.reps, "batch": 1},
        "machine": {"cpu": cpu_name(), "cpus": os.cpu_count(), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__, "python": platform.python_version()},
        "runs": runs,
    }
    atomic_write_text(RESULTS / "onnx_throughput.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(RESULTS / "onnx_throughput.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
