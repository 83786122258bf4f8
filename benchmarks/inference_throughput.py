"""Inference speed of every current zoo entry on recorded music: decoding alone, PyTorch and onnxruntime, 1 and 2 threads.

One run, one process, on the same recorded tracks (Debian's game music, as ``annotate_scaling``), read once
before timing so every pass finds them in the page cache. For each thread count, in this order:

- **decode**: ``midlevel.audio.load_audio`` of every track at each rate the entries use (libsndfile decoding,
  downmix, soxr resampling): the floor no model goes under;
- for each entry, on the decoded tracks: **torch**, what a Python user calls (``model.explain``, or
  ``predict`` for a black box: windows in chunks of 8, each STFT frame computed once); **explain on
  onnxruntime**, the same call with the per-window network in onnxruntime (``midlevel.onnx_runtime``, what
  ``midlevel annotate --runtime onnxruntime`` runs; graphs built before timing); and **onnxruntime**, the
  exported track graph (``midlevel.export``: all windows of a track at once, each window's front-end computed
  whole), with ``intra_op_num_threads`` set to the thread count.

Reported: x real time (seconds of audio per second of compute) of each; **end to end**, decode + model as one
process runs them one after the other (1 / (1/decode + 1/model)), and its ratio to the decode floor; and
onnxruntime's speed over torch's. Speech and heart entries read the same music: speed does not depend on what
the audio holds, only on its length and the model's rate. Entries alternate with nothing in between, so a
change in the machine's load shows as a change in the decode rows (measured again per thread count) and in
the load averages recorded before and after.

    python benchmarks/inference_throughput.py [--tracks GLOB ...] [--max-seconds 900] [--threads 1,2]
                                              [--models NAME,...]

Writes benchmarks/results/inference_throughput.json and .md.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import midlevel
from midlevel.audio import load_audio
from midlevel.export import export_onnx
from midlevel.ioutil import write_report
from midlevel.model import TwoStageModel
from midlevel.onnx_runtime import OnnxWindowNetwork, cached_window_graph
from midlevel.zoo import DEFAULT_MODEL, list_models
from annotate_scaling import TRACKS, source_name
from report_cli import cpu_name

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "inference_throughput"


def pick_tracks(globs: list[str], max_seconds: float) -> list[str]:
    """Tracks in name order, whole, until ``max_seconds`` of audio (at least one)."""
    import soundfile as sf

    chosen, total = [], 0.0
    for path in sorted(p for g in globs for p in glob.glob(g)):
        if total >= max_seconds:
            break
        info = sf.info(path)
        chosen.append(path)
        total += info.frames / info.samplerate
    return chosen


def decode_all(paths: list[str], rate: int) -> tuple[list[np.ndarray], float]:
    start = time.perf_counter()
    samples = [load_audio(p, rate).samples for p in paths]
    return samples, time.perf_counter() - start


def time_torch(model, tracks: list[np.ndarray], window_network=None) -> float:
    """``explain`` (``predict``) over the tracks; ``window_network``: its per-window network elsewhere."""
    call = model.explain if isinstance(model, TwoStageModel) else model.predict
    rate = model.config.sample_rate
    call(tracks[0][: 30 * rate], sample_rate=rate, window_network=window_network)  # warm-up: pools, lazy buffers
    start = time.perf_counter()
    for samples in tracks:
        call(samples, sample_rate=rate, window_network=window_network)
    return time.perf_counter() - start


#: onnxruntime's graph optimisation levels compared: "all" adds layout changes (NCHWc convolutions); each run's
#: table says which was faster for which entry
LEVELS = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}


def time_onnxruntime(path: Path, threads: int, tracks: list[np.ndarray], rate: int, level: str) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = LEVELS[level]
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    session.run(None, {"wave": tracks[0][None, : 30 * rate]})
    start = time.perf_counter()
    for samples in tracks:
        session.run(None, {"wave": samples[None]})
    return time.perf_counter() - start


def onnxruntime_op_shares(path: Path, wave: np.ndarray, top: int = 3) -> dict[str, float]:
    """Share of onnxruntime's kernel time per op type on one call (its profiler, 1 thread), largest first."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.enable_profiling, options.profile_file_prefix = True, str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    session.run(None, {"wave": wave[None]})
    totals: Counter[str] = Counter()
    for event in json.loads(Path(session.end_profiling()).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"]
    whole = sum(totals.values())
    return {op: t / whole for op, t in totals.most_common(top)}


def measure(args: argparse.Namespace) -> dict:
    paths = pick_tracks(args.tracks, args.max_seconds)
    for p in paths:  # into the page cache
        Path(p).read_bytes()
    names = args.models.split(",") if args.models else list_models()
    models = {name: midlevel.load(name) for name in names}
    rates = sorted({m.config.sample_rate for m in models.values()})
    load_before = os.getloadavg()
    rows, decode = [], []
    with tempfile.TemporaryDirectory() as tmp:
        exported = {name: export_onnx(m, Path(tmp) / f"{name}.onnx") for name, m in models.items()}
        window_graphs = {name: cached_window_graph(m) for name, m in models.items()}
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            tracks, audio_seconds = {}, None
            for rate in rates:
                tracks[rate], seconds = decode_all(paths, rate)
                audio_seconds = sum(len(s) for s in tracks[rate]) / rate
                decode.append({"threads": threads, "sample_rate": rate, "seconds": seconds,
                               "x_real_time": audio_seconds / seconds, "loadavg": os.getloadavg()[0]})
            for name, model in models.items():
                rate = model.config.sample_rate
                floor = next(d for d in decode if d["threads"] == threads and d["sample_rate"] == rate)
                row = {"model": name, "threads": threads, "sample_rate": rate, "default": name == DEFAULT_MODEL,
                       "explainable": isinstance(model, TwoStageModel)}
                ort_seconds = {level: time_onnxruntime(exported[name], threads, tracks[rate], rate, level)
                               for level in LEVELS}
                row["onnxruntime_level"] = min(ort_seconds, key=ort_seconds.get)
                row["onnxruntime_x_real_time_by_level"] = {k: audio_seconds / v for k, v in ort_seconds.items()}
                network = OnnxWindowNetwork(model, graph=window_graphs[name], threads=threads)
                for runtime, seconds in (("torch", time_torch(model, tracks[rate])),
                                         ("explain_onnxruntime", time_torch(model, tracks[rate], network)),
                                         ("onnxruntime", ort_seconds[row["onnxruntime_level"]])):
                    x_model = audio_seconds / seconds
                    end_to_end = 1.0 / (1.0 / floor["x_real_time"] + 1.0 / x_model)
                    row[runtime] = {"seconds": seconds, "x_real_time": x_model, "end_to_end_x_real_time": end_to_end,
                                    "floor_over_end_to_end": floor["x_real_time"] / end_to_end}
                row["onnxruntime_over_torch"] = row["torch"]["seconds"] / row["onnxruntime"]["seconds"]
                row["explain_onnxruntime_over_torch"] = row["torch"]["seconds"] / row["explain_onnxruntime"]["seconds"]
                row["loadavg"] = os.getloadavg()[0]
                if threads == 1:  # where onnxruntime's time goes, on 60 s of the first track
                    row["onnxruntime_op_shares"] = onnxruntime_op_shares(exported[name], tracks[rate][0][: 60 * rate])
                rows.append(row)
    return {
        "tracks": [{"path": p, "source": source_name(p)} for p in paths], "audio_seconds": audio_seconds,
        "machine": {"cpu": cpu_name(), "cpus": os.cpu_count(), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__, "midlevel": midlevel.__version__,
                     "python": platform.python_version()},
        "decode": decode, "rows": rows,
    }


def markdown(result: dict) -> str:
    m = result["machine"]
    sources = sorted({t["source"] for t in result["tracks"]})
    lines = [
        "# Inference speed of the zoo's entries: decoding, PyTorch and onnxruntime",
        "",
        f"{len(result['tracks'])} recorded tracks ({result['audio_seconds'] / 60:.1f} min: {', '.join(sources)}), one "
        "run, one process (`benchmarks/inference_throughput.py`). x real time = seconds of audio per second. "
        "'torch' is `model.explain` (`predict` for a black box) on decoded audio; 'torch+ORT' the same call with "
        "the per-window network in onnxruntime (`midlevel.onnx_runtime`, level 'all'; what `annotate --runtime "
        "onnxruntime` runs); 'ORT' the exported track graph in "
        "onnxruntime at the faster of its graph optimisation levels 'all' and 'extended' (both given); "
        "'end to end' is decode + model one after the other, and 'floor / e2e' how far that is from "
        "decoding alone (1.00 = at the floor). A ratio over torch > 1: faster than torch.",
        "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs; load average {m['loadavg_before'][0]:.2f} before, "
        f"{m['loadavg_after'][0]:.2f} after. torch {result['versions']['torch']}, onnxruntime "
        f"{result['versions']['onnxruntime']}.",
        "",
        "| decode at | threads | x real time | load |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {d['sample_rate']} Hz | {d['threads']} | {d['x_real_time']:.0f} | {d['loadavg']:.2f} |"
              for d in result["decode"]]
    lines += ["", "| model | threads | torch x rt | torch+ORT x rt | ORT x rt (all / extended) | torch+ORT / torch "
              "| ORT / torch | end to end torch / torch+ORT / ORT | floor / e2e torch / torch+ORT / ORT "
              "| ORT time by op (1 thread, 'all') | load |",
              "| --- | ---: | ---: | ---: | --- | ---: | ---: | --- | --- | --- | ---: |"]
    for r in result["rows"]:
        t, h, o = r["torch"], r["explain_onnxruntime"], r["onnxruntime"]
        name = f"**{r['model']}** (default)" if r["default"] else r["model"]
        levels = " / ".join(f"{r['onnxruntime_x_real_time_by_level'][k]:.0f}" for k in LEVELS)
        lines.append(f"| {name} | {r['threads']} | {t['x_real_time']:.0f} | {h['x_real_time']:.0f} | {levels} | "
                     f"{r['explain_onnxruntime_over_torch']:.2f} | "
                     f"{r['onnxruntime_over_torch']:.2f} | {t['end_to_end_x_real_time']:.0f} / "
                     f"{h['end_to_end_x_real_time']:.0f} / "
                     f"{o['end_to_end_x_real_time']:.0f} | {t['floor_over_end_to_end']:.2f} / "
                     f"{h['floor_over_end_to_end']:.2f} / "
                     f"{o['floor_over_end_to_end']:.2f} | "
                     + ", ".join(f"{op} {share:.0%}" for op, share in r.get("onnxruntime_op_shares", {}).items())
                     + f" | {r['loadavg']:.2f} |")
    return "\n".join(lines) + "\n"


def add_track_options(parser: argparse.ArgumentParser) -> None:
    """``--tracks`` and ``--max-seconds``, which ``pick_tracks`` reads (shared with ``stage_costs``)."""
    parser.add_argument("--tracks", nargs="+", default=list(TRACKS), help="globs of the tracks")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop adding tracks after this much audio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_track_options(parser)
    parser.add_argument("--threads", default="1,2", help="comma-separated torch/onnxruntime thread counts")
    parser.add_argument("--models", default="", help="comma-separated zoo names (default: every current entry)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    result = measure(args)
    write_report(Path(args.out), NAME, result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
