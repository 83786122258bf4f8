"""Peak memory of explaining a 1-minute and a 10-minute file: it should grow by the audio only.

Each measurement runs in a fresh subprocess that loads the default model (`midlevel.load()`) and warms up
on the 12 s example clip (thread pools, lazy buffers). Then, with the kernel's peak-RSS counter
reset (``/proc/self/clear_refs``, Linux), it decodes the file and records the peak above the idle
process ("decode"), resets the counter again and runs one view on the decoded audio, recording
the peak above idle once more ("view", the audio being resident). ``view - audio`` is the
working memory beyond the audio itself: it should not depend on the track's length.
tracemalloc's peak (numpy and Python objects; torch tensors are not traced) is reported too.

glibc's malloc raises its mmap threshold after freeing a large block (up to 32 MiB); from then
on freed batch buffers stay in its heap and count in the peak RSS, more so the more batches ran,
until it saturates (some tens of MiB). The window loops call ``malloc_trim`` after each batch
(``midlevel.ioutil.release_freed_memory``), which returns part of it. Each run is repeated with
``MALLOC_MMAP_THRESHOLD_`` fixed by the environment ("fixed"), which shows what the code itself
holds, and with the threshold fixed by ``mallopt`` the way the ``midlevel`` command does at start
("cli"); "default" is a library call from a process that left glibc alone.

Views: ``annotate`` (``model.explain(path)``, what ``midlevel annotate`` runs per file: the file decoded block by
block as the windows consume it, no decoded track resident; the decode alone measured after it, for reference),
``annotate-onnxruntime`` (the same on onnxruntime), ``explain`` (``model.explain`` of the decoded audio), ``explain-onnxruntime``
(the same with the per-window network in onnxruntime, ``midlevel.onnx_runtime``: its graph traced by the parent
before any child starts, its session built from the cached graph before the idle measurement), ``timeline`` (over time, the model's windows: ``model.explain``
plus per-window contributions) and ``report`` (the whole HTML report: the interactive page since issue 32, whose maps
cover the whole track at the page's resolution; the committed results predate it, when the static
report's spectrogram and listening views used a 30 s excerpt). The files are the example clip repeated,
so they are real music: mono WAVs at the model's rate (``--format wav``), or 44.1 kHz stereo OGG Vorbis
(``--format ogg``), as recordings come, whose decoded channels are four times the model's input.

    python benchmarks/long_track_memory.py [--durations 60,600,1200,2400] [--views timeline,report]
                                           [--allocators default,fixed,cli] [--format wav|ogg]
                                           [--name long_track_memory]

Writes benchmarks/results/NAME.json (default long_track_memory.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import soundfile as sf

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLE_RATE = 22050
ALLOCATORS = {"default": {}, "fixed": {"MALLOC_MMAP_THRESHOLD_": "131072"}, "cli": {"MIDLEVEL_BENCH_CLI": "1"}}


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size in MiB, from /proc/self/status."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
                  if line.startswith(("VmRSS", "VmHWM")))
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def reset_peak() -> float:
    """Reset the kernel's peak RSS to the current RSS (Linux >= 4.0); return that RSS."""
    Path("/proc/self/clear_refs").write_text("5")
    return rss_mb()[0]


def child(path: str, view: str, out_dir: str) -> dict:
    """Runs in the subprocess: decode, then one view of the decoded audio; returns the numbers."""
    import gc

    import torch

    import midlevel
    from midlevel.explain.report import write_report
    from midlevel.explain.timeline import timeline

    torch.set_num_threads(2)
    if os.environ.get("MIDLEVEL_BENCH_CLI"):  # what the `midlevel` command does at start
        from midlevel.ioutil import fix_mmap_threshold

        assert fix_mmap_threshold()
    model = midlevel.load()
    views = {"explain": lambda audio: model.explain(audio),
             "timeline": lambda audio: timeline(model, audio),
             "report": lambda audio: write_report(model, audio, Path(out_dir) / "report.html")}
    network = None
    if view.endswith("-onnxruntime"):
        from midlevel.onnx_runtime import OnnxWindowNetwork

        network = OnnxWindowNetwork(model, threads=2)
    if view.startswith("annotate") or view == "explain-onnxruntime":
        views[view] = lambda audio: model.explain(audio, window_network=network)
    run = views[view]
    from_path = view.startswith("annotate")  # the path itself: decoded as the windows consume it
    run(str(midlevel.example_clip()) if from_path else model.read_audio(str(midlevel.example_clip())))
    gc.collect()
    idle = reset_peak()

    def measured(audio) -> tuple[float, float, float]:
        """(seconds, tracemalloc's peak MiB, peak RSS above idle MiB) of the view."""
        tracemalloc.start()
        start = time.perf_counter()
        run(audio)
        seconds = time.perf_counter() - start
        traced = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        return seconds, traced, rss_mb()[1] - idle

    if from_path:  # the view first, nothing decoded beforehand; then the decode alone, for reference
        seconds, traced_peak, view_peak = measured(path)
        gc.collect()
        reset_peak()
        model.read_audio(path)
        decode_peak = rss_mb()[1] - idle
        audio_mb = 0.0  # no decoded track is resident during the view
    else:
        clip = model.read_audio(path)
        decode_peak = rss_mb()[1] - idle
        reset_peak()
        seconds, traced_peak, view_peak = measured(clip)
        audio_mb = clip.samples.nbytes / 2**20
    return {"idle_rss_mb": round(idle, 1), "peak_rss_mb": round(idle + view_peak, 1), "audio_mb": round(audio_mb, 1),
            "decode_peak_mb": round(decode_peak, 1), "view_peak_mb": round(view_peak, 1),
            "beyond_audio_mb": round(view_peak - audio_mb, 1),
            "tracemalloc_peak_mb": round(traced_peak, 1), "seconds": round(seconds, 1)}


def write_track(path: Path, seconds: float, file_format: str) -> None:
    """The example clip repeated to ``seconds``: ``wav``, a 16-bit mono WAV at the model's rate (nothing to
    resample or downmix); ``ogg``, a 44.1 kHz stereo OGG Vorbis as recordings come (the right channel the
    left one 10 ms later), written in blocks (libsndfile's Vorbis encoder crashed on an hour in one call)."""
    from midlevel import example_clip, load_audio

    rate = SAMPLE_RATE if file_format == "wav" else 44100
    real = load_audio(example_clip(), rate).samples
    n = int(seconds * rate)
    track = np.tile(real, n // len(real) + 2)
    if file_format == "wav":
        sf.write(path, track[:n], rate, subtype="PCM_16")
        return
    lag = rate // 100
    with sf.SoundFile(path, "w", rate, 2, format="OGG", subtype="VORBIS") as out:
        for i in range(0, n, 1 << 16):
            j = min(i + (1 << 16), n)
            out.write(np.stack([track[i + lag:j + lag], track[i:j]], axis=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", default="60,600,1200,2400", help="comma-separated track lengths in seconds")
    parser.add_argument("--views", default="timeline,report")
    parser.add_argument("--allocators", default="default,fixed,cli")
    parser.add_argument("--format", choices=("wav", "ogg"), default="wav",
                        help="wav: mono at the model's rate; ogg: 44.1 kHz stereo Vorbis, as recordings come")
    parser.add_argument("--name", default="long_track_memory", help="results file name (without .json)")
    parser.add_argument("--child", nargs=3, metavar=("PATH", "VIEW", "OUT_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return

    from midlevel.ioutil import atomic_write_text
    from midlevel.zoo import DEFAULT_MODEL

    durations = [float(d) for d in args.durations.split(",")]
    if any(view.endswith("-onnxruntime") for view in args.views.split(",")):  # traced here, once: the children read it from the cache
        import midlevel
        from midlevel.onnx_runtime import cached_window_graph

        cached_window_graph(midlevel.load())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in durations:
            path = Path(tmp) / f"track_{int(seconds)}s.{args.format}"
            write_track(path, seconds, args.format)
            for view in args.views.split(","):
                for allocator in args.allocators.split(","):
                    env = dict(os.environ, **ALLOCATORS[allocator])
                    out = subprocess.run([sys.executable, __file__, "--child", str(path), view, tmp],
                                         check=True, capture_output=True, text=True, env=env)
                    result = json.loads(out.stdout.strip().splitlines()[-1])
                    result.update(view=view, allocator=allocator, duration_s=seconds)
                    rows.append(result)
                    print(json.dumps(result))
    summary = {}
    for view in args.views.split(","):
        for allocator in args.allocators.split(","):
            mine = sorted((r for r in rows if (r["view"], r["allocator"]) == (view, allocator)),
                          key=lambda r: r["duration_s"])
            beyond = [r["beyond_audio_mb"] for r in mine]
            summary[f"{view}, {allocator} allocator"] = {
                "duration_s": [r["duration_s"] for r in mine], "audio_mb": [r["audio_mb"] for r in mine],
                "peak_rss_mb": [r["peak_rss_mb"] for r in mine],
                "view_peak_mb": [r["view_peak_mb"] for r in mine], "beyond_audio_mb": beyond,
                "beyond_audio_spread_mb": round(max(beyond) - min(beyond), 1),
            }
    result = {"machine": {"platform": platform.platform(), "python": platform.python_version()},
              "model": f"midlevel.load(): {DEFAULT_MODEL}", "file_format": args.format,
              "runs": rows, "summary": summary}
    atomic_write_text(RESULTS / f"{args.name}.json", json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
