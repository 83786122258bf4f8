"""Where onnxruntime spends its time on a zoo entry's exported graph, by operator type (issue 31).

    python benchmarks/onnx_profile.py [--model emotion-measures-linear-mid10-ctrl48k] [--seconds 60]

onnxruntime runs the default's graph at about half PyTorch's speed (`inference_throughput.md`). This
exports the model (as `midlevel export-onnx` does), runs it on ``--seconds`` of seeded noise at the model's
rate with one thread and onnxruntime's profiler on (two warm-up runs, then ``--repeats`` profiled runs),
and sums the kernel time per operator type. Beside it, PyTorch's ``track_outputs`` on the same input (the
graph's own algorithm, not ``explain``'s frames-once path) and ``explain``. Writes
``benchmarks/results/onnx_profile.{json,md}``. One run; read shares, not seconds.
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
    p.add_argument("--model", default="emotion-measures-linear-mid10-ctrl48k")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)

    import onnxruntime as ort
    import torch

    import midlevel
    from midlevel.export import export_onnx

    torch.set_num_threads(1)
    model = midlevel.load(args.model)
    sr = model.config.sample_rate
    wave = (np.random.default_rng(0).standard_normal(int(args.seconds * sr)) * 0.1).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: wave[None]}
        for _ in range(2):
            session.run(None, feed)
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            session.run(None, feed)
        ort_s = (time.perf_counter() - t0) / args.repeats
        events = json.loads(Path(session.end_profiling()).read_text())
    per_op: collections.Counter = collections.Counter()
    runs = sum(1 for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_op[e["args"].get("op_name", "?")] += e["dur"]
    total = sum(per_op.values())

    x = torch.from_numpy(wave)[None]
    with torch.inference_mode():
        model.track_outputs(x)
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            model.track_outputs(x)
        graph_s = (time.perf_counter() - t0) / args.repeats
        model.explain(wave, sample_rate=sr)
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            model.explain(wave, sample_rate=sr)
        explain_s = (time.perf_counter() - t0) / args.repeats

    result = {
        "model": args.model, "seconds_of_audio": args.seconds, "repeats": args.repeats, "threads": 1,
        "environment": f"{platform.machine()} CPU ({os.cpu_count()} cores visible), torch {torch.__version__}, "
                       f"onnxruntime {ort.__version__}",
        "load_average": os.getloadavg()[0],
        "x_real_time": {"onnxruntime": args.seconds / ort_s, "torch_track_outputs": args.seconds / graph_s,
                        "torch_explain": args.seconds / explain_s},
        "profiled_runs": runs,
        "kernel_share_by_op": {k: v / total for k, v in per_op.most_common()},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "onnx_profile.json").write_text(json.dumps(result, indent=1) + "\n")
    rt = result["x_real_time"]
    lines = [f"# onnxruntime's time by operator: `{args.model}`\n",
             f"`benchmarks/onnx_profile.py`: {args.seconds:.0f} s of noise, 1 thread, graph optimisation 'extended', "
             f"{args.repeats} profiled runs after 2 warm-ups; {result['environment']}; load average "
             f"{result['load_average']:.2f}. One run.\n",
             "| path | x real time |", "|---|---|",
             f"| onnxruntime, exported graph | {rt['onnxruntime']:.0f} |",
             f"| PyTorch, the graph's algorithm (`track_outputs`: every window's STFT whole) | {rt['torch_track_outputs']:.0f} |",
             f"| PyTorch, `explain` (each STFT frame once) | {rt['torch_explain']:.0f} |",
             "", "| operator | share of kernel time |", "|---|---|"]
    lines += [f"| {k} | {v:.1%} |" for k, v in list(result["kernel_share_by_op"].items())[:15]]
    (out / "onnx_profile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
