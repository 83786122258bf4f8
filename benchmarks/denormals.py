"""What flushing denormal floats to zero buys at inference, as ratios measured in one run.

    python benchmarks/denormals.py [--models transcribe-a2e,transcribe-linear-10,compact-linear-10] [--reps 7]

Weight decay leaves trained networks with a few weights below float32's smallest normal number,
and activations reach such values too (a transcriber's note probabilities far from any note).
x86 arithmetic on them is many times slower. ``midlevel.numerics.flush_denormals`` turns them into
zeros; the library computes inference under it (``AudioModel.outputs_per_window``) and the SHAP
benchmark sets it process-wide. Per zoo model, on the bundled example clip, single-threaded
(the flag is per thread), this times with the flag off and on, alternating so that a change in
machine load hits both alike:

- ``forward``: one batch of 32 ten-second windows through front-end, backbone and output layer
  (what SHAP's masked evaluations cost);
- ``backward``: the same batch's gradient of the summed outputs with respect to the spectrogram
  (what SHAP's expected gradients cost);
- ``explain``: ``model.explain`` (a black box: ``predict_targets``) as a user calls it, with the flag
  set by the caller (inference flushes inside whatever the caller chose, so ``off`` here times the
  library's own flush too and its ratio is near 1: the check that nothing is left outside it).

Reports the median seconds per call and the median of per-repetition ratios (off / on), and the
largest output difference between the two settings (values that small change nothing).
Writes ``benchmarks/results/denormals.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import midlevel
from midlevel import TwoStageModel, example_clip, load_audio
from midlevel.ioutil import write_report

RESULTS = Path(__file__).resolve().parent / "results"
CASES = ("forward", "backward", "explain")


def windows(model, batch: int) -> torch.Tensor:
    """(batch, window) waveforms: the example clip's first window, each with a little different noise."""
    clip = load_audio(example_clip(), model.config.sample_rate).samples[: model.config.window_samples]
    gen = torch.Generator().manual_seed(0)
    wave = torch.from_numpy(np.ascontiguousarray(clip)).float()
    return wave[None] + 1e-3 * torch.randn(batch, wave.shape[0], generator=gen)


def calls(model, wave: torch.Tensor) -> dict:
    """case -> a function computing it and returning an array (for the outputs' comparison)."""
    def forward():
        with torch.no_grad():
            return model.outputs_from_spectrogram(model.frontend(wave)).numpy()

    def backward():
        spec = model.frontend(wave).detach().requires_grad_(True)
        model.outputs_from_spectrogram(spec).sum().backward()
        return spec.grad.numpy()

    def explain():  # a black box has no explanation: its user-facing call is predict_targets
        if isinstance(model, TwoStageModel):
            return model.explain(example_clip()).targets
        return model.predict_targets(example_clip())

    return {"forward": forward, "backward": backward, "explain": explain}


def time_model(name: str, reps: int, batch: int) -> dict:
    model = midlevel.load(name).eval()
    fns = calls(model, windows(model, batch))
    seconds = {c: {"off": [], "on": []} for c in CASES}
    outputs = {}
    for rep in range(reps + 1):  # repetition 0 warms up and is not counted
        for case, fn in fns.items():
            for flag in (("off", "on") if rep % 2 else ("on", "off")):
                torch.set_flush_denormal(flag == "on")
                started = time.perf_counter()
                out = fn()
                elapsed = time.perf_counter() - started
                if rep:
                    seconds[case][flag].append(elapsed)
                outputs.setdefault(case, {})[flag] = out
    torch.set_flush_denormal(False)
    result = {}
    for case in CASES:
        off, on = seconds[case]["off"], seconds[case]["on"]
        result[case] = {"off_s": statistics.median(off), "on_s": statistics.median(on),
                        "ratio": statistics.median(a / b for a, b in zip(off, on)),
                        "max_abs_difference": float(np.abs(outputs[case]["off"] - outputs[case]["on"]).max())}
    return result


def markdown(s: dict) -> str:
    lines = ["# Flushing denormals at inference", "",
             f"{s['machine']}; bundled example clip, batches of {s['batch']} windows; medians of {s['reps']} "
             "alternating repetitions. Ratio: seconds with denormals kept / with them flushed (median of "
             "per-repetition ratios).", "",
             "| model | call | kept (s) | flushed (s) | ratio | largest output difference |", "|---|---|---|---|---|---|"]
    for name, cases in s["models"].items():
        for case, v in cases.items():
            lines.append(f"| {name} | {case} | {v['off_s']:.3f} | {v['on_s']:.3f} | {v['ratio']:.2f}x | "
                         f"{v['max_abs_difference']:.1e} |")
    lines += ["", "`explain` flushes inside the library whatever the caller set, so its ratio should be near 1."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="transcribe-a2e,transcribe-linear-10,compact-linear-10")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if not torch.set_flush_denormal(False):
        raise SystemExit("this CPU cannot flush denormals: nothing to compare")
    summary = {"machine": f"{platform.machine()} CPU, torch {torch.__version__}, 1 thread",
               "batch": args.batch, "reps": args.reps,
               "models": {n: time_model(n, args.reps, args.batch) for n in args.models.split(",")}}
    write_report(args.out, "denormals", summary, markdown(summary))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
