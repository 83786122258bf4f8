"""Speech explanations side by side (issue 33, after Becker et al. 2018): intrinsic, LRP, SHAP.

    python benchmarks/speech_explanations.py --corpus corpora/speech \\
        --explainable runs/speech-digit/models/explainable --black-box runs/speech-digit/models/black_box \\
        [--raw-black-box runs/speech-digit/models/black_box_raw] [--per-class 3] [--sevens 20] [--out benchmarks/results]

On clips of the corpus's held-out (test) voices, ``--per-class`` per class plus up to ``--sevens`` spoken
"seven"s, each clip explained for its true class by:

* ``intrinsic``: the explainable model's ``explain`` (exact concept contributions in logit space) and its
  concept timeline (``explain.timeline``, windows of the model's ``timeline_window_seconds`` every 10 ms);
  over time, a 10 ms slot gets the class's summed contributions in the window centred on it;
* ``lrp_spectrogram`` / ``lrp_waveform``: LRP (``explain.lrp``, epsilon rule) of the spectrogram black box and
  of the raw-waveform black box (when given), summed over frequency / over the samples of each 10 ms slot;
* ``shap_permutation`` / ``shap_deep``: SHAP of the spectrogram black box over ``--shap-time`` x ``--shap-freq``
  time-frequency segments (``explain.shap_baseline``), summed over frequency, spread over a segment's slots.

Measured, all in this one run:

1. cost: wall seconds per explanation (decoding included), 1 thread, median of ``--repeats`` interleaved
   repeats on ``--timing-clips`` clips, and the ratio of each method's median to the intrinsic one's;
2. conservation of LRP: the relevances' sum against the logit, per clip;
3. faithfulness without a human: deletion curves -- the 10 ms slots a method ranks highest are silenced
   first (samples set to 0, the model's own front-end then run), up to ``--delete-max`` of the clip, and the
   explained model's class logit is read; the mean drop over the curve against random orders; and the
   listenable part: the model's logit on only the top ``--listen-fraction`` of slots, and on the rest;
4. where in "seven" each method puts its positive relevance, against the corpus's phone spans
   (labels.csv: ``sibilant_start_s`` ...; ``offset_s`` is the word's start).

Writes ``speech_explanations.{json,md,png}`` (and the showcase seven's listenable parts as WAV files) to
``--out``, with every model's weights sha256.
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
import torch

import midlevel
from midlevel.audio import load_audio
from midlevel.datasets.spoken_corpus import DIGITS, SEXES, load_spoken_corpus
from midlevel.explain.listen import split_time
from midlevel.explain.over_time import time_interleaved
from midlevel.explain.lrp import DEFAULT_EPSILON, explain_lrp, frame_spans, lrp_listenable, lrp_network, relevance
from midlevel.explain.shap_baseline import explain_segments
from midlevel.explain.timeline import timeline
from midlevel.ioutil import atomic_write_text
from midlevel.model import AudioModel, TwoStageModel
from midlevel.zoo import weights_sha256

NAME = "speech_explanations"
SLOT = 0.01  # seconds: the unit every method's relevance over time is put on
SEVEN_PHONES = ("sibilant", "vowel_front", "fricative", "nasal")
METHOD_LABELS = {"intrinsic": "intrinsic (explain)", "intrinsic_timeline": "intrinsic + timeline",
                 "lrp_spectrogram": "LRP, spectrogram black box",
                 "lrp_spectrogram_with_setup": "LRP, spectrogram black box, network traced in the call", "lrp_waveform": "LRP, raw-waveform black box",
                 "shap_permutation": "SHAP permutation, spectrogram black box",
                 "shap_deep": "DeepSHAP, spectrogram black box", "black_box_forward": "(black box prediction only)"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="corpora/speech")
    p.add_argument("--explainable", required=True, help="explainable model folder or zoo name")
    p.add_argument("--black-box", required=True, help="spectrogram black-box folder or zoo name")
    p.add_argument("--raw-black-box", help="raw-waveform black-box folder or zoo name (optional)")
    p.add_argument("--per-class", type=int, default=3, help="held-out clips per class (distinct voices)")
    p.add_argument("--sevens", type=int, default=20, help="held-out 'seven's for the phone-span placement")
    p.add_argument("--timing-clips", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epsilon", type=float, default=DEFAULT_EPSILON)
    p.add_argument("--shap-time", type=int, default=24)
    p.add_argument("--shap-freq", type=int, default=4)
    p.add_argument("--shap-evals", type=int, default=500)
    p.add_argument("--delete-max", type=float, default=0.3, help="fraction of the clip silenced at the curve's end")
    p.add_argument("--delete-steps", type=int, default=12)
    p.add_argument("--random-orders", type=int, default=5)
    p.add_argument("--listen-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results")
    return p.parse_args(argv)


# -- clips --------------------------------------------------------------------------------------------------
def pick_clips(frame, classes: np.ndarray, n_classes: int, per_class: int, sevens: int, seed: int) -> list[int]:
    """Row indices: ``per_class`` per class from distinct voices, then more sevens up to ``sevens``."""
    rng = np.random.default_rng(seed)
    rows: list[int] = []
    for c in range(n_classes):
        idx = rng.permutation(np.flatnonzero(classes == c))
        seen: set[str] = set()
        for i in idx:
            if frame["speaker"].iloc[i] not in seen:
                rows.append(int(i))
                seen.add(frame["speaker"].iloc[i])
            if len(seen) == per_class:
                break
    if "word" in frame and sevens:
        have = [i for i in rows if frame["word"].iloc[i] == "seven"]
        more = [int(i) for i in rng.permutation(np.flatnonzero(frame["word"].to_numpy() == "seven")) if i not in rows]
        rows += more[:max(0, sevens - len(have))]
    return rows


# -- relevance over 10 ms slots -------------------------------------------------------------------------------
def slots_from_frames(per_frame: np.ndarray, n_slots: int) -> np.ndarray:
    """Spectrogram frame t is centred on t * 10 ms, the edge of slots t-1 and t: half to each."""
    out = np.zeros(n_slots)
    half = 0.5 * np.asarray(per_frame, dtype=np.float64)
    k = np.arange(len(half))
    np.add.at(out, np.clip(k - 1, 0, n_slots - 1), half)
    np.add.at(out, np.clip(k, 0, n_slots - 1), half)
    return out


def slots_from_shap(shap, class_name: str, n_slots: int, duration: float) -> np.ndarray:
    per_segment = shap.grid(class_name).sum(axis=0)  # (n_time,)
    seg = np.minimum(((np.arange(n_slots) + 0.5) * SLOT * shap.n_time / duration).astype(int), shap.n_time - 1)
    counts = np.bincount(seg, minlength=shap.n_time)
    return per_segment[seg] / counts[seg]


def slots_from_timeline(tl, c: int, n_slots: int) -> np.ndarray:
    """The class's summed concept contributions (window logit minus intercept) of the window centred nearest."""
    score = tl.contributions[:, c, :].sum(axis=-1)
    centres = tl.centres
    slot_centres = (np.arange(n_slots) + 0.5) * SLOT
    nearest = np.abs(slot_centres[:, None] - centres[None, :]).argmin(axis=1)
    return score[nearest]


# -- faithfulness -----------------------------------------------------------------------------------------
@torch.inference_mode()
def class_logits(model: AudioModel, waves: np.ndarray, c: int) -> np.ndarray:
    """(B,) the class logit of each (window-long) waveform, as the model computes it (concepts clipped)."""
    x = torch.from_numpy(np.ascontiguousarray(waves, dtype=np.float32))
    out = model(x)
    targets = out[1] if isinstance(model, TwoStageModel) else out
    return targets[:, c].double().numpy()


def silence_slots(samples: np.ndarray, slots: np.ndarray, sr: int) -> np.ndarray:
    out = samples.copy()
    n = int(round(SLOT * sr))
    for k in slots:
        out[k * n:(k + 1) * n] = 0.0
    return out


def deletion_curve(model: AudioModel, samples: np.ndarray, order: np.ndarray, c: int, steps: list[int], sr: int) -> np.ndarray:
    return class_logits(model, np.stack([silence_slots(samples, order[:k], sr) for k in steps]), c)


def deletion(model: AudioModel, samples: np.ndarray, scores: np.ndarray, c: int, steps: list[int], sr: int,
             rng: np.random.Generator, n_random: int) -> dict[str, Any]:
    order = np.argsort(-scores, kind="stable")
    curve = deletion_curve(model, samples, order, c, steps, sr)
    randoms = np.stack([deletion_curve(model, samples, rng.permutation(len(scores)), c, steps, sr)
                        for _ in range(n_random)])
    return {"curve": curve.tolist(), "random_curve": randoms.mean(0).tolist(),
            "mean_drop": float(np.mean(curve[0] - curve)), "random_mean_drop": float(np.mean(randoms[:, :1] - randoms))}


def listen_check(model: AudioModel, samples: np.ndarray, scores: np.ndarray, c: int, sr: int, fraction: float
                 ) -> dict[str, float]:
    """The class logit on the whole clip, on only its top ``fraction`` of slots, and on the rest."""
    k = max(1, int(round(fraction * len(scores))))
    keep = np.zeros(len(scores), dtype=bool)
    keep[np.argsort(-scores, kind="stable")[:k]] = True
    split = split_time(samples, sr, frame_spans(keep, SLOT), fade=0.002)
    full, part, rest = class_logits(model, np.stack([samples, split.part, split.rest]), c)
    return {"full": float(full), "part": float(part), "rest": float(rest)}


# -- placement in "seven" -------------------------------------------------------------------------------------
def placement(scores: np.ndarray, row) -> dict[str, Any]:
    """Shares of the positive relevance per phone span of the word, and where its mass and peak are."""
    pos = np.clip(scores, 0, None)
    centres = (np.arange(len(scores)) + 0.5) * SLOT
    start, length = float(row["offset_s"]), float(row["word_s"])
    in_word = (centres >= start) & (centres < start + length)
    total = pos.sum()
    out: dict[str, Any] = {"in_word": float(pos[in_word].sum() / total) if total > 0 else float("nan")}
    word_pos = pos * in_word
    if word_pos.sum() > 0:
        rel = (centres - start) / length
        out["centre_in_word"] = float((word_pos * rel).sum() / word_pos.sum())
        out["peak_in_word"] = float(rel[np.argmax(word_pos)])
    for phone in SEVEN_PHONES:
        a, b = row.get(f"{phone}_start_s"), row.get(f"{phone}_end_s")
        if a is None or not np.isfinite(a):
            continue
        inside = (centres >= a) & (centres < b)
        out[f"share_{phone}"] = float(word_pos[inside].sum() / word_pos.sum()) if word_pos.sum() > 0 else float("nan")
        out[f"duration_share_{phone}"] = float(min(b, start + length) - max(a, start)) / length
    return out


# -- timing ----------------------------------------------------------------------------------------------------
def time_methods(methods: dict[str, Callable[[Path], Any]], paths: list[Path], repeats: int) -> dict[str, Any]:
    """Median wall seconds per clip of each method (interleaved repeats, ``over_time.time_interleaved``), then
    the median over clips, and its ratio to the intrinsic explanation's."""
    timed = time_interleaved(methods, paths, repeats)
    base = np.asarray(timed["intrinsic"]["per_item_s"])
    return {m: {"median_s": v["median_s"], "per_clip_s": v["per_item_s"], "ratio_to_intrinsic": v["ratio_to_intrinsic"],
                "median_per_clip_ratio": float(np.median(np.asarray(v["per_item_s"]) / base))} for m, v in timed.items()}


def window_of(path: Path, sr: int, window: int) -> np.ndarray:
    """The clip's first model window (the corpus's clips are one window long), zero-padded."""
    samples = load_audio(path, sr, check_level=False).samples[:window]
    return np.pad(samples, (0, window - len(samples)))


# -- the run ---------------------------------------------------------------------------------------------------
def model_record(ref: str, model: AudioModel) -> dict[str, Any]:
    return {"path": str(ref), "name": model.name, "kind": model.config.kind, "backbone": model.config.backbone,
            "representation": getattr(model.config.frontend, "representation", "log_spectrogram"),
            "weights_sha256": weights_sha256(ref)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    explainable = midlevel.load(args.explainable)
    black_box = midlevel.load(args.black_box)
    raw = midlevel.load(args.raw_black_box) if args.raw_black_box else None
    if not isinstance(explainable, TwoStageModel):
        raise SystemExit(f"--explainable {args.explainable} is not an explainable (two-stage) model")
    names = list(explainable.config.target_names)
    task = "digit" if tuple(names) == DIGITS else "sex" if tuple(names) == SEXES else None
    if task is None:
        raise SystemExit(f"{explainable.name}'s classes {names} are neither the digits nor the sexes")
    for m in (black_box, raw):
        if m is not None and list(m.config.target_names) != names:
            raise SystemExit(f"{m.name}'s classes differ from {explainable.name}'s")
    test = load_spoken_corpus(args.corpus, task)["test"]
    rows = pick_clips(test.frame, test.classes, len(names), args.per_class, args.sevens if task == "digit" else 0,
                      args.seed)
    sr = explainable.config.sample_rate
    window = explainable.config.window_samples
    tl_window = float(explainable.config.metadata.get("timeline_window_seconds", 0.3))
    nets = {"lrp_spectrogram": lrp_network(black_box)}
    if raw is not None:
        nets["lrp_waveform"] = lrp_network(raw)
    models = {"intrinsic": explainable, "lrp_spectrogram": black_box, "shap_permutation": black_box,
              "shap_deep": black_box}
    if raw is not None:
        models["lrp_waveform"] = raw
    rng = np.random.default_rng(args.seed)
    n_slots = int(round(window / sr / SLOT))
    steps = sorted({int(round(s)) for s in np.linspace(0, args.delete_max * n_slots, args.delete_steps + 1)})
    clips_out = []
    showcase = None
    for i in rows:
        row = test.frame.iloc[i]
        path, c = test.paths[i], int(test.classes[i])
        samples = window_of(path, sr, window)
        duration = window / sr
        expl = explainable.explain(path)
        tl = timeline(explainable, path, window_seconds=tl_window, hop_seconds=SLOT)
        scores = {"intrinsic": slots_from_timeline(tl, c, n_slots)}
        lrps = {m: explain_lrp(models[m], path, target=c, epsilon=args.epsilon, net=nets[m]) for m in nets}
        scores["lrp_spectrogram"] = slots_from_frames(lrps["lrp_spectrogram"].over_time()[1], n_slots)
        if "lrp_waveform" in lrps:
            scores["lrp_waveform"] = lrps["lrp_waveform"].over_time(SLOT)[1][:n_slots]
        shaps = {m: explain_segments(black_box, path, method=m.split("_")[1], n_time=args.shap_time,
                                     n_freq=args.shap_freq, max_evals=args.shap_evals, seed=args.seed, progress=False)
                 for m in ("shap_permutation", "shap_deep")}
        for m, s in shaps.items():
            scores[m] = slots_from_shap(s, names[c], n_slots, duration)
        record: dict[str, Any] = {
            "file": str(row["file"]), "speaker": str(row["speaker"]), "class": names[c],
            "intrinsic": {"logit": float(expl.targets[c]), "intercept": float(expl.intercept[c]),
                          "contributions": dict(zip(expl.concept_names, map(float, expl.contributions[c]))),
                          "predicted": names[int(np.argmax(expl.targets))]},
            "lrp": {m: {k: v for k, v in e.data().items() if k in ("logit", "relevance_sum", "conservation_gap",
                                                                     "relative_gap")} for m, e in lrps.items()},
            "shap": {m: {"additivity_error": s.additivity_error(), "n_evaluations": s.n_evaluations,
                         "output": float(s.output[c])} for m, s in shaps.items()},
            "deletion": {m: deletion(models[m], samples, scores[m], c, steps, sr, rng, args.random_orders)
                         for m in scores},
            "listen": {m: listen_check(models[m], samples, scores[m], c, sr, args.listen_fraction) for m in scores},
        }
        if task == "digit" and row["word"] == "seven":
            record["placement"] = {m: placement(scores[m], row) for m in scores}
            sib = tl.series("sibilant") if "sibilant" in tl.concept_names else None
            if sib is not None:
                rel = (tl.centres[int(np.argmax(sib))] - row["offset_s"]) / row["word_s"]
                record["placement"]["intrinsic"]["sibilant_concept_peak_in_word"] = float(rel)
            if showcase is None:
                showcase = {"row": row, "path": path, "c": c, "tl": tl, "expl": expl, "lrps": lrps,
                            "shap": shaps["shap_permutation"], "scores": scores, "record": record}
        clips_out.append(record)
        print(f"{len(clips_out)}/{len(rows)} {row['file']}", file=sys.stderr, flush=True)

    # LRP at epsilon -> 0 is gradient x input (Ancona et al. 2018): checked live on one clip
    spec = black_box.frontend(torch.from_numpy(window_of(test.paths[rows[0]], sr, window))[None])
    x = spec.clone().requires_grad_()
    net = nets["lrp_spectrogram"]
    with torch.enable_grad():
        grad, = torch.autograd.grad(net(x)[0, int(test.classes[rows[0]])], x)
    lrp0, _ = relevance(net, spec, int(test.classes[rows[0]]), epsilon=1e-9)
    gxi_check = {"max_abs_difference": float((lrp0 - grad * spec).abs().max()),
                 "max_abs_relevance": float(lrp0.abs().max())}

    timing_paths = [test.paths[i] for i in rows[::max(1, len(rows) // args.timing_clips)][:args.timing_clips]]
    methods: dict[str, Callable[[Path], Any]] = {
        "intrinsic": lambda p: explainable.explain(p),
        "intrinsic_timeline": lambda p: timeline(explainable, p, window_seconds=tl_window, hop_seconds=SLOT),
        "lrp_spectrogram": lambda p: explain_lrp(black_box, p, epsilon=args.epsilon, net=nets["lrp_spectrogram"]),
        # the same, tracing and folding the network first (what one call without a prepared ``net`` costs)
        "lrp_spectrogram_with_setup": lambda p: explain_lrp(black_box, p, epsilon=args.epsilon),
        "shap_permutation": lambda p: explain_segments(black_box, p, method="permutation", n_time=args.shap_time,
                                                       n_freq=args.shap_freq, max_evals=args.shap_evals, progress=False),
        "shap_deep": lambda p: explain_segments(black_box, p, method="deep", n_time=args.shap_time,
                                                n_freq=args.shap_freq, progress=False),
        "black_box_forward": lambda p: black_box.predict(p),
    }
    if raw is not None:
        methods["lrp_waveform"] = lambda p: explain_lrp(raw, p, epsilon=args.epsilon, net=nets["lrp_waveform"])
    load = os.getloadavg()
    cost = time_methods(methods, timing_paths, args.repeats)
    load_after = os.getloadavg()

    results = {
        "benchmark": NAME, "task": task, "corpus": str(args.corpus), "split": "test (held-out voices)",
        "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "models": {"explainable": model_record(args.explainable, explainable),
                   "black_box": model_record(args.black_box, black_box),
                   **({"raw_black_box": model_record(args.raw_black_box, raw)} if raw is not None else {})},
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                        "load_average_before_timing": load, "load_average_after_timing": load_after},
        "deletion_steps_slots": steps, "slot_seconds": SLOT,
        "clips": clips_out, "gradient_x_input_check": gxi_check, "cost": cost,
        "showcase": showcase_record(showcase, names) if showcase is not None else None,
        "summary": summarise(clips_out, list(scores)),
        "seconds": time.perf_counter() - started,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{NAME}.json", json.dumps(results, indent=1, default=float) + "\n")
    atomic_write_text(out / f"{NAME}.md", markdown(results))
    if showcase is not None:
        figure(showcase, explainable, results, out / f"{NAME}.png")
        listen_dir = out / f"{NAME}_listen"
        listen_dir.mkdir(exist_ok=True)
        for m, e in showcase["lrps"].items():
            for part in lrp_listenable(models[m], showcase["path"], e, fraction=args.listen_fraction):
                part.write(listen_dir, f"seven_{m}_{part.kind}")
    return results


def showcase_record(show: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The first seven side by side: the intrinsic terms, SHAP's top segments, where LRP's relevance is."""
    c, expl = show["c"], show["expl"]
    terms = sorted(zip(expl.concept_names, map(float, expl.contributions[c])), key=lambda kv: -abs(kv[1]))
    out: dict[str, Any] = {"file": str(show["row"]["file"]), "class": names[c],
                           "intrinsic": {"logit": float(expl.targets[c]), "intercept": float(expl.intercept[c]),
                                         "terms": terms},
                           "shap_top": show["shap"].top(5, names[c])[["segment", "shap"]].values.tolist()}
    spec = show["lrps"]["lrp_spectrogram"]
    bands = np.array_split(np.arange(len(spec.frequencies)), 4)
    out["lrp_spectrogram_by_band"] = [
        [f"{spec.frequencies[b[0]]:.0f}-{spec.frequencies[b[-1]]:.0f} Hz", float(spec.relevance[b].sum())] for b in bands]
    return out


def summarise(clips: list[dict[str, Any]], methods: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"n_clips": len(clips), "methods": {}}
    for m in methods:
        dels = [c["deletion"][m] for c in clips]
        lis = [c["listen"][m] for c in clips]
        s: dict[str, Any] = {
            "deletion_mean_drop": float(np.mean([d["mean_drop"] for d in dels])),
            "random_mean_drop": float(np.mean([d["random_mean_drop"] for d in dels])),
            "deletion_mean_curve": np.mean([d["curve"] for d in dels], axis=0).tolist(),
            "random_mean_curve": np.mean([d["random_curve"] for d in dels], axis=0).tolist(),
            "listen_full": float(np.mean([x["full"] for x in lis])),
            "listen_part": float(np.mean([x["part"] for x in lis])),
            "listen_rest": float(np.mean([x["rest"] for x in lis])),
        }
        s["deletion_vs_random"] = s["deletion_mean_drop"] / s["random_mean_drop"] if s["random_mean_drop"] else float("nan")
        sevens = [c["placement"][m] for c in clips if "placement" in c]
        if sevens:
            keys = sorted({k for p in sevens for k in p})
            s["seven"] = {"n": len(sevens), **{k: float(np.nanmedian([p.get(k, np.nan) for p in sevens])) for k in keys}}
            peaks = [p["peak_in_word"] for p in sevens if "peak_in_word" in p]
            s["seven"]["peak_in_first_quarter"] = float(np.mean(np.asarray(peaks) < 0.25)) if peaks else float("nan")
            if m == "intrinsic":
                sib = [p["sibilant_concept_peak_in_word"] for p in sevens if "sibilant_concept_peak_in_word" in p]
                if sib:
                    s["seven"]["sibilant_concept_peak_in_first_quarter"] = float(np.mean(np.asarray(sib) < 0.25))
        out["methods"][m] = s
    for m in ("lrp_spectrogram", "lrp_waveform"):
        recs = [c["lrp"][m] for c in clips if m in c["lrp"]]
        if recs:
            out["methods"][m]["conservation"] = {
                "median_logit": float(np.median([r["logit"] for r in recs])),
                "median_relevance_sum": float(np.median([r["relevance_sum"] for r in recs])),
                "median_relative_gap": float(np.median([r["relative_gap"] for r in recs])),
                "max_abs_relative_gap": float(np.max(np.abs([r["relative_gap"] for r in recs])))}
    for m in ("shap_permutation", "shap_deep"):
        out["methods"][m]["max_additivity_error"] = float(max(c["shap"][m]["additivity_error"] for c in clips))
    out["intrinsic_accuracy"] = float(np.mean([c["intrinsic"]["predicted"] == c["class"] for c in clips]))
    return out


def markdown(r: dict[str, Any]) -> str:
    s, cost = r["summary"], r["cost"]
    env = r["environment"]
    lines = [f"# Speech explanations: intrinsic, LRP and SHAP ({r['task']} task)", "",
             f"`benchmarks/speech_explanations.py` on {s['n_clips']} clips of the held-out voices of `{r['corpus']}`; "
             f"{env['threads']} thread(s), load average {env['load_average_before_timing'][0]:.2f} before the timing "
             f"and {env['load_average_after_timing'][0]:.2f} after; one run, {r['seconds']:.0f} s.", "", "Models:", ""]
    for k, m in r["models"].items():
        lines.append(f"- {k}: `{m['path']}` ({m['name']}, {m['backbone']}), sha256 `{m['weights_sha256'][:16]}...`")
    lines += ["", "## Cost (wall seconds per explanation, decoding included)", "",
              "| method | median s | x intrinsic |", "|---|---|---|"]
    for m, c in sorted(cost.items(), key=lambda kv: kv[1]["median_s"]):
        lines.append(f"| {METHOD_LABELS.get(m, m)} | {c['median_s']:.4f} | {c['ratio_to_intrinsic']:.1f} |")
    lines += ["", f"Median of {r['settings']['repeats']} interleaved repeats per clip on "
              f"{len(next(iter(cost.values()))['per_clip_s'])} clips, then the median over clips. SHAP permutation: "
              f"{r['settings']['shap_time']} x {r['settings']['shap_freq']} segments, max_evals "
              f"{r['settings']['shap_evals']}.", "",
              "## Faithfulness: deletion of 10 ms slots, most relevant first", "",
              f"Mean drop of the explained class's logit over the curve (0 to {r['settings']['delete_max']:.0%} of the "
              f"clip silenced), against {r['settings']['random_orders']} random orders on the same model; "
              f"and the logit on only the top {r['settings']['listen_fraction']:.0%} of slots (the listenable part) "
              "and on the rest.", "",
              "| method | model | mean drop | random | ratio | logit: clip | top part only | rest |",
              "|---|---|---|---|---|---|---|---|"]
    model_of = {"intrinsic": "explainable", "lrp_spectrogram": "spectrogram BB", "lrp_waveform": "waveform BB",
                "shap_permutation": "spectrogram BB", "shap_deep": "spectrogram BB"}
    for m, v in s["methods"].items():
        lines.append(f"| {METHOD_LABELS.get(m, m)} | {model_of.get(m, '')} | {v['deletion_mean_drop']:.2f} | "
                     f"{v['random_mean_drop']:.2f} | {v['deletion_vs_random']:.1f} | {v['listen_full']:.2f} | "
                     f"{v['listen_part']:.2f} | {v['listen_rest']:.2f} |")
    lines += ["", "## LRP conservation (sum of relevances vs the logit)", "",
              "| model | median logit | median relevance sum | median (logit - sum) / logit | max abs |",
              "|---|---|---|---|---|"]
    for m in ("lrp_spectrogram", "lrp_waveform"):
        if m in s["methods"] and "conservation" in s["methods"][m]:
            c = s["methods"][m]["conservation"]
            lines.append(f"| {METHOD_LABELS[m]} | {c['median_logit']:.2f} | {c['median_relevance_sum']:.3f} | "
                         f"{c['median_relative_gap']:.3f} | {c['max_abs_relative_gap']:.3f} |")
    g = r["gradient_x_input_check"]
    lines += ["", f"LRP with epsilon 1e-9 against gradient x input on one clip: max |difference| "
              f"{g['max_abs_difference']:.2e} (max |relevance| {g['max_abs_relevance']:.2e}). SHAP additivity error: "
              + ", ".join(f"{m} {s['methods'][m]['max_additivity_error']:.1e}" for m in ("shap_permutation", "shap_deep"))
              + "."]
    show = r.get("showcase")
    if show:
        terms = ", ".join(f"{k} {v:+.2f}" for k, v in show["intrinsic"]["terms"][:5])
        shap_top = ", ".join(f"{seg} {v:+.2f}" for seg, v in show["shap_top"])
        by_band = ", ".join(f"{b} {v:+.2f}" for b, v in show["lrp_spectrogram_by_band"])
        lines += ["", f"## One held-out \"seven\" side by side (`{Path(show['file']).name}`)", "",
                  f"- intrinsic: logit {show['intrinsic']['logit']:.2f} = intercept "
                  f"{show['intrinsic']['intercept']:+.2f} + terms; the largest: {terms}",
                  f"- SHAP (permutation) of the black box, top segments: {shap_top}",
                  f"- LRP of the black box, relevance per quarter of the bands: {by_band}"]
    sev = {m: v["seven"] for m, v in s["methods"].items() if "seven" in v}
    if sev:
        n = next(iter(sev.values()))["n"]
        lines += ["", f"## Where the relevance for \"seven\" lies ({n} sevens, medians)", "",
                  "Share of the positive relevance inside the word, and of that, inside each phone's labelled span "
                  "(the span's share of the word's duration in brackets); centre of mass and peak as fractions "
                  "of the word.", "",
                  "| method | in word | /s/ | /e/ | /v/ | /n/ | centre | peak | peak in 1st quarter |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for m, v in sev.items():
            cells = [f"{v.get('share_' + p, float('nan')):.2f} ({v.get('duration_share_' + p, float('nan')):.2f})"
                     for p in SEVEN_PHONES]
            lines.append(f"| {METHOD_LABELS.get(m, m)} | {v.get('in_word', float('nan')):.2f} | " + " | ".join(cells)
                         + f" | {v.get('centre_in_word', float('nan')):.2f} | {v.get('peak_in_word', float('nan')):.2f} | "
                         f"{v['peak_in_first_quarter']:.0%} |")
        if "sibilant_concept_peak_in_first_quarter" in sev.get("intrinsic", {}):
            lines += ["", f"The explainable model's `sibilant` concept timeline peaks in the word's first quarter on "
                      f"{sev['intrinsic']['sibilant_concept_peak_in_first_quarter']:.0%} of the sevens."]
    return "\n".join(lines) + "\n"


def figure(show: dict[str, Any], explainable: TwoStageModel, results: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    from midlevel.explain.views_plotting import diverging_norm, draw_spectrogram
    from midlevel.plotting import save_png

    row, c, tl, lrps, shap = show["row"], show["c"], show["tl"], show["lrps"], show["shap"]
    name = tl.target_names[c]
    spec = lrps["lrp_spectrogram"]
    n_rows = 5 if "lrp_waveform" in lrps else 4
    fig = Figure(figsize=(10, 2.1 * n_rows + 2.4))
    axes = fig.subplots(n_rows + 1, 1)
    draw_spectrogram(axes[0], spec, spec.display, cmap="magma")
    axes[0].set_title(f"{Path(str(row['file'])).name}: a held-out \"seven\"; phone spans from the corpus", fontsize=9)
    colours = {"sibilant": "cyan", "vowel_front": "white", "fricative": "lime", "nasal": "orange"}
    for ax in axes[:n_rows]:
        for phone, col in colours.items():
            a, b = row.get(f"{phone}_start_s"), row.get(f"{phone}_end_s")
            if a is not None and np.isfinite(a):
                ax.axvspan(a, b, color=col, alpha=0.15, linewidth=0)
    a = axes[1]
    a.plot(tl.centres, tl.contributions[:, c, :].sum(-1), color="black", label=f"{name}: window logit - intercept")
    a2 = a.twinx()
    for concept, col in (("sibilant", "tab:cyan"), ("fricative", "tab:green"), ("nasal", "tab:orange")):
        if concept in tl.concept_names:
            a2.plot(tl.centres, tl.series(concept), color=col, linewidth=0.9, label=concept)
    a2.set_ylim(-0.05, 1.05)
    a2.set_ylabel("concept", fontsize=8)
    a.set_title(f"intrinsic: concept timeline ({tl.window_seconds:g} s windows every 10 ms); "
                f"clip logit {show['expl'].targets[c]:.2f}", fontsize=9)
    a.legend(loc="upper left", fontsize=7)
    a2.legend(loc="upper right", fontsize=7)
    norm = diverging_norm(spec.relevance)
    draw_spectrogram(axes[2], spec, spec.relevance, cmap="RdBu_r", norm=norm)
    axes[2].set_title(f"LRP (epsilon {spec.epsilon:g}) of the spectrogram black box: {name}, logit {spec.output:.2f}, "
                      f"relevance sum {spec.relevance_sum:.2f}", fontsize=9)
    grid = shap.grid(name)
    edges_t = np.linspace(0, spec.duration, shap.n_time + 1)
    f = spec.frequencies
    f_edges = np.r_[f[0] * 0.97, [f[len(f) * k // shap.n_freq] for k in range(1, shap.n_freq)], f[-1] * 1.03]
    axes[3].pcolormesh(edges_t, f_edges, grid, cmap="RdBu_r", norm=diverging_norm(grid))
    axes[3].set_yscale("log")
    axes[3].set_ylabel("frequency (Hz)", fontsize=8)
    axes[3].set_title(f"SHAP (permutation, {shap.n_time} x {shap.n_freq} segments) of the spectrogram black box: "
                      f"sum {shap.values[c].sum():.2f} + expected {shap.expected_value[c]:.2f}", fontsize=9)
    if "lrp_waveform" in lrps:
        w = lrps["lrp_waveform"]
        t, per = w.over_time(SLOT)
        axes[4].bar(t, per, width=SLOT, color=np.where(per > 0, "tab:red", "tab:blue"))
        axes[4].set_title(f"LRP of the raw-waveform black box, per 10 ms: logit {w.output:.2f}, relevance sum "
                          f"{w.relevance_sum:.2f}", fontsize=9)
    for ax in axes[:n_rows]:
        ax.set_xlim(0, spec.duration)
    axes[n_rows - 1].set_xlabel("time (s)")
    d = axes[n_rows]
    steps = np.asarray(results["deletion_steps_slots"]) * SLOT / spec.duration
    for m, v in results["summary"]["methods"].items():
        curve = np.asarray(v["deletion_mean_curve"])
        rnd = np.asarray(v["random_mean_curve"])
        line, = d.plot(steps, curve - curve[0], label=METHOD_LABELS.get(m, m))
        d.plot(steps, rnd - rnd[0], color=line.get_color(), linestyle=":", linewidth=0.8)
    d.set_xlabel("fraction of the clip silenced (most relevant 10 ms first; dotted: random order)")
    d.set_ylabel("class logit change", fontsize=8)
    d.legend(fontsize=7, ncol=2)
    d.set_title(f"deletion curves, mean over {results['summary']['n_clips']} held-out clips", fontsize=9)
    fig.tight_layout()
    save_png(fig, path, dpi=90)


def main(argv: list[str] | None = None) -> None:
    results = run(parse_args(argv))
    print(markdown(results))


if __name__ == "__main__":
    main()
