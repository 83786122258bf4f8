"""Heart-sound explanations side by side (issue 34, after Dissanayake et al. 2020): intrinsic, occlusion, SHAP.

    python benchmarks/heart_explanations.py --corpus corpora/heart_heldout \\
        --explainable runs/heart/models-e10/models/explainable --black-box runs/heart/models-e10/models/black_box \\
        [--murmur 20] [--without 8] [--out benchmarks/results]

On held-out recordings, ``--murmur`` with a systolic murmur of grade ``--min-grade`` or more and ``--without``
with no systolic murmur (drawn with ``--seed``), each recording's "abnormal" evidence over time is read by:

* ``intrinsic_all`` / ``intrinsic_systolic_murmur``: the explainable model's concept timeline
  (``explain.timeline``, windows of the model's ``timeline_window_seconds`` every ``--hop`` s): per window the
  abnormal logit's concept terms, all summed (the window's logit minus the intercept), or the systolic
  murmur's term alone (the concept meant to be read on short windows: docs/studies/heart_first_model.md);
* ``occlusion``: captum's ``Occlusion`` of the black box on the front-end output (the normalised log
  spectrogram), patches of every band and ``--patch`` s sliding every ``--stride`` s, replaced by the clip's
  mean spectrum (``explain.over_time.occlusion_over_time``);
* ``shap_permutation``: permutation SHAP of the black box over ``--shap-time`` time segments of every band,
  the same mean-spectrum baseline (``explain.shap_baseline.explain_segments``).

The black box's explained output is its log-odds (abnormal logit minus normal logit); the explainable
model's GAM head has a single non-zero logit, which is its log-odds. Every method is put on the front-end's
10 ms frames (``explain.over_time``) and read against the corpus's per-beat table (the truth):

1. the share of each method's positive credit in S1, systole, S2 and diastole, beside each state's share of
   the time (chance), over the frames between the first and last timeline window centre;
2. per beat inside that span, the state where the credit peaks; for murmur recordings the share of beats
   whose peak lies in systole, beside systole's share of the cycle (chance);
3. cost: wall seconds per recording (decoding included), 1 thread, median of ``--repeats`` interleaved
   repeats on ``--timing-recordings`` recordings, as ratios to ``model.explain`` and to the intrinsic
   explanation with its timeline, all in this run. The timing runs last, after waiting (up to
   ``--wait-load-seconds``) for the 1-minute load average to fall below ``--max-load``, and again (up to
   ``--timing-tries`` times) when the average after it exceeds 1 + ``--max-load`` (this process itself adds
   up to 1 while it times: more is another job); the load averages before and after are recorded.

Writes ``heart_explanations.{json,md,png}`` to ``--out``, with each model's weights sha256.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

import midlevel
from midlevel.datasets.heart_corpus import CLASSES, STATES, load_heart_corpus
from midlevel.explain.over_time import (OverTime, beat_peaks, occlusion_over_time, shap_over_time,
                                        state_shares, time_interleaved, timeline_over_time)
from midlevel.explain.timeline import timeline
from midlevel.ioutil import atomic_write_text
from midlevel.model import AudioModel, BlackBoxModel, TwoStageModel
from midlevel.zoo import weights_sha256

NAME = "heart_explanations"
METHODS = ("intrinsic_all", "intrinsic_systolic_murmur", "occlusion", "shap_permutation")
METHOD_LABELS = {"intrinsic": "intrinsic (`model.explain`)", "intrinsic_timeline": "intrinsic + timeline",
                 "intrinsic_all": "intrinsic timeline, all terms",
                 "intrinsic_systolic_murmur": "intrinsic timeline, systolic-murmur term",
                 "occlusion": "occlusion, black box", "shap_permutation": "SHAP permutation, black box",
                 "black_box_forward": "(black box prediction only)"}
GROUPS = ("murmur", "without")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="corpora/heart_heldout")
    p.add_argument("--explainable", required=True, help="explainable heart model folder")
    p.add_argument("--black-box", required=True, help="black-box heart model folder")
    p.add_argument("--murmur", type=int, default=30, help="recordings with a systolic murmur of --min-grade or more")
    p.add_argument("--without", type=int, default=10, help="recordings without a systolic murmur")
    p.add_argument("--min-grade", type=int, default=2)
    p.add_argument("--hop", type=float, default=0.02, help="timeline hop (s)")
    p.add_argument("--patch", type=float, default=0.1, help="occlusion patch length (s)")
    p.add_argument("--stride", type=float, default=0.05, help="occlusion stride (s)")
    p.add_argument("--shap-time", type=int, default=150, help="SHAP time segments over the recording")
    p.add_argument("--shap-evals", type=int, default=301, help="SHAP max_evals (>= 2 * shap-time + 1)")
    p.add_argument("--timing-recordings", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-load", type=float, default=0.7, help="wait for a 1-minute load average below this")
    p.add_argument("--wait-load-seconds", type=float, default=1800.0)
    p.add_argument("--timing-tries", type=int, default=3,
                   help="time again (after waiting) while the load average after the timing shows another job")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results")
    return p.parse_args(argv)


def pick_recordings(frame: pd.DataFrame, n_murmur: int, n_without: int, min_grade: int, seed: int
                    ) -> list[tuple[int, str]]:
    """(row, group) pairs: ``n_murmur`` with a systolic murmur of ``min_grade`` or more, ``n_without`` without."""
    rng = np.random.default_rng(seed)
    grade = frame["systolic_murmur_grade"].to_numpy()
    murmur = rng.permutation(np.flatnonzero(grade >= min_grade))[:n_murmur]
    without = rng.permutation(np.flatnonzero(frame["systolic_murmur"].to_numpy() == 0))[:n_without]
    return [(int(i), "murmur") for i in sorted(murmur)] + [(int(i), "without") for i in sorted(without)]


def explain_all(explainable: TwoStageModel, black_box: BlackBoxModel, path: Path, args: argparse.Namespace
                ) -> dict[str, OverTime]:
    """The four readings of one recording (module docstring)."""
    abnormal, normal = CLASSES.index("abnormal"), CLASSES.index("normal")
    window = float(explainable.config.metadata.get("timeline_window_seconds", 0.3))
    line = timeline(explainable, path, window_seconds=window, hop_seconds=args.hop)
    return {"intrinsic_all": timeline_over_time(explainable, path, target=abnormal, line=line),
            "intrinsic_systolic_murmur": timeline_over_time(explainable, path, target=abnormal, line=line,
                                                            concepts=["systolic_murmur"]),
            "occlusion": occlusion_over_time(black_box, path, target=abnormal, versus=normal,
                                             patch_seconds=args.patch, stride_seconds=args.stride),
            "shap_permutation": shap_over_time(black_box, path, target=abnormal, versus=normal,
                                               n_time=args.shap_time, max_evals=args.shap_evals, seed=args.seed)}


def read_against_states(readings: dict[str, OverTime], segments: pd.DataFrame) -> dict[str, Any]:
    """Per method: ``state_shares`` and a summary of ``beat_peaks``, all over the timeline's span."""
    span = readings["intrinsic_all"].extra["span"]
    out: dict[str, Any] = {}
    for m, r in readings.items():
        peaks = beat_peaks(r.times, r.relevance, segments, span=span)
        out[m] = {"shares": state_shares(r.times, r.relevance, segments, valid=r.valid(span)),
                  "beats": int(len(peaks)), "peaks_in_systole": int(peaks["in_systole"].sum()),
                  "peak_states": {s: int((peaks["state"] == s).sum()) for s in (*STATES, "none")},
                  "systolic_share_of_cycle": float(peaks["systolic_share"].mean()) if len(peaks) else float("nan"),
                  "output": r.output, "reference": r.reference}
        if "additivity_error" in r.extra:
            out[m]["additivity_error"] = float(r.extra["additivity_error"])
    return out


def wait_for_quiet(max_load: float, max_wait: float) -> dict[str, Any]:
    started = time.perf_counter()
    while os.getloadavg()[0] >= max_load and time.perf_counter() - started < max_wait:
        print(f"load average {os.getloadavg()[0]:.2f} >= {max_load}: waiting", file=sys.stderr, flush=True)
        time.sleep(30)
    load = os.getloadavg()
    return {"waited_s": time.perf_counter() - started, "load_average": list(load), "quiet": load[0] < max_load}


def model_record(ref: str, model: AudioModel) -> dict[str, Any]:
    return {"path": str(ref), "name": model.name, "kind": model.config.kind, "backbone": model.config.backbone,
            "weights_sha256": weights_sha256(ref)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    started = time.perf_counter()
    explainable = midlevel.load(args.explainable)
    black_box = midlevel.load(args.black_box)
    if not isinstance(explainable, TwoStageModel):
        raise SystemExit(f"--explainable {args.explainable} is not an explainable (two-stage) model")
    if not isinstance(black_box, BlackBoxModel):
        raise SystemExit(f"--black-box {args.black_box} is not a black box")
    for m in (explainable, black_box):
        if tuple(m.config.target_names) != CLASSES:
            raise SystemExit(f"{m.name}'s classes {m.config.target_names} are not {CLASSES}")
    recordings = load_heart_corpus(args.corpus, fractions=(0.0, 0.0, 1.0))["test"]
    picked = pick_recordings(recordings.frame, args.murmur, args.without, args.min_grade, args.seed)
    if not picked:
        raise SystemExit(f"{args.corpus}: no recording to explain")

    # -- where each method puts the credit ----------------------------------------------------------------
    rows_out = []
    showcase = None
    for n, (i, group) in enumerate(picked, start=1):
        row = recordings.frame.iloc[i]
        path = recordings.paths[i]
        readings = explain_all(explainable, black_box, path, args)
        record = {"name": recordings.names[i], "group": group, "label": int(recordings.labels[i]),
                  "label_true": int(recordings.labels_true[i]),
                  "systolic_murmur_grade": int(row["systolic_murmur_grade"]),
                  "systolic_murmur_shape": str(row["systolic_murmur_shape"]),
                  "diastolic_murmur_grade": int(row["diastolic_murmur_grade"]),
                  "cond_level": str(row.get("cond_level", "")), "heart_rate_bpm": float(row["heart_rate_bpm"]),
                  "methods": read_against_states(readings, recordings.segments[i]),
                  "seconds": {m: r.seconds for m, r in readings.items()}}
        rows_out.append(record)
        if showcase is None and group == "murmur" and record["cond_level"] in ("clean", "moderate"):
            showcase = {"record": record, "readings": readings, "segments": recordings.segments[i]}
        print(f"{n}/{len(picked)} {record['name']} ({group})", file=sys.stderr, flush=True)

    # -- cost, last, on a quiet machine --------------------------------------------------------------------
    window = float(explainable.config.metadata.get("timeline_window_seconds", 0.3))
    murmurs = [i for i, g in picked if g == "murmur"] or [i for i, _ in picked]
    timing_rows = murmurs[::max(1, len(murmurs) // args.timing_recordings)][:args.timing_recordings]
    abnormal, normal = CLASSES.index("abnormal"), CLASSES.index("normal")
    methods: dict[str, Callable[[Path], Any]] = {
        "intrinsic": lambda p: explainable.explain(p),
        "intrinsic_timeline": lambda p: timeline(explainable, p, window_seconds=window, hop_seconds=args.hop),
        "occlusion": lambda p: occlusion_over_time(black_box, p, target=abnormal, versus=normal,
                                                   patch_seconds=args.patch, stride_seconds=args.stride),
        "shap_permutation": lambda p: shap_over_time(black_box, p, target=abnormal, versus=normal,
                                                     n_time=args.shap_time, max_evals=args.shap_evals, seed=args.seed),
        "black_box_forward": lambda p: black_box.predict(p),
    }
    waited = time.perf_counter()
    tries = []
    while True:
        quiet = wait_for_quiet(args.max_load, max(0.0, args.wait_load_seconds - (time.perf_counter() - waited)))
        load = os.getloadavg()
        cost = time_interleaved(methods, [recordings.paths[i] for i in timing_rows], args.repeats,
                                base=("intrinsic", "intrinsic_timeline"))
        load_after = os.getloadavg()
        tries.append({"before": list(load), "after": list(load_after)})
        # this process adds up to 1 to the 1-minute average while it times: more than that is another job
        if load_after[0] < 1.0 + args.max_load or len(tries) >= args.timing_tries \
                or time.perf_counter() - waited >= args.wait_load_seconds:
            break
        print(f"load average {load_after[0]:.2f} after the timing: another job ran; timing again",
              file=sys.stderr, flush=True)

    results = {
        "benchmark": NAME, "corpus": str(args.corpus), "split": "the whole held-out corpus",
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "models": {"explainable": model_record(args.explainable, explainable),
                   "black_box": model_record(args.black_box, black_box)},
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                        "load_wait": quiet, "timing_tries": tries, "load_average_before_timing": list(load),
                        "load_average_after_timing": list(load_after)},
        "timing_recordings": [recordings.names[i] for i in timing_rows],
        "cost": cost, "recordings": rows_out, "summary": summarise(rows_out),
        "seconds": time.perf_counter() - started,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{NAME}.json", json.dumps(results, indent=1, default=float) + "\n")
    atomic_write_text(out / f"{NAME}.md", markdown(results))
    figure(showcase or {"record": rows_out[0], "readings": explain_all(explainable, black_box,
                                                                         recordings.paths[picked[0][0]], args),
                        "segments": recordings.segments[picked[0][0]]}, results, out / f"{NAME}.png")
    return results


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per group and method: mean share of the positive credit per state (recordings with some positive
    credit) beside the mean share of time; beats whose peak is in systole (pooled) beside the mean share of
    the cycle that is systole; for murmur recordings, the same by recording condition."""
    out: dict[str, Any] = {}
    for group in GROUPS:
        these = [r for r in rows if r["group"] == group]
        if not these:
            continue
        g: dict[str, Any] = {"n_recordings": len(these)}
        for m in METHODS:
            recs = [r["methods"][m] for r in these]
            credited = [x["shares"] for x in recs if x["shares"]["positive_total"] > 0]
            s: dict[str, Any] = {"n_with_positive_credit": len(credited)}
            for state in STATES:
                s[f"share_{state}"] = float(np.mean([c[f"share_{state}"] for c in credited])) if credited else float("nan")
                s[f"time_{state}"] = float(np.mean([x["shares"][f"time_{state}"] for x in recs]))
            beats = sum(x["beats"] for x in recs)
            s["beats"] = beats
            s["peaks_in_systole"] = sum(x["peaks_in_systole"] for x in recs) / beats if beats else float("nan")
            s["peak_states"] = {k: sum(x["peak_states"][k] for x in recs) / beats if beats else float("nan")
                                for k in (*STATES, "none")}
            s["systolic_share_of_cycle"] = float(np.mean([x["systolic_share_of_cycle"] for x in recs]))
            if group == "murmur":
                by: dict[str, Any] = {}
                for level in sorted({r["cond_level"] for r in these}):
                    lv = [r["methods"][m] for r in these if r["cond_level"] == level]
                    b = sum(x["beats"] for x in lv)
                    by[level] = {"recordings": len(lv), "beats": b,
                                 "peaks_in_systole": sum(x["peaks_in_systole"] for x in lv) / b if b else float("nan")}
                s["by_condition"] = by
            if m == "shap_permutation":
                s["max_additivity_error"] = float(max(x["additivity_error"] for x in recs))
            g[m] = s
        g["black_box_abnormal"] = float(np.mean([r["methods"]["occlusion"]["output"] > 0 for r in these]))
        g["explainable_abnormal"] = float(np.mean([r["methods"]["intrinsic_all"]["output"] > 0 for r in these]))
        out[group] = g
    return out


def _fmt(x: float, pct: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    return f"{x:.0%}" if pct else f"{x:.2f}"


def markdown(r: dict[str, Any]) -> str:
    s, cost, env, st = r["summary"], r["cost"], r["environment"], r["settings"]
    n = sum(g["n_recordings"] for g in s.values())
    lines = [f"# Heart-sound explanations: intrinsic, occlusion and SHAP over the cardiac cycle", "",
             f"`benchmarks/heart_explanations.py` on {n} recordings of `{r['corpus']}` "
             f"({s.get('murmur', {}).get('n_recordings', 0)} with a systolic murmur of grade {st['min_grade']} or more, "
             f"{s.get('without', {}).get('n_recordings', 0)} without); {env['threads']} thread(s), load average "
             f"{env['load_average_before_timing'][0]:.2f} before the timing and {env['load_average_after_timing'][0]:.2f} "
             f"after (the 1-minute average counts this process); one run, {r['seconds']:.0f} s.", "", "Models:", ""]
    for k, m in r["models"].items():
        lines.append(f"- {k}: `{m['path']}` ({m['name']}, {m['backbone']}), sha256 `{m['weights_sha256'][:16]}...`")
    lines += ["", "## Cost (wall seconds per 15 s recording, decoding included)", "",
              "| method | median s | x intrinsic | x intrinsic + timeline |", "|---|---|---|---|"]
    for m, c in sorted(cost.items(), key=lambda kv: kv[1]["median_s"]):
        lines.append(f"| {METHOD_LABELS.get(m, m)} | {c['median_s']:.3f} | {c['ratio_to_intrinsic']:.1f} | "
                     f"{c['ratio_to_intrinsic_timeline']:.2f} |")
    lines += ["", f"Median of {st['repeats']} interleaved repeats on each of {len(r['timing_recordings'])} murmur "
              f"recordings, then the median over recordings. Occlusion: {st['patch']:g} s patches of every band every "
              f"{st['stride']:g} s; SHAP: {st['shap_time']} time segments, max_evals {st['shap_evals']}; timeline: "
              f"windows every {st['hop']:g} s.", ""]
    for group, title in (("murmur", f"recordings with a systolic murmur (grade >= {st['min_grade']})"),
                         ("without", "recordings without a systolic murmur")):
        if group not in s:
            continue
        g = s[group]
        lines += [f"## Where the abnormal credit lies: {title} ({g['n_recordings']})", "",
                  "Mean share of each method's positive credit for \"abnormal\" per state (the state's share of the "
                  "time in brackets: chance), over recordings with some positive credit; beats whose credit peaks "
                  "in systole (chance: systole's share of the cycle).", "",
                  "| method | recordings | S1 | systole | S2 | diastole | peak in systole | chance | beats |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for m in METHODS:
            v = g[m]
            cells = [f"{_fmt(v['share_' + x], True)} ({_fmt(v['time_' + x], True)})" for x in STATES]
            lines.append(f"| {METHOD_LABELS[m]} | {v['n_with_positive_credit']} | " + " | ".join(cells)
                         + f" | {_fmt(v['peaks_in_systole'], True)} | {_fmt(v['systolic_share_of_cycle'], True)} | "
                         f"{v['beats']} |")
        lines += ["", f"Classified abnormal: explainable {g['explainable_abnormal']:.0%}, black box "
                  f"{g['black_box_abnormal']:.0%}. SHAP additivity error at most "
                  f"{g['shap_permutation']['max_additivity_error']:.1e}.", ""]
        if group == "murmur":
            levels = sorted(g[METHODS[0]]["by_condition"])
            lines += ["Beats whose credit peaks in systole, by recording condition:", "",
                      "| method | " + " | ".join(f"{lv} ({g[METHODS[0]]['by_condition'][lv]['recordings']})"
                                                for lv in levels) + " |",
                      "|---|" + "---|" * len(levels)]
            for m in METHODS:
                lines.append(f"| {METHOD_LABELS[m]} | " + " | ".join(
                    _fmt(g[m]["by_condition"][lv]["peaks_in_systole"], True) for lv in levels) + " |")
            lines.append("")
    return "\n".join(lines)


def figure(show: dict[str, Any], results: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    from midlevel.explain.cardiac_cycle import STATE_COLOURS, states_at
    from midlevel.plotting import save_png

    readings, segments, record = show["readings"], show["segments"], show["record"]
    fig = Figure(figsize=(11, 10))
    axes = fig.subplots(len(METHODS) + 2, 1, gridspec_kw={"height_ratios": [0.35] + [1.0] * len(METHODS) + [1.6]})
    first = readings["intrinsic_all"]
    lo, hi = first.extra["span"][0], min(first.extra["span"][0] + 5.0, first.times.max())
    grid = np.arange(lo, hi, 0.002)
    idx = states_at(segments, grid)
    for k, colour in enumerate(STATE_COLOURS):
        axes[0].fill_between(grid, 0, 1, where=idx == k, color=colour, step="mid", linewidth=0, label=STATES[k])
    axes[0].set_yticks([])
    axes[0].set_xlim(lo, hi)
    axes[0].legend(ncol=4, fontsize=7, loc="upper right")
    axes[0].set_title(f"{record['name']}: systolic murmur grade {record['systolic_murmur_grade']} "
                      f"({record['systolic_murmur_shape']}), {record['cond_level']}; states from the corpus's table",
                      fontsize=9)
    for ax, m in zip(axes[1:], METHODS):
        r = readings[m]
        keep = (r.times >= lo) & (r.times <= hi)
        ax.plot(r.times[keep], r.relevance[keep], color="black", linewidth=0.9)
        ax.axhline(0, color="0.6", linewidth=0.6)
        systole = idx == 1
        ax.fill_between(grid, 0, 1, where=systole, color=STATE_COLOURS[1], alpha=0.35, step="mid", linewidth=0,
                        transform=ax.get_xaxis_transform())
        ax.set_xlim(lo, hi)
        ax.set_title(METHOD_LABELS[m], fontsize=8)
    axes[len(METHODS)].set_xlabel("seconds (systole shaded)")
    bar = axes[-1]
    g = results["summary"].get("murmur") or next(iter(results["summary"].values()))
    width = 0.8 / (len(METHODS) + 1)
    x = np.arange(len(STATES))
    bar.bar(x - 0.4 + width / 2, [g[METHODS[0]][f"time_{s}"] for s in STATES], width, color="0.7", label="share of time")
    for j, m in enumerate(METHODS, start=1):
        bar.bar(x - 0.4 + width * (j + 0.5), [g[m][f"share_{s}"] for s in STATES], width, label=METHOD_LABELS[m])
    bar.set_xticks(x, STATES)
    bar.set_ylabel("share of positive credit", fontsize=8)
    bar.legend(fontsize=7, ncol=2)
    bar.set_title(f"mean over {g['n_recordings']} recordings ({'murmur' if 'murmur' in results['summary'] else 'all'})",
                  fontsize=9)
    fig.tight_layout()
    save_png(fig, path, dpi=90)


def main(argv: list[str] | None = None) -> None:
    results = run(parse_args(argv))
    print(markdown(results))


if __name__ == "__main__":
    main()
