"""Intrinsic explanations vs post-hoc SHAP, side by side on a corpus's test split (issue 6).

    python benchmarks/intrinsic_vs_shap.py --corpus DIR [--models DIR_OR_NAMES] [--n 200] [--out benchmarks/results]

For every explainable (two-stage) model and its black-box counterpart (the A2E model with the
same backbone), on ``--n`` test clips:

1. accuracy: mean Pearson r per target -- two-stage model, an MLP head on the same predicted
   concepts, and the black box (the cost of interpretability);
2. truth: per emotion, Spearman r between global concept importance (mean |attribution|) and
   |generating coefficient| from the corpus's ``ground_truth.json`` (concept-level methods only);
3. faithfulness: deletion curves (most credited concepts/segments replaced by the baseline
   first), area under the output drop vs random orders;
4. stability: cosine similarity of each explanation after 30 dB SNR noise, 3 dB gain, 50 ms shift;
5. cost: median wall and CPU seconds per explanation, and the ratio to the intrinsic one on the
   same clips, all timed in this one run (interleaved, single-threaded by default).

Intrinsic attributions are the head's contributions centred on the training concepts' mean,
i.e. the head's exact SHAP values, so they are on the same footing as SHAP's. ``--models`` is a
``train_family`` output folder, a model folder, or comma-separated folders / zoo names; without
it a quick family is trained into ``OUT/family`` first. Writes ``intrinsic_vs_shap.json``,
``intrinsic_vs_shap.md`` and ``intrinsic_vs_shap.png`` to ``--out``, and the weights' sha256 of every
model, so the cards that quote the file can be checked against the shipped checkpoints.

Input-space SHAP is the slow part (about 10 s per clip at the default budget on 2 cores): each
clip's results are written to ``OUT/.partial/`` as they are done, and a run started again with
the same weights and settings reads them back instead of recomputing (resume after a kill).
``--merge`` measures only the models it is given and keeps the others from the existing
``intrinsic_vs_shap.json`` (same clips and settings, checked), so a model added to the zoo does not
mean running the whole benchmark again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from midlevel import load
from midlevel.audio import load_audio
from midlevel.backbones import trained_network
from midlevel.explain.mlp_head import MLPHead
from midlevel.explain.shap_baseline import ADDITIVITY_TOLERANCE, METHODS, explain_segments, gradient_based_method
from midlevel.explain.shap_concepts import concept_shap, exact_head_shap, head_function
from midlevel.explain.shap_measures import (PERTURBATIONS, concept_value, cosine_similarity, deletion_auc, perturb,
                                            read_generating_coefficients, truth_agreement)
from midlevel.explain.shap_plot import plot_side_by_side
from midlevel.explain.shap_segments import TimeFrequencySegments
from midlevel.ioutil import atomic_write_text
from midlevel.model import AudioModel, BlackBoxModel, TwoStageModel
from midlevel.training.cache import cached_log_spectrograms
from midlevel.training.data import load_splits
from midlevel.training.loops import ArraySet, TrainSettings, network_outputs
from midlevel.training.metrics import pearson_per_column
from midlevel.zoo import REGISTRY, weights_sha256

NAME = "intrinsic_vs_shap"
CONCEPT_METHODS = {"intrinsic": "intrinsic (head terms, centred)", "mlp_shap": "MLP head + permutation SHAP"}
PERTURBATION_LABELS = {"noise_30db": "noise 30 dB SNR", "gain_3db": "gain +3 dB", "shift_50ms": "shift 50 ms"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True, help="corpus root (Mid-level layout, split column, ground_truth.json)")
    p.add_argument("--background-corpus", help="corpus whose train split is SHAP's background and the MLP head's "
                   "training data (default: --corpus; needed when --corpus is a held-out, test-only corpus)")
    p.add_argument("--models", help="train_family folder, model folder(s) or zoo names, comma-separated "
                                    "(default: train a quick family into OUT/family)")
    p.add_argument("--n", type=int, default=200, help="test clips (all if fewer)")
    p.add_argument("--n-stability", type=int, default=50, help="of those, clips re-explained after each perturbation")
    p.add_argument("--n-timing", type=int, default=5, help="of those, clips every variant is timed on")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--segments", default="8x4", help="time x frequency segments of input-space SHAP")
    p.add_argument("--max-evals", type=int, default=500, help="masked inputs per permutation/partition explanation")
    p.add_argument("--gradient-samples", type=int, default=16,
                   help="expected-gradient samples per window and target (GradientSHAP, for backbones DeepSHAP cannot read)")
    p.add_argument("--gradient-sweep", default="16,64,200",
                   help="expected-gradient sample counts whose cost and additivity error are measured on the timing "
                        "clips (200: shap's default)")
    p.add_argument("--deletion-steps", type=int, default=8, help="points on a segment deletion curve")
    p.add_argument("--cache-dir", help="spectrogram cache (default: FAMILY/cache, else OUT/cache)")
    p.add_argument("--train-epochs", type=int, default=3, help="epochs of the quick family (without --models)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: steadiest timings on a shared machine, and SHAP's large batches "
                        "cannot profit from parallelism more than the intrinsic single pass does)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--merge", action="store_true",
                   help="keep the results of the models in OUT/intrinsic_vs_shap.json that this run does not "
                        "measure (an earlier run on the same clips with the same SHAP settings), so a model "
                        "added to the zoo is measured without re-running the others; each model's cost ratios "
                        "stay those timed in its own run")
    p.add_argument("--shard", metavar="I/N", help="only compute the black boxes' per-clip SHAP records of clips "
                   "i with i %% N == I and stop (run N shards side by side, one per core, then the whole "
                   "benchmark once: it reads their records back)")
    args = p.parse_args(argv)
    if args.shard:
        try:
            index, count = (int(v) for v in args.shard.split("/"))
        except ValueError:
            p.error(f"--shard must look like 0/2; got {args.shard!r}")
        if not 0 <= index < count:
            p.error(f"--shard {args.shard}: I must be in [0, N)")
        args.shard = (index, count)
    return args


# -- models and data ---------------------------------------------------------------------------
def find_models(args: argparse.Namespace, out: Path) -> tuple[dict[str, AudioModel], dict[str, str], Path]:
    """Models by name, their weights' sha256 by name, and the folder of the family they came from
    (for its spectrogram cache)."""
    if not args.models:
        from midlevel.training.recipes import train_family

        family = out / "family"
        train_family(args.corpus, family, settings=TrainSettings(epochs=args.train_epochs, seed=args.seed))
        return find_models(argparse.Namespace(**{**vars(args), "models": str(family)}), out)
    first = Path(args.models.split(",")[0])
    if (first / "models").is_dir():
        folders = sorted(p for p in (first / "models").iterdir() if (p / "config.json").is_file())
        return {p.name: load(p) for p in folders}, {p.name: weights_sha256(p) for p in folders}, first
    models, sha256 = {}, {}
    for spec in args.models.split(","):
        model = load(spec)
        name = model.name if model.config.name else Path(spec).name
        models[name], sha256[name] = model, weights_sha256(spec)
    return models, sha256, out


def pick_clips(clips, n: int, seed: int):
    """The first n clips of a seeded shuffle (all of them if n is larger)."""
    order = np.sort(np.random.default_rng(seed).permutation(len(clips))[:n])
    return [clips.paths[i] for i in order], clips.targets[order]


def train_concepts(model: TwoStageModel, train, cache_dir: Path) -> np.ndarray:
    """The model's predicted concepts on the training clips: SHAP background and MLP inputs."""
    logspec = cached_log_spectrograms(train.paths, model.frontend, model.config.window_samples, cache_dir)
    return network_outputs(model, ArraySet(logspec))


def r_table(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> dict[str, float]:
    r = pearson_per_column(y_true, y_pred)
    return {**{n: float(v) for n, v in zip(names, r)}, "mean": float(np.nanmean(r))}


def truth(attr: dict[str, np.ndarray], coefficients: np.ndarray, targets: list[str]) -> dict[str, dict[str, float]]:
    """Per concept-level method: Spearman r of mean |attribution| vs |coefficient| per target."""
    rows = {}
    for method, values in attr.items():
        rho = truth_agreement(np.abs(values).mean(0), coefficients)
        rows[method] = {**dict(zip(targets, map(float, rho))), "mean": float(np.nanmean(rho))}
    return rows


def summary(ranked: list[np.ndarray], random: list[np.ndarray]) -> dict[str, float]:
    """Deletion areas averaged over clips and targets, and how much the ranking beats random orders."""
    auc, rnd = float(np.mean(ranked)), float(np.mean(random))
    return {"auc": auc, "random_auc": rnd, "gain": auc - rnd}


def segment_options(args: argparse.Namespace) -> dict[str, Any]:
    n_time, n_freq = (int(v) for v in args.segments.split("x"))
    return dict(n_time=n_time, n_freq=n_freq, max_evals=args.max_evals, seed=args.seed, progress=False,
                gradient_samples=args.gradient_samples)


# -- the two sides -----------------------------------------------------------------------------
def black_box_methods(bb: BlackBoxModel) -> tuple[str, ...]:
    """Permutation and partition SHAP, and DeepSHAP where its rules cover the backbone, else expected gradients."""
    return ("permutation", "partition", gradient_based_method(bb))


def black_box_clip(bb: BlackBoxModel, path: Path, i: int, stable: bool, args: argparse.Namespace) -> dict[str, Any]:
    """Every method's explanation of one clip, its deletion curves and (if ``stable``) its stability."""
    kw = segment_options(args)
    segments = TimeFrequencySegments.from_audio(bb, path, n_time=kw["n_time"], n_freq=kw["n_freq"])
    record: dict[str, Any] = {}
    for method in black_box_methods(bb):
        e = explain_segments(bb, path, method=method, **kw)
        ranked, rnd = deletion_auc(lambda keep: segments.value(bb, keep), e.values,
                                   steps=args.deletion_steps, n_random=4, seed=args.seed + i)
        record[method] = {"values": e.values.tolist(), "output": e.output.tolist(), "n_evaluations": int(e.n_evaluations),
                          "additivity_error": float(e.additivity_error()), "ranked": ranked.tolist(), "random": rnd.tolist(),
                          "stability": {}}
    if stable:
        clip = load_audio(path, bb.config.sample_rate)
        for kind in PERTURBATIONS:
            moved = perturb(clip.samples, clip.sample_rate, kind, seed=args.seed + i)
            for method in record:
                e = explain_segments(bb, moved, method=method, sample_rate=clip.sample_rate, **kw)
                record[method]["stability"][kind] = float(cosine_similarity(e.values, np.array(record[method]["values"])))
    return record


def clip_records(bb: BlackBoxModel, sha256: str, paths: list[Path], n_stab: int, args: argparse.Namespace,
                 partial: Path) -> list[dict[str, Any]]:
    """Per-clip results, each written to ``partial`` as it is done, so a killed run resumes where it stopped.

    The folder is keyed by the weights and every setting that changes a clip's numbers; a record
    written under other settings is never reused. With ``--shard I/N`` only clips ``i % N == I``
    are computed (and returned).
    """
    key = json.dumps({"sha256": sha256, "methods": black_box_methods(bb)}
                     | {k: getattr(args, k) for k in ("segments", "max_evals", "gradient_samples", "deletion_steps",
                                                      "seed")}, sort_keys=True)
    folder = partial / bb.name / hashlib.sha256(key.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "settings.json", key + "\n")
    records, warm = [], False
    mine = [i for i in range(len(paths)) if not args.shard or i % args.shard[1] == args.shard[0]]
    for i in tqdm(mine, desc=f"SHAP of {bb.name}", unit="clip"):
        path = paths[i]
        file = folder / f"{i:04d}-{Path(path).stem}.json"
        record = json.loads(file.read_text()) if file.is_file() else None
        if record is None or (i < n_stab and not next(iter(record.values()))["stability"]):
            if not warm:  # numba compiles shap's maskers once per process: not inside a clip's numbers
                for method in black_box_methods(bb):
                    explain_segments(bb, paths[0], method=method, **segment_options(args))
                warm = True
            record = black_box_clip(bb, path, i, i < n_stab, args)
            atomic_write_text(file, json.dumps(record) + "\n")
        records.append(record)
    return records


def run_black_box(bb: BlackBoxModel, sha256: str, paths: list[Path], targets: np.ndarray, n_stab: int,
                  args: argparse.Namespace, partial: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Input-space SHAP of one black box on every clip: accuracy, faithfulness, stability.

    Returns the summary and the first clip's explanation per method (for the plot).
    """
    methods = black_box_methods(bb)
    records = clip_records(bb, sha256, paths, n_stab, args, partial)
    outputs = np.stack([r[methods[0]]["output"] for r in records])
    result = {
        "accuracy": r_table(targets, outputs, list(bb.config.target_names)),
        "faithfulness": {m: summary([np.array(r[m]["ranked"]) for r in records],
                                    [np.array(r[m]["random"]) for r in records]) for m in methods},
        "stability": {m: {k: float(np.mean([r[m]["stability"][k] for r in records[:n_stab]])) for k in PERTURBATIONS}
                      for m in methods},
        "evaluations": {m: float(np.mean([r[m]["n_evaluations"] for r in records])) for m in methods},
        "additivity_error": {m: max(r[m]["additivity_error"] for r in records) for m in methods},
    }
    first = {m: explain_segments(bb, paths[0], method=m, **segment_options(args)) for m in methods}
    return result, first


def run_two_stage(model: TwoStageModel, paths: list[Path], targets: np.ndarray, background: np.ndarray,
                  train_targets: np.ndarray, coefficients: np.ndarray | None, n_stab: int,
                  args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], MLPHead]:
    """Intrinsic explanations vs an MLP head + SHAP on the same predicted concepts."""
    names, tnames = list(model.config.concept_names), list(model.config.target_names)
    mlp = MLPHead(names, tnames, seed=args.seed).fit(background, train_targets)
    explanations = [model.explain(path) for path in tqdm(paths, desc=f"explain {model.name}", unit="clip")]
    concepts = np.stack([e.concepts for e in explanations])

    def attributions(c: np.ndarray, progress: bool = False) -> dict[str, np.ndarray]:
        """Intrinsic and MLP + SHAP attributions, (N, T, K) each."""
        shap_values = concept_shap(mlp.predict, c, background, concept_names=names, target_names=tnames,
                                   seed=args.seed, progress=progress)
        return {"intrinsic": exact_head_shap(model.head, c, background), "mlp_shap": shap_values.values}

    attr = attributions(concepts, progress=True)
    functions = {"intrinsic": head_function(model.head), "mlp_shap": mlp.predict}
    faith = {m: ([], []) for m in CONCEPT_METHODS}
    for i, c in enumerate(concepts):
        for m in CONCEPT_METHODS:
            ranked, rnd = deletion_auc(concept_value(functions[m], c, background), attr[m][i], seed=args.seed + i)
            faith[m][0].append(ranked)
            faith[m][1].append(rnd)
    stability = {m: {p: [] for p in PERTURBATIONS} for m in CONCEPT_METHODS}
    for i, path in enumerate(tqdm(paths[:n_stab], desc=f"stability {model.name}", unit="clip")):
        clip = load_audio(path, model.config.sample_rate)
        for kind in PERTURBATIONS:
            moved = model.explain(perturb(clip.samples, clip.sample_rate, kind, seed=args.seed + i),
                                  sample_rate=clip.sample_rate)
            again = attributions(moved.concepts[None])
            for m in CONCEPT_METHODS:
                stability[m][kind].append(cosine_similarity(again[m][0], attr[m][i]))
    result = {
        "accuracy": {"intrinsic": r_table(targets, np.stack([e.targets for e in explanations]), tnames),
                     "mlp_head": r_table(targets, mlp.predict(concepts), tnames)},
        "truth": truth(attr, coefficients, tnames) if coefficients is not None else None,
        "faithfulness": {m: summary(*faith[m]) for m in CONCEPT_METHODS},
        "stability": {m: {k: float(np.mean(v)) for k, v in stability[m].items()} for m in CONCEPT_METHODS},
    }
    first_clip = {"explanation": explanations[0], "intrinsic": attr["intrinsic"][0], "mlp_shap": attr["mlp_shap"][0]}
    return result, first_clip, mlp


# -- cost --------------------------------------------------------------------------------------
def timed(fn, repeats: int = 1, warmup: int = 0) -> tuple[float, float]:
    """Median wall and CPU (this process, all threads) seconds of ``repeats`` calls of ``fn``, after
    ``warmup`` untimed calls (a 20 ms call right after seconds of SHAP work otherwise pays for the
    caches and allocator state that work left behind: 24-33 ms measured vs 20 ms warm)."""
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return float(np.median(walls)), float(np.median(cpus))


def measure_cost(two_stage: dict[str, TwoStageModel], mlps: dict[str, MLPHead], backgrounds: dict[str, np.ndarray],
                 black_boxes: dict[str, BlackBoxModel], counterparts: dict[str, str | None], paths: list[Path],
                 additivity: dict[str, dict[str, float]], args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per explanation of every variant, interleaved clip by clip so that load from
    elsewhere on the machine hits all of them alike; ratios to the intrinsic one per clip.

    CPU time is reported beside wall time: on a shared machine it is the steadier of the two.
    ``additivity`` is each black box's largest additivity error per method over the test clips:
    the cheapest black-box variant is taken among those whose values sum to the output
    (``ADDITIVITY_TOLERANCE``; the issue asks for attributions "summing to output minus expected
    value", so a variant that misses by more is cheaper only because it is not yet an explanation);
    the cheapest of all is reported beside it with its error.
    """
    kw = segment_options(args)
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for path in tqdm(paths, desc="cost", unit="clip"):
        for name, model in two_stage.items():
            times.setdefault((name, "intrinsic"), []).append(timed(lambda: model.explain(path), repeats=5, warmup=1))
            times.setdefault((name, "mlp_shap"), []).append(timed(lambda: concept_shap(
                mlps[name].predict, model.explain(path).concepts[None], backgrounds[name], seed=args.seed,
                concept_names=model.config.concept_names, target_names=model.config.target_names, progress=False),
                warmup=1))
        for name, bb in black_boxes.items():
            for method in black_box_methods(bb):
                times.setdefault((name, method), []).append(timed(lambda: explain_segments(bb, path, method=method, **kw)))
    seconds: dict[str, dict[str, dict[str, float]]] = {}
    for (owner, variant), values in times.items():
        wall, cpu = np.median(values, axis=0)
        seconds.setdefault(owner, {})[variant] = {"wall": float(wall), "cpu": float(cpu)}
    ratios = {}
    for name in two_stage:
        base = np.array(times[name, "intrinsic"])
        variants = {"mlp_shap": times[name, "mlp_shap"]}
        if counterparts[name]:
            variants |= {m: times[counterparts[name], m] for m in METHODS if (counterparts[name], m) in times}
        ratios[name] = {v: dict(zip(("wall", "cpu"), map(float, np.median(np.array(t) / base, axis=0))))
                        for v, t in variants.items()}
    def cheapest(name: str, additive_only: bool) -> dict[str, Any] | None:
        r, owner = ratios[name], counterparts[name]
        errors = additivity.get(owner, {})
        ok = [v for v in r if v in METHODS and (not additive_only or errors[v] <= ADDITIVITY_TOLERANCE)]
        m = min(ok, key=lambda v: r[v]["wall"], default=None)
        return None if m is None else {"method": m, **r[m], "additivity_error": errors[m]}

    return {"clips": len(paths), "intrinsic_repeats": 5, "warmup_calls": {"intrinsic": 1, "mlp_shap": 1, "black_box_shap": 0},
            "seconds": seconds, "ratios": ratios,
            "additivity_tolerance": ADDITIVITY_TOLERANCE,
            "cheapest_black_box_shap": {n: c for n in two_stage if (c := cheapest(n, True))},
            "cheapest_any_black_box_shap": {n: c for n in two_stage if (c := cheapest(n, False))},
            "gradient_budget": gradient_budget(two_stage, black_boxes, counterparts, paths, times, args)}


def gradient_budget(two_stage: dict[str, TwoStageModel], black_boxes: dict[str, BlackBoxModel],
                    counterparts: dict[str, str | None], paths: list[Path],
                    times: dict[tuple[str, str], list[tuple[float, float]]], args: argparse.Namespace) -> dict[str, Any]:
    """GradientSHAP (expected gradients) is additive only in expectation: its cost and how far its
    values miss the output, per number of samples, on the timing clips (ratios to the intrinsic
    explanation of the first explainable model on the same clips, timed above)."""
    kw = segment_options(args)
    base_name = next(iter(two_stage))
    base = np.array(times[base_name, "intrinsic"])[:, 0]
    sweep = {}
    for name, bb in black_boxes.items():
        if gradient_based_method(bb) != "gradient" or name not in counterparts.values():
            continue
        rows = {}
        for samples in (int(v) for v in args.gradient_sweep.split(",")):
            walls, errors = [], []
            for path in tqdm(paths, desc=f"GradientSHAP of {name}, {samples} samples", unit="clip"):
                wall = time.perf_counter()
                e = explain_segments(bb, path, method="gradient", **{**kw, "gradient_samples": samples})
                walls.append(time.perf_counter() - wall)
                errors.append(e.additivity_error())
            rows[str(samples)] = {"wall": float(np.median(walls)), "x_intrinsic": float(np.median(np.array(walls) / base)),
                                  "additivity_error_max": float(np.max(errors)),
                                  "additivity_error_median": float(np.median(errors))}
        sweep[name] = {"relative_to": base_name, "samples": rows}
    return sweep


# -- merging an earlier run ----------------------------------------------------------------------
#: settings that change a model's numbers: runs merged into one file must share them
MERGE_SETTINGS = ("segments", "max_evals", "gradient_samples", "deletion_steps", "n_timing", "seed", "n_stability")


def check_mergeable(results: dict[str, Any], earlier: dict[str, Any], measured: set[str], paths: list[Path],
                    targets: np.ndarray, source: Path) -> list[str]:
    """Refuse (before any SHAP work) to merge an earlier run that measured other clips, settings or weights.

    Where the earlier file lists its clips, their names are compared; every model it keeps is also
    loaded again (it must be a zoo name whose weights still have the sha256 the earlier run measured)
    and its accuracy recomputed on this run's clips, which must equal the stored one: a check on the
    clips and the weights that also holds for files written before clips were listed. A superseded entry
    (weights no longer shipped) is kept when the zoo's record of its sha256 is the one the earlier run measured.

    Returns the superseded models to drop: their cost ratios were timed against a black box this run times again,
    and they cannot be measured again (their weights left the wheel); git history keeps their numbers.
    """
    def refuse(why: str) -> SystemExit:
        return SystemExit(f"{source}: cannot merge: {why}")

    differ = [k for k in MERGE_SETTINGS if earlier["settings"].get(k) != results["settings"][k]]
    if differ:
        raise refuse("the earlier run used other settings: " + ", ".join(
            f"{k} {earlier['settings'].get(k)!r} (now {results['settings'][k]!r})" for k in differ))
    if earlier["n_test"] != results["n_test"] or earlier.get("clips", results["clips"]) != results["clips"]:
        raise refuse(f"the earlier run explained other clips ({earlier['n_test']}, now {results['n_test']})")
    orphaned = [n for n, m in earlier["models"].items() if n not in measured and m["counterpart"] in measured]
    dropped = [n for n in orphaned if (e := REGISTRY.get(n)) is not None and not e.shipped]
    if set(orphaned) - set(dropped):
        raise refuse(f"{[n for n in orphaned if n not in dropped]} would keep cost ratios against a black box this run "
                     "measures again; measure them in this run too")
    for name in [n for n in [*earlier["models"], *earlier["black_boxes"]] if n not in measured and n not in dropped]:
        entry = REGISTRY.get(name)
        if entry is not None and not entry.shipped:
            # superseded: its weights left the wheel (the manifest rebuilds them), so they cannot be run again
            # here; the zoo's own record of them must still name the weights the earlier run measured
            if entry.sha256 != earlier["weights_sha256"][name]:
                raise refuse(f"{name!r}: the earlier run measured other weights than the zoo records for it")
            continue
        try:
            model = load(name)
        except Exception as err:  # a folder of an earlier session, a renamed entry, a corrupt file
            raise refuse(f"{name!r} does not load by name ({err}); measure it in this run") from err
        if weights_sha256(name) != earlier["weights_sha256"][name]:
            raise refuse(f"{name!r} has other weights now than the earlier run measured; measure it in this run")
        if isinstance(model, TwoStageModel):
            predicted = np.stack([model.explain(p).targets for p in paths])
            stored = earlier["models"][name]["accuracy"]["intrinsic"]
        else:
            predicted, stored = np.stack([model.predict_targets(p) for p in paths]), earlier["black_boxes"][name]["accuracy"]
        again = r_table(targets, predicted, list(model.config.target_names))
        if abs(again["mean"] - stored["mean"]) > 1e-4:
            raise refuse(f"{name!r} scores mean r {again['mean']:.4f} on this run's clips, {stored['mean']:.4f} in "
                         "the earlier run: other clips or other outputs")
    return dropped


def merge_earlier(results: dict[str, Any], earlier: dict[str, Any], dropped: list[str] = ()) -> dict[str, Any]:
    """This run's results plus the models of an earlier run (``check_mergeable``) that this one did not measure.

    Cost ratios are never recomputed: each model keeps those timed in its own run, and ``runs``
    says which run that was.
    """
    measured = set(results["models"]) | set(results["black_boxes"])
    kept_models = [n for n in earlier["models"] if n not in measured and n not in dropped]
    results["dropped"] = {**{n: d for n, d in earlier.get("dropped", {}).items() if n not in measured},
                          **{n: {"counterpart": earlier["models"][n]["counterpart"]} for n in dropped}}
    kept_boxes = [n for n in earlier["black_boxes"] if n not in measured]
    runs = earlier.get("runs") or [{"models": list(earlier["models"]) + list(earlier["black_boxes"]),
                                    "machine": earlier["machine"], "finished": None}]
    # runs recorded before each kept its own: the earlier file's one background
    runs = [{"background_corpus": earlier["settings"].get("background_corpus") or earlier["settings"]["corpus"], **run}
            for run in runs]
    cost, old = results["cost"], earlier["cost"]
    for name in kept_models:
        results["models"][name] = earlier["models"][name]
        cost["ratios"][name] = old["ratios"][name]
        for key in ("cheapest_black_box_shap", "cheapest_any_black_box_shap"):
            if name in old[key]:
                cost[key][name] = old[key][name]
    for name in kept_models + kept_boxes:
        results["weights_sha256"][name] = earlier["weights_sha256"][name]
        cost["seconds"][name] = old["seconds"][name]
    for name in kept_boxes:
        results["black_boxes"][name] = earlier["black_boxes"][name]
        if name in old["gradient_budget"]:
            cost["gradient_budget"][name] = old["gradient_budget"][name]
    kept = set(kept_models) | set(kept_boxes)
    results["runs"] = [{**run, "models": [n for n in run["models"] if n in kept]} for run in runs
                       if any(n in kept for n in run["models"])] + results["runs"]
    results["settings"]["models"] = ",".join(list(results["models"]) + list(results["black_boxes"]))
    return results


# -- report ------------------------------------------------------------------------------------
def strict_json(value: Any) -> Any:
    """NaN (e.g. a truth correlation of a target a sparse head ignores) as null: valid JSON."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def markdown(results: dict[str, Any]) -> str:
    s = results["settings"]
    lines = ["# Intrinsic vs post-hoc SHAP explanations", "",
             f"Corpus `{s['corpus']}`, {results['n_test']} test clips ({s['n_stability']} re-explained per "
             f"perturbation); input-space SHAP over {s['segments']} time x frequency segments with the clip's "
             f"mean spectrum as baseline, {s['max_evals']} evaluations per permutation/partition explanation; "
             f"{results['machine']}.", "",
             "## 1. Accuracy (test mean Pearson r over targets)", "",
             "| model | interpretable | MLP head on its concepts | black box | counterpart | cost of interpretability (black box - interpretable) |",
             "|---|---|---|---|---|---|"]
    for name, r in results["models"].items():
        bb = results["black_boxes"].get(r["counterpart"])
        ours, black = r["accuracy"]["intrinsic"]["mean"], bb["accuracy"]["mean"] if bb else float("nan")
        lines.append(f"| `{name}` | {ours:.3f} | {r['accuracy']['mlp_head']['mean']:.3f} | {black:.3f} | "
                     f"`{r['counterpart']}` | {black - ours:+.3f} |")
    lines += ["", "## 2. Truth (Spearman r of global concept importance vs |generating coefficient|)", ""]
    first = next(iter(results["models"].values()))
    if first["truth"] is None:
        lines.append("The corpus has no `ground_truth.json`: no truth to compare with.")
    else:
        emotions = [k for k in first["truth"]["intrinsic"] if k != "mean"]
        lines += ["| model | method | " + " | ".join(emotions) + " | mean |", "|---|---|" + "---|" * (len(emotions) + 1)]
        for name, r in results["models"].items():
            for m, label in CONCEPT_METHODS.items():
                cells = [f"{r['truth'][m][e]:.2f}" for e in emotions] + [f"**{r['truth'][m]['mean']:.2f}**"]
                lines.append(f"| `{name}` | {label} | " + " | ".join(cells) + " |")
        lines += ["", "nan: the method credits every concept alike for that emotion (e.g. a sparse head with no "
                  "weight on it), so there is no ranking to correlate."]
    lines += ["", "Input-space SHAP of the black box (permutation, partition, and DeepSHAP or expected-gradients "
              "GradientSHAP) attributes to spectrogram "
              "segments, not concepts: it has no concept-level truth to compare with, so it is compared on "
              "faithfulness, stability and cost only.", "",
              "## 3. Faithfulness (deletion: area under the output drop as the most credited features are "
              "replaced by the baseline first, in target units; gain = AUC - random-order AUC, > 0 is better than "
              "random; for an exact additive explanation no order beats its own)", "",
              "| model | method | features | AUC | random AUC | gain |", "|---|---|---|---|---|---|"]
    for name, r in results["models"].items():
        for m, label in CONCEPT_METHODS.items():
            f = r["faithfulness"][m]
            lines.append(f"| `{name}` | {label} | concepts | {f['auc']:.4f} | {f['random_auc']:.4f} | {f['gain']:+.4f} |")
    for name, bb in results["black_boxes"].items():
        for m, f in bb["faithfulness"].items():
            lines.append(f"| `{name}` | {m} SHAP | {s['segments']} segments | {f['auc']:.4f} | "
                         f"{f['random_auc']:.4f} | {f['gain']:+.4f} |")
    lines += ["", "## 4. Stability (mean cosine similarity of the explanation before and after)", "",
              "| model | method | " + " | ".join(PERTURBATION_LABELS.values()) + " |", "|---|---|---|---|---|"]
    rows = [(name, label, r["stability"][m]) for name, r in results["models"].items() for m, label in CONCEPT_METHODS.items()]
    rows += [(name, f"{m} SHAP", v) for name, bb in results["black_boxes"].items() for m, v in bb["stability"].items()]
    lines += [f"| `{n}` | {label} | " + " | ".join(f"{v[p]:.3f}" for p in PERTURBATIONS) + " |" for n, label, v in rows]
    cost = results["cost"]
    lines += ["", f"## 5. Cost (median seconds per explanation over {cost['clips']} clips, decoding included; "
              "ratio to the intrinsic explanation on the same clip; a model's ratios were all measured in one run)", "",
              "| model | variant | wall s | CPU s | x intrinsic (wall) | x intrinsic (CPU) |", "|---|---|---|---|---|---|"]
    for name, ratios in cost["ratios"].items():
        r = results["models"][name]
        base = cost["seconds"][name]["intrinsic"]
        lines.append(f"| `{name}` | intrinsic | {base['wall']:.4f} | {base['cpu']:.4f} | 1 | 1 |")
        for variant, ratio in ratios.items():
            owner = name if variant == "mlp_shap" else r["counterpart"]
            t = cost["seconds"][owner][variant]
            label = CONCEPT_METHODS.get(variant, f"{variant} SHAP of `{owner}`")
            lines.append(f"| `{name}` | {label} | {t['wall']:.3f} | {t['cpu']:.3f} | {ratio['wall']:.0f}x | {ratio['cpu']:.0f}x |")
    tol = cost["additivity_tolerance"]
    cheapest = [f"`{n}` {v['method']} {v['wall']:.0f}x wall / {v['cpu']:.0f}x CPU "
                f"({'meets' if v['wall'] >= 100 else 'misses'})" for n, v in cost["cheapest_black_box_shap"].items()]
    lines += ["", f"Cheapest SHAP variant that explains the black box, i.e. whose values sum to its output minus the "
              f"expected value within shap's own tolerance ({tol:g}; largest error over the {results['n_test']} clips), "
              "per model (wall-time ratio, 100x bar): "
              + ("; ".join(cheapest) if cheapest else "no black box among the models") + "."]
    anyway = [f"`{n}` {v['method']} {v['wall']:.0f}x wall (values miss the output by up to {v['additivity_error']:.2f})"
              for n, v in cost["cheapest_any_black_box_shap"].items()
              if v["method"] != cost["cheapest_black_box_shap"].get(n, {}).get("method")]
    if anyway:
        lines += ["", "Cheaper still, without adding up: " + "; ".join(anyway) + "."]
    for name, sweep in cost["gradient_budget"].items():
        lines += ["", f"### GradientSHAP budget of `{name}` (expected gradients; additive only in expectation)", "",
                  f"Same {cost['clips']} clips; ratio to `{sweep['relative_to']}`'s intrinsic explanation; error = "
                  "|expected value + sum of values - output| in target units (200 samples is shap's default).", "",
                  "| samples | wall s | x intrinsic | median error | largest error |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['wall']:.2f} | {v['x_intrinsic']:.0f}x | {v['additivity_error_median']:.3f} | "
                  f"{v['additivity_error_max']:.3f} |" for k, v in sweep["samples"].items()]
    runs = results.get("runs", [])
    if len(runs) > 1:
        lines += ["", "## Runs", "", "This file merges runs on the same clips with the same settings (`--merge`): each "
                  "model's numbers, cost ratios included, come from the run that measured it.", "",
                  "| finished | models | machine | SHAP background (train split of) |", "|---|---|---|---|"]
        lines += [f"| {r['finished'] or 'before runs were recorded'} | " + ", ".join(f"`{m}`" for m in r["models"])
                  + f" | {r['machine']} | `{r.get('background_corpus') or results['settings']['background_corpus']}` |"
                  for r in runs]
    if results.get("dropped"):
        lines += ["", "Rows that left the file: " + ", ".join(
            f"`{n}` (superseded; its cost ratios were timed against `{d['counterpart']}`, timed again since)"
            for n, d in results["dropped"].items()) + ". Their numbers are in this file's git history."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    torch.manual_seed(args.seed)
    # before torch starts its worker threads (they inherit the flag only then): the transcribing
    # networks' activations reach denormal floats, and SHAP's ~1000 forward passes per clip then
    # run 2.6x (gradients 3.7x) slower on x86 for values too small to change any output
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    models, weights, family = find_models(args, out)
    cache_dir = Path(args.cache_dir) if args.cache_dir else (family / "cache" if (family / "cache").is_dir() else out / "cache")
    splits = load_splits(args.corpus)
    if args.background_corpus:
        splits["train"] = load_splits(args.background_corpus)["train"]
    if not len(splits["train"]) and not args.shard:  # shards compute the black boxes alone: no background
        raise SystemExit(f"{args.corpus}: no train split for SHAP's background; pass --background-corpus")
    if splits["test"].targets is None:
        raise SystemExit(f"{args.corpus}: no target ratings (mean_ratings_set1.csv): nothing to benchmark")
    paths, targets = pick_clips(splits["test"], args.n, args.seed)
    n_stab = min(args.n_stability, len(paths))
    two_stage = {n: m for n, m in models.items() if isinstance(m, TwoStageModel) and n != "a2mid"}  # a2mid = a2mid2e-linear
    black_boxes = {n: m for n, m in models.items() if isinstance(m, BlackBoxModel)}
    if not two_stage:
        raise SystemExit("no two-stage model to benchmark among: " + ", ".join(models))
    coefficients = {}  # per model: its concepts' generating weights (models may name other concepts)
    if (Path(args.corpus) / "ground_truth.json").is_file():
        coefficients = {n: read_generating_coefficients(args.corpus, m.config.concept_names, m.config.target_names)
                        for n, m in two_stage.items()}

    results: dict[str, Any] = {
        "settings": {k: getattr(args, k) for k in ("corpus", "background_corpus", "models", "segments", "max_evals", "gradient_samples",
                                                   "deletion_steps", "n_timing", "threads", "seed")}
        | {"n_stability": n_stab},
        "n_test": len(paths), "machine": f"{platform.machine()} CPU, torch {torch.__version__}, "
                                          f"{torch.get_num_threads()} threads, denormals flushed",
        "weights_sha256": weights, "models": {}, "black_boxes": {},
        "clips": [Path(p).name for p in paths],
    }
    earlier = None
    if args.merge and not args.shard and (out / f"{NAME}.json").is_file():
        earlier = json.loads((out / f"{NAME}.json").read_text())
        dropped = check_mergeable(results, earlier, set(two_stage) | set(black_boxes), paths, targets, out / f"{NAME}.json")
        for name in dropped:
            print(f"{name}: superseded, its weights no longer installed, and its cost ratios were timed against "
                  f"{earlier['models'][name]['counterpart']}, which this run times again: its row leaves the file "
                  "(git history keeps it)")
    shap_by_bb = {}
    for name, bb in black_boxes.items():
        if args.shard:
            clip_records(bb, weights[name], paths, n_stab, args, out / ".partial")
            continue
        results["black_boxes"][name], shap_by_bb[name] = run_black_box(bb, weights[name], paths, targets, n_stab, args,
                                                                       out / ".partial")
    if args.shard:
        print(f"shard {args.shard[0]}/{args.shard[1]}: clip records in {out / '.partial'}")
        return 0
    plot_inputs, mlps, backgrounds, counterparts = None, {}, {}, {}
    for name, model in two_stage.items():
        counterparts[name] = next((n for n, bb in black_boxes.items()
                                   if trained_network(bb.config.backbone) == trained_network(model.config.backbone)), None)
        backgrounds[name] = train_concepts(model, splits["train"], cache_dir)
        result, first_clip, mlps[name] = run_two_stage(model, paths, targets, backgrounds[name], splits["train"].targets,
                                                       coefficients.get(name), n_stab, args)
        results["models"][name] = {"counterpart": counterparts[name], **result}
        plot_inputs = plot_inputs or (first_clip, counterparts[name])
    results["cost"] = measure_cost(two_stage, mlps, backgrounds, black_boxes, counterparts, paths[:args.n_timing],
                                   {n: bb["additivity_error"] for n, bb in results["black_boxes"].items()}, args)

    results["runs"] = [{"models": list(two_stage) + list(black_boxes), "machine": results["machine"],
                        "background_corpus": args.background_corpus or args.corpus,
                        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}]
    if earlier is not None:
        results = merge_earlier(results, earlier, dropped)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{NAME}.json", json.dumps(strict_json(results), indent=1, allow_nan=False) + "\n")
    atomic_write_text(out / f"{NAME}.md", markdown(results))
    first_clip, counterpart = plot_inputs
    plot_side_by_side(first_clip["explanation"], list(shap_by_bb[counterpart].values()) if counterpart else [],
                      out / f"{NAME}.png", concept_maps={"intrinsic, centred (exact SHAP)": first_clip["intrinsic"],
                                                         "MLP head + permutation SHAP": first_clip["mlp_shap"]})
    print(markdown(results))
    print(f"written: {out / NAME}.json, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
