"""How ``midlevel annotate`` scales with local workers on recorded music, with decoding alone as the floor.

Seven passes over the same tracks, measured in one run, in this order: decode only with 1 process, annotate
with 1 worker on each runtime (torch, then onnxruntime: ``--runtime``), the same with 2 processes and 2
workers, and ``model.explain`` in one process with 2 torch threads (the alternative to 2 processes). "decode only" is ``midlevel.audio.load_audio`` at the
model's rate (what every worker does before the model runs: libsndfile decoding, downmix, soxr
resampling), in this process (1) or in a pool of spawned processes (2); "annotate" is
``midlevel.annotate.annotate`` end to end (inputs listed, model loaded, worker processes spawned, every
row computed with one torch thread per worker, part files and the final Parquet table written), each pass
into a fresh output. The files are read once before timing, so every pass finds them in the page cache.
Reported per pass: wall seconds, files/s, x real time (seconds of audio per wall second), the speed-up of 2
over 1, and the load average before and after (other work on a shared machine slows every pass).

Tracks: the recorded game music of Debian packages (``apt-get install asc-music planetblupi-music-ogg
frozen-bubble-data``): asc's MP3s, Planet Blupi's Ogg files, Frozen-Bubble's three music Oggs.

    python benchmarks/annotate_scaling.py [--tracks GLOB ...] [--workers 1,2] [--runtimes torch,onnxruntime]
        [--threads 2] [--model NAME]

Writes benchmarks/results/annotate_scaling.json and .md.
"""

from __future__ import annotations

import argparse
import glob
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import soundfile as sf
import torch

import midlevel
from midlevel.annotate import annotate, one_thread, resolve_model
from midlevel.audio import load_audio
from midlevel.ioutil import write_report
from midlevel.onnx_runtime import cached_window_graph
from midlevel.zoo import DEFAULT_MODEL
from report_cli import cpu_name

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "annotate_scaling"
TRACKS = ("/usr/share/games/asc/music/*.mp3", "/usr/share/planetblupi/music/*.ogg",
          "/usr/share/games/frozen-bubble/snd/*zik*.ogg")


def source_name(path: str) -> str:
    """``/usr/share/games/asc/music/x.mp3`` -> ``asc``, ``/usr/share/planetblupi/music/y.ogg`` -> ``planetblupi``."""
    parts = Path(path).parts
    return parts[4] if parts[1:4] == ("usr", "share", "games") and len(parts) > 5 else \
        parts[3] if parts[1:3] == ("usr", "share") and len(parts) > 4 else Path(path).parent.name


def _decode(args: tuple[str, int]) -> float:
    path, rate = args
    return load_audio(path, rate).duration


def _one_thread() -> None:
    torch.set_num_threads(1)


def decode_pass(paths: list[str], workers: int, rate: int) -> dict:
    start = time.perf_counter()
    if workers == 1:
        with one_thread():
            seconds = [_decode((p, rate)) for p in paths]
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_one_thread) as pool:
            seconds = list(pool.map(_decode, [(p, rate) for p in paths], chunksize=1))
    return {"seconds": time.perf_counter() - start, "audio_seconds": float(sum(seconds))}


def annotate_pass(paths: list[str], workers: int, model: str, folder: Path, runtime: str) -> dict:
    out = folder / f"annotate-{workers}-{runtime}.parquet"
    start = time.perf_counter()
    summary = annotate(paths, out, model=model, workers=workers, runtime=runtime, progress=False)
    wall = time.perf_counter() - start
    assert summary["failed"] == 0, summary["failures"]
    return {"seconds": wall, "audio_seconds": summary["audio_seconds"]}


def threads_pass(paths: list[str], threads: int, model: str) -> dict:
    """The alternative to processes: ``model.explain`` over the files in one process with ``threads`` torch
    threads (no table written; model loaded inside the timing, as ``annotate`` does)."""
    before = torch.get_num_threads()
    start = time.perf_counter()
    torch.set_num_threads(threads)
    try:
        m = midlevel.load(model)
        seconds = [m.explain(p).duration for p in paths]
    finally:
        torch.set_num_threads(before)
    return {"seconds": time.perf_counter() - start, "audio_seconds": float(sum(seconds))}


def annotate_mode(runtime: str) -> str:
    """A pass's name: ``annotate`` (torch, as the earlier runs' files call it) or ``annotate, onnxruntime``."""
    return "annotate" if runtime == "torch" else f"annotate, {runtime}"


def measure(paths: list[str], worker_counts: list[int], model: str, threads: int, runtimes: list[str]
            ) -> list[dict]:
    rate = midlevel.load(model).config.sample_rate
    for p in paths:  # into the page cache: every pass reads the same warm files
        Path(p).read_bytes()
    passes = [(mode, w) for w in worker_counts for mode in ("decode only", *map(annotate_mode, runtimes))]
    passes += [(f"explain, {threads} torch threads", 1)] if threads > 1 else []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode, workers in passes:
            before = os.getloadavg()[0]
            if mode == "decode only":
                result = decode_pass(paths, workers, rate)
            elif mode.startswith("annotate"):
                runtime = mode.partition(", ")[2] or "torch"
                result = annotate_pass(paths, workers, model, Path(tmp), runtime)
            else:
                result = threads_pass(paths, threads, model)
            result.update(mode=mode, workers=workers, files=len(paths), load_before=before,
                          load_after=os.getloadavg()[0])
            result["files_per_second"] = len(paths) / result["seconds"]
            result["x_real_time"] = result["audio_seconds"] / result["seconds"]
            rows.append(result)
            print(f"{mode:22s} workers={workers}: {result['seconds']:.1f} s, {result['files_per_second']:.3f} "
                  f"files/s, {result['x_real_time']:.0f}x real time (load {before:.2f} -> "
                  f"{result['load_after']:.2f})", flush=True)
    return rows


def markdown(summary: dict) -> str:
    rows = summary["passes"]
    fewest = min(r["workers"] for r in rows)
    base = {r["mode"]: r["seconds"] for r in rows if r["workers"] == fewest}  # the explain pass: vs annotate
    lines = [
        "# Annotating recorded music: 1 vs 2 local workers",
        "",
        f"{summary['files']} recorded tracks ({summary['audio_hours']:.2f} h of audio, "
        f"{summary['min_track_s']:.0f}-{summary['max_track_s']:.0f} s each: {', '.join(summary['packages'])}), "
        f"model `{summary['model']}` (weights {summary['weights_sha256'][:12]}). `annotate` is the whole run "
        "(inputs listed, model loaded, workers spawned, rows and tables written), one torch thread per worker, "
        "on torch or with the per-window network on onnxruntime (one thread per worker; `--runtime onnxruntime`: "
        f"its graph read from the cache, built before the timed passes in {summary['graph_build_s']:.0f} s); "
        "`decode only` is `load_audio` at the model's rate with as many processes: the floor no model can go "
        "under; the `explain` row is one process running torch on 2 threads instead (its speed-up is against "
        "`annotate` with 1 worker). Measured in one run, in the table's order, on warm files "
        "(`benchmarks/annotate_scaling.py`).",
        "",
        f"Machine: {summary['cpu']}, {summary['cpus']} CPUs; torch {summary['torch']}. Load average: see each "
        "row (above the CPU count, other work shared the machine and slowed that pass).",
        "",
        "| pass | workers | wall s | files/s | x real time | speed-up vs 1 worker (annotate) | load before / after |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        speedup = base["annotate" if r["mode"].startswith("explain") else r["mode"]] / r["seconds"]
        lines.append(f"| {r['mode']} | {r['workers']} | {r['seconds']:.1f} | {r['files_per_second']:.3f} | "
                     f"{r['x_real_time']:.0f} | {speedup:.2f} | {r['load_before']:.2f} / {r['load_after']:.2f} |")
    decode_rows = {r["workers"]: r for r in rows if r["mode"] == "decode only"}
    lines += ["", "End to end against the decode-only floor (annotate wall / decode-only wall, same workers; "
              "issue 31 asks at most 1.3):", ""]
    for mode in dict.fromkeys(r["mode"] for r in rows if r["mode"].startswith("annotate")):
        lines.append(f"- {mode}: " + ", ".join(
            f"{r['workers']} worker(s) {r['seconds'] / decode_rows[r['workers']]['seconds']:.2f}"
            for r in rows if r["mode"] == mode and r["workers"] in decode_rows))
    torch_rows = {r["workers"]: r for r in rows if r["mode"] == "annotate"}
    for mode in dict.fromkeys(r["mode"] for r in rows if r["mode"].startswith("annotate, ")):
        lines.append(f"- {mode} over torch: " + ", ".join(
            f"{r['workers']} worker(s) {torch_rows[r['workers']]['seconds'] / r['seconds']:.2f}x"
            for r in rows if r["mode"] == mode and r["workers"] in torch_rows))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", nargs="+", default=list(TRACKS), help="globs of the tracks")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--runtimes", default="torch,onnxruntime", help="comma-separated annotate runtimes")
    parser.add_argument("--threads", type=int, default=2,
                        help="last pass: model.explain in this process with this many torch threads (1: none)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="zoo name or model folder (default: the default)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    paths = sorted(p for pattern in args.tracks for p in glob.glob(pattern))
    if not paths:
        raise SystemExit(f"no tracks match {args.tracks}; apt-get install asc-music planetblupi-music-ogg "
                         "frozen-bubble-data")
    durations = [sf.info(p).duration for p in paths]
    _, sha256 = resolve_model(args.model)
    start = time.perf_counter()  # the graph into the cache, outside the timed passes (a one-off per weights)
    if "onnxruntime" in args.runtimes.split(","):
        cached_window_graph(midlevel.load(args.model))
    graph_build_s = time.perf_counter() - start
    rows = measure(paths, [int(w) for w in args.workers.split(",")], args.model, args.threads,
                   args.runtimes.split(","))
    summary = {
        "files": len(paths), "tracks": [{"path": p, "header_seconds": d} for p, d in zip(paths, durations)],
        "audio_hours": rows[0]["audio_seconds"] / 3600, "min_track_s": min(durations), "max_track_s": max(durations),
        "packages": sorted({source_name(p) for p in paths}),
        "model": str(args.model), "weights_sha256": sha256, "cpu": cpu_name(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "graph_build_s": graph_build_s, "passes": rows,
    }
    write_report(args.out, NAME, summary, markdown(summary))
    print(f"wrote {Path(args.out) / NAME}.json and .md")


if __name__ == "__main__":
    main()
