"""Where onnxruntime spends its time on a zoo entry's exported graph, by operator type (issue 31).

    python benchmarks/onnx_profile.py [--model emotion-structural-linear-mid10-rand1k-v7] [--seconds 60]

onnxruntime ran the default's graph at about half PyTorch's speed before issue 31's front-end rework. This
exports the model (as `midlevel export-onnx` does), runs it on ``--seconds`` of seeded noise at the model's
rate with one thread and onnxruntime's profiler on (two warm-up runs, then ``--repeats`` profiled runs),
and sums the kernel time per operator type. Beside it, PyTorch's ``track_outputs`` on the same input (the
graph's own algorithm, not ``explain``'s frames-once path; with denormals flushed, as ``explain`` runs) and
``explain``. The speeds come from rounds of the three paths in turn, without the profiler (which slows
onnxruntime), so that another process's load falls on all three alike; read their ratios. Writes
``benchmarks/results/onnx_profile.{json,md}``. One run.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="emotion-structural-linear-mid10-rand1k-v7")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (each path once per round) and profiled runs")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)

    import onnxruntime as ort
    import torch

    import midlevel
    from midlevel.export import export_onnx
    from midlevel.numerics import flush_denormals

    torch.set_num_threads(1)
    model = midlevel.load(args.model)
    sr = model.config.sample_rate
    wave = (np.random.default_rng(0).standard_normal(int(args.seconds * sr)) * 0.1).astype(np.float32)
    x = torch.from_numpy(wave)[None]
    load_before = os.getloadavg()[0]

    def options(profile_prefix: str | None = None) -> "ort.SessionOptions":
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        if profile_prefix is not None:
            so.enable_profiling, so.profile_file_prefix = True, profile_prefix
        return so

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, path)
        session = ort.InferenceSession(str(path), options(), providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: wave[None]}

        def graph() -> None:  # the graph's own algorithm in PyTorch, with denormals flushed as ``explain`` has them
            with flush_denormals():
                model.track_outputs(x)

        # the three paths in turn, round after round, so that a change in the machine's load reaches all alike;
        # the fastest round of each (the one least disturbed); onnxruntime without its profiler, which costs time
        paths = {"onnxruntime": lambda: session.run(None, feed), "torch_track_outputs": graph,
                 "torch_explain": lambda: model.explain(wave, sample_rate=sr)}
        seconds: dict[str, list[float]] = {k: [] for k in paths}
        with torch.inference_mode():
            for run in paths.values():
                run()
            for _ in range(args.repeats):
                for name, run in paths.items():
                    t0 = time.perf_counter()
                    run()
                    seconds[name].append(time.perf_counter() - t0)

        profiled = ort.InferenceSession(str(path), options(str(Path(tmp) / "profile")),
                                        providers=["CPUExecutionProvider"])
        for _ in range(2):
            profiled.run(None, feed)
        for _ in range(args.repeats):
            profiled.run(None, feed)
        events = json.loads(Path(profiled.end_profiling()).read_text())
    per_op: collections.Counter = collections.Counter()
    runs = sum(1 for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_op[e["args"].get("op_name", "?")] += e["dur"]
    total = sum(per_op.values())

    result = {
        "model": args.model, "seconds_of_audio": args.seconds, "repeats": args.repeats, "threads": 1,
        "environment": f"{platform.machine()} CPU ({os.cpu_count()} cores visible), torch {torch.__version__}, "
                       f"onnxruntime {ort.__version__}",
        "load_average": [load_before, os.getloadavg()[0]],
        "x_real_time": {k: args.seconds / min(v) for k, v in seconds.items()},
        "x_real_time_median": {k: args.seconds / float(np.median(v)) for k, v in seconds.items()},
        "profiled_runs": runs,
        "kernel_share_by_op": {k: v / total for k, v in per_op.most_common()},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "onnx_profile.json").write_text(json.dumps(result, indent=1) + "\n")
    rt, med = result["x_real_time"], result["x_real_time_median"]
    lines = [f"# onnxruntime's time by operator: `{args.model}`\n",
             f"`benchmarks/onnx_profile.py`: {args.seconds:.0f} s of noise, 1 thread, graph optimisation 'extended'; "
             f"{args.repeats} rounds of the three paths in turn (fastest and median round), then "
             f"{args.repeats} profiled onnxruntime runs after 2 warm-ups for the shares; {result['environment']}; "
             f"load average {load_before:.2f} before, {result['load_average'][1]:.2f} after. One run.\n",
             "| path | x real time (fastest round) | median round |", "|---|---|---|",
             f"| onnxruntime, exported graph | {rt['onnxruntime']:.0f} | {med['onnxruntime']:.0f} |",
             f"| PyTorch, the graph's algorithm (`track_outputs`: every window's STFT whole) | "
             f"{rt['torch_track_outputs']:.0f} | {med['torch_track_outputs']:.0f} |",
             f"| PyTorch, `explain` (each STFT frame once) | {rt['torch_explain']:.0f} | {med['torch_explain']:.0f} |",
             "", "| operator | share of kernel time |", "|---|---|"]
    lines += [f"| {k} | {v:.1%} |" for k, v in list(result["kernel_share_by_op"].items())[:15]]
    (out / "onnx_profile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
