"""The ``midlevel`` command. Thin: each subcommand calls library functions and prints.

Exit codes: 0 ok; 2 bad input (one line on stderr naming the file or field).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import pandas as pd

from ._extras import require_all
from .audio import AudioError, example_clip
from .backbones import BACKBONES
from .concepts import MIDLEVEL_FEATURES, OUTSIDE_CONCEPTS
from .config import ConfigError
from .errors import MidlevelError
# light at import (their optional dependencies are imported when a report or a baseline is made); training,
# the corpus builder and ONNX are imported by the commands that need them, so `predict`/`explain`/`models`
# run on the core dependencies alone (tests/test_imports.py)
from .explain.posthoc import POSTHOC
from .explain.report import write_report
from .explain.shap_side_by_side import METHODS as SHAP_METHODS
from .explain.shap_side_by_side import format_side_by_side, min_evals
from .ioutil import OutputError, heap_buffers, input_file_problem, output_path_problem

#: errors caused by what the user gave us (every refusal of ours is a MidlevelError; FileNotFoundError for a
#: path that third-party code opened before ours could check it); anything else is a bug and keeps its traceback
USER_ERRORS: tuple[type[BaseException], ...] = (MidlevelError, FileNotFoundError)


def _format_explanation(expl, *, with_contributions: bool, top: int) -> str:
    lines = [f"== {expl.source}  (model: {expl.model_name}, {expl.duration:.1f} s, "
             f"{len(expl.window_starts)} window(s))"]
    lines += [f"   note: {note}" for note in expl.notes]
    if expl.flags():
        lines.append(f"   flags: {', '.join(expl.flags())}")
    if expl.ood_score is not None:
        lines.append(f"   out-of-distribution score: {expl.ood_score:.2f} (above 1: flagged)")
    with pd.option_context("display.width", 200, "display.max_columns", 50,
                           "display.float_format", "{:.2f}".format):
        if expl.concept_names:  # a black box has none
            lines += ["", "concepts:", expl.concept_series().to_frame().T.to_string(index=False)]
        if expl.probabilities is not None:  # a classifier: its targets are logits
            probs = pd.Series(expl.probabilities, index=expl.target_names, name="probability")
            lines += ["", f"class: {expl.predicted_class} (p = {expl.probabilities.max():.3f})",
                      probs.to_frame().T.to_string(index=False, float_format="{:.3f}".format)]
        if with_contributions:
            what = "logit" if expl.probabilities is not None else "target"
            lines += ["", f"contributions ({what} = intercept + sum of concept terms):", expl.to_frame().to_string()]
            if top:
                lines += ["", f"top {top} concepts per target:", expl.top(top).to_string(index=False)]
        else:
            lines += ["", "targets:", expl.target_series().to_frame().T.to_string(index=False)]
    return "\n".join(lines)


def output_paths(out: str, sources: list[str], suffix: str) -> dict[str, Path]:
    """Where each input's derived file goes: ``out`` itself for one input (unless it is a folder), else
    ``out/<the input's path relative to the inputs' common folder>`` with ``suffix``, so ``d1/song.wav`` and
    ``d2/song.wav`` never overwrite each other's result. Folders are created only when written to."""
    target = Path(out)
    if len(sources) == 1 and not target.is_dir():
        return {sources[0]: target}
    resolved = [Path(s).resolve() for s in sources]
    common = Path(os.path.commonpath([str(p.parent) for p in resolved]))
    paths = {s: target / p.relative_to(common).with_suffix(suffix) for s, p in zip(sources, resolved)}
    if len(set(paths.values())) < len(paths):  # the same file named twice
        seen: dict[Path, int] = {}
        for s in sources:
            k = seen[paths[s]] = seen.get(paths[s], 0) + 1
            if k > 1:
                paths[s] = paths[s].with_name(f"{paths[s].stem}-{k}{suffix}")
    return paths


def _one_input(model, src: str, args: argparse.Namespace, *, explain: bool, plots: dict, reports: dict):
    """The record (JSON mode) or text of one input; a ``MidlevelError`` for a bad one."""
    if explain and args.report:
        with heap_buffers():  # the maps' backward passes: not one mmap per buffer (ioutil.heap_buffers)
            _write_output(lambda path: write_report(model, src, path, **report_options(args)), reports[src],
                          "--report")
    if explain and args.baseline:
        side = explain_from_args(model, src, args)
        if args.plot:
            _write_output(side.plot, plots[src], "--plot")
        return side.to_dict() if args.json else format_side_by_side(side, top=args.top or 3)
    expl = model.explain(src) if explain else model.predict(src)
    if explain and args.plot:
        _write_output(expl.plot, plots[src], "--plot")
    if not args.json:
        return _format_explanation(expl, with_contributions=explain, top=getattr(args, "top", 0))
    data = expl.to_dict()
    if not explain:
        data.pop("contributions", None)
        data.pop("intercepts", None)
    return data


def _check_outputs(outputs: dict[str, dict[str, Path]]) -> None:
    """Refuse, in one line per option, output files that cannot be written (one probe per folder)."""
    problems, seen = [], set()
    for option, paths in outputs.items():
        for path in paths.values():
            if path.parent in seen:
                continue
            seen.add(path.parent)
            if problem := output_path_problem(path):
                problems.append(f"{option} {path}: {problem}")
                break
    if problems:
        raise OutputError("; ".join(problems))


def _write_output(write, path: Path, option: str) -> None:
    """``write(path)`` after creating its folder; an OS error (disk full, a folder that went away) as one line."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
    except OSError as exc:
        raise OutputError(f"{option} {path}: cannot write ({exc.strerror or exc})") from None


def cmd_predict_or_explain(args: argparse.Namespace, *, explain: bool) -> int:
    """Every input is processed: a bad one becomes an error record (JSON) or one line on stderr, and the
    rest still run; exit 2 when any failed, with a one-line summary naming them."""
    from .zoo import load

    if explain and args.baseline:
        _shap_grid(args)  # bad SHAP options refused before any model is loaded
    sources = args.audio or [str(example_clip())]
    plots = output_paths(args.plot, sources, ".png") if explain and args.plot else {}
    reports = output_paths(args.report, sources, ".html") if explain and args.report else {}
    _check_outputs({"--plot": plots, "--report": reports})  # an unwritable place is refused before any work
    model = load(args.model)
    unreadable = {s: p for s in sources if (p := input_file_problem(s))}  # found before any work, not after
    records, failed = [], []
    for src in sources:
        try:
            if src in unreadable:
                raise AudioError(f"{src}: {unreadable[src].replace('not a file', 'not an audio file')}")
            result = _one_input(model, src, args, explain=explain, plots=plots, reports=reports)
        except USER_ERRORS as exc:
            failed.append(src)
            print(f"midlevel: error: {exc}", file=sys.stderr)
            if args.json:
                records.append({"source": src, "error": str(exc)})
            continue
        if args.json:
            records.append(result)
        else:
            print(result + "\n", flush=True)
    if args.json:
        print(json.dumps(records if len(records) > 1 else records[0], indent=2))
    if failed:
        if len(sources) > 1:  # one input's own error line already says it all
            print(f"midlevel: {len(failed)} of {len(sources)} input(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .zoo import DEFAULTS, REGISTRY, list_models

    entries = [REGISTRY[n] for n in list_models(all=args.all)]
    defaults = set(DEFAULTS.values())
    if args.json:
        print(json.dumps([{**asdict(e), "default": e.name in defaults} for e in entries], indent=2))
        return 0
    if not entries:
        print("The zoo holds no trained checkpoints yet (see docs/training.md for the training recipes).")
        return 0
    rows = [{"": "*" if e.name in defaults else "", "name": e.name, "task": e.task,
             "concepts": len(e.concept_names) or "-",
             "concept r": f"{e.metrics['concept_r']:.3f}" if "concept_r" in e.metrics else "-",
             "score": (f"emotion r {e.metrics['emotion_r']:.3f}"
                       + (f" (randomised {e.metrics['emotion_r_randomised']:.3f})" if "emotion_r_randomised" in e.metrics
                          else "") if "emotion_r" in e.metrics
                       else f"accuracy {e.metrics['accuracy']:.3f}" if "accuracy" in e.metrics else "-"),
             "size": f"{e.size_bytes / 1e6:.1f} MB",
             "status": e.status + (f" by {e.superseded_by}" if e.superseded_by else "")
             + ("" if e.shipped else " (not installed)")} for e in entries]
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in rows[0]}
    for row in [{k: k for k in rows[0]}, *rows]:
        print("  ".join(f"{row[k]!s:<{w}}" for k, w in widths.items()).rstrip())
    hidden = len(REGISTRY) - len(entries)
    print(f"\n* default of its task (the current explainable entry with the best held-out score; the music-emotion "
          f"one is used when no model is named). Scores: mean Pearson r on the held-out controlled corpus (unseen "
          f"pieces) for music, in brackets under randomised recording conditions (which choose the music default), "
          f"accuracy on held-out synthetic voices for speech; `midlevel.zoo.card(NAME)` has the "
          f"details." + (f" {hidden} superseded entries hidden: --all lists them." if hidden else ""))
    return 0


def explanation_logging(directory: str | None, command: str, *, per_run: bool) -> list:
    """``--log-explanations DIR``: the built-in explanation logger writing TensorBoard events into DIR
    (``training.callbacks.explanation_callbacks``); none without it. Checks the extra before any work."""
    if not directory:
        return []
    require_all(("tensorboard", "matplotlib"), "tensorboard", f"{command} --log-explanations")
    from .training.callbacks import explanation_callbacks

    return explanation_callbacks(directory, per_run=per_run)


def add_device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="where to train: cpu (default), cuda, cuda:N, mps or auto; under "
                   "torchrun --nproc_per_node N the processes train data-parallel (docs/scale_out.md)")


def cmd_train(args: argparse.Namespace) -> int:
    from .training.loops import TrainSettings
    from .training.recipes import train_family
    from .training.report import target_table

    callbacks = explanation_logging(args.log_explanations, "midlevel train", per_run=True)
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             patience=args.patience, seed=args.seed, joint_weight=args.joint_weight,
                             crop_frames=args.crop_frames, lr_schedule=args.lr_schedule,
                             transpose_semitones=args.transpose, roll_weight=args.roll_weight,
                             ingredient_weight=args.ingredient_weight,
                             equivariant_semitones=args.equivariant_shift, equivariant_stretch=args.equivariant_stretch,
                             trainable=tuple(m for m in (args.trainable or "").split(",") if m))
    joint = None if args.joint_heads is None else [h for h in args.joint_heads.split(",") if h]
    concepts = [*MIDLEVEL_FEATURES, *OUTSIDE_CONCEPTS] if args.outside_concepts else None
    roll_source = None
    if args.roll_weight:  # the generator re-realises the clips' notes; training itself never imports it
        from .datasets.controlled.rolls import corpus_rolls as roll_source
    results = train_family(args.corpus, args.out, backbone=args.backbone, heads=args.heads.split(","),
                           joint_heads=joint, settings=settings, cache_dir=args.cache_dir, concepts=concepts,
                           black_box=not args.no_a2e, init_from=args.init_from,
                           level_target_dbfs=args.level_normalize, roll_source=roll_source, callbacks=callbacks,
                           device=args.device)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports
        return 0
    names = [n for n in results["models"] if n != "a2mid"]
    print(target_table(results, names))
    print(f"models and results.json written to {args.out}")
    return 0


def cmd_train_speech(args: argparse.Namespace) -> int:
    require_all(("sklearn", "scipy", "tqdm"), "train", "midlevel train-speech")
    from .training.speech import train_speech_models

    callbacks = explanation_logging(args.log_explanations, "midlevel train-speech", per_run=True)
    results = train_speech_models(args.corpus, args.out, task=args.task, epochs=args.epochs, seed=args.seed,
                                  black_box=not args.no_black_box, device=args.device,
                                  progress=sys.stderr.isatty(), callbacks=callbacks, init_from=args.init_from,
                                  lr=args.lr)
    for name, model in results["models"].items():
        test = model["test"]
        extra = f", concept r {test['concept_r']:.3f}" if "concept_r" in test else ""
        print(f"{name}: accuracy {test['accuracy']:.3f} on {test['n']} clips of {test['voices']} held-out voices{extra}")
    print(f"models in {Path(args.out) / 'models'}, scores in {Path(args.out) / 'results.json'}")
    return 0


def cmd_train_heart(args: argparse.Namespace) -> int:
    require_all(("sklearn", "scipy", "tqdm"), "train", "midlevel train-heart")
    from .datasets.heart_corpus import HEART_CONCEPT_SETS
    from .training.heart import train_heart_models

    callbacks = explanation_logging(args.log_explanations, "midlevel train-heart", per_run=True)
    results = train_heart_models(args.corpus, args.out, epochs=args.epochs, seed=args.seed,
                                 black_box=not args.no_black_box, device=args.device, heldout=args.heldout,
                                 progress=sys.stderr.isatty(), callbacks=callbacks, backbone=args.backbone,
                                 concepts=HEART_CONCEPT_SETS[args.concepts])
    for name, model in results["models"].items():
        for split in ("test", "heldout"):
            if split in model:
                print(f"{name}: accuracy {model[split]['accuracy']:.3f} on the {split} recordings "
                      f"({results['recordings'][split]})")
    print(f"models in {Path(args.out) / 'models'}, scores in {Path(args.out) / 'results.json'}")
    return 0


def cmd_corpus_build(args: argparse.Namespace) -> int:
    from .datasets.controlled import build_corpus

    summary = build_corpus(args.out, args.n, seconds=args.seconds, seed=args.seed, workers=args.workers,
                           audio_format=args.format, only_split=args.only_split, clips_per_piece=args.clips_per_piece,
                           conditions=args.conditions)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_corpus_vocode(args: argparse.Namespace) -> int:
    require_all(("pedalboard", "soundfile"), "corpus", "midlevel corpus vocode")
    from .datasets.controlled.vocoded import build_vocoded_corpus

    summary = build_vocoded_corpus(args.source, args.out, seed=args.seed, max_semitones=args.max_semitones,
                                   max_stretch=args.max_stretch, share=args.share, progress=sys.stderr.isatty())
    print(json.dumps(summary["vocoder"], indent=2))
    return 0


def cmd_corpus_speech(args: argparse.Namespace) -> int:
    require_all(("pedalboard", "librosa", "parselmouth", "tqdm"), "corpus", "midlevel corpus speech")
    from .datasets.spoken_digits import build_spoken_digits

    summary = build_spoken_digits(args.out, reps=args.reps, seed=args.seed, conditions=args.conditions,
                                  workers=args.workers, progress=sys.stderr.isatty())
    print(json.dumps(summary, indent=2))
    return 0


def cmd_corpus_heart(args: argparse.Namespace) -> int:
    require_all(("scipy", "tqdm"), "corpus", "midlevel corpus heart")
    from .datasets.heart_sounds import build_pcg_corpus

    summary = build_pcg_corpus(args.out, args.n, seed=args.seed, workers=args.workers, noise=args.noise,
                               seconds=args.seconds, progress=sys.stderr.isatty())
    print(json.dumps(summary, indent=2))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    require_all(("sklearn", "scipy", "tqdm"), "train", "midlevel evaluate")
    from .evaluation import evaluate, format_result, load_model, to_json
    from .ioutil import atomic_write_text

    if args.out and (problem := output_path_problem(args.out)):  # before the scoring, not after it
        raise OutputError(f"--out {args.out}: {problem}")
    model, sha256 = load_model(args.model)
    result = evaluate(model, args.data, audio_dir=args.audio_dir, split=args.split, path=args.path,
                      cache_dir=args.cache_dir, resamples=args.resamples, progress=sys.stderr.isatty(),
                      weights_sha256=sha256)
    for bad in result["skipped"]:
        print(f"midlevel: skipped {bad['file']}: {bad['reason']}", file=sys.stderr)
    text = to_json(result)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    print(text if args.json else format_result(result))
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from .training.finetune import finetune, metric_tables

    callbacks = explanation_logging(args.log_explanations, "midlevel finetune", per_run=False)
    result = finetune(args.base, args.annotations, args.audio_dir, args.out, targets=args.targets,
                      concepts=args.concepts, target_columns=args.target_columns, concept_scale=args.concept_scale,
                      target_scale=args.target_scale, mode=args.mode, head=args.head, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, patience=args.patience, seed=args.seed,
                      joint_weight=args.joint_weight, split=args.split, resample=args.resample,
                      overwrite=args.overwrite, cache_dir=args.cache_dir, add_concepts=args.add_concepts,
                      keep_concepts=args.keep_concepts, keep_weight=args.keep_weight, callbacks=callbacks,
                      device=args.device)
    print(metric_tables(result, "test"))
    print(f"model written to {args.out} (model card: {Path(args.out) / 'README.md'})")
    return 0


def _floats(text: str, n: int, form: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != n:
        raise argparse.ArgumentTypeError(f"expected {form}; got {text!r}")
    return values


def _pair(text: str) -> tuple[float, ...]:
    return _floats(text, 2, "LOW,HIGH")


def _fractions(text: str) -> tuple[float, ...]:
    return _floats(text, 3, "TRAIN,VAL,TEST fractions")


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


#: ``training.finetune.MODES``, repeated so that building the parser does not import training (the 'train' extra)
FINETUNE_MODES = ("full", "freeze", "head", "joint")


def add_finetune_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``midlevel finetune`` (``training.finetune.finetune``)."""
    p = subparsers.add_parser("finetune", help="fine-tune a model on new concept (and target) ratings",
                              description="Fine-tune a two-stage model on new concept (and target) ratings.")
    p.add_argument("--base", required=True, help="zoo name or model folder to start from")
    p.add_argument("--annotations", required=True,
                   help="ratings CSV: Mid-level layout (song_id; metadata.csv beside it) or generic (file column)")
    p.add_argument("--audio-dir", required=True, help="folder the ids / file paths are relative to")
    p.add_argument("--out", required=True, help="output model folder (staged in OUT.partial; re-running resumes)")
    p.add_argument("--targets", help="CSV of target ratings with the same id column")
    p.add_argument("--concepts", type=_names, help="comma-separated concept columns (default: all other columns)")
    p.add_argument("--target-columns", type=_names, help="comma-separated target columns (of --targets, or of "
                   "--annotations when no --targets)")
    p.add_argument("--concept-scale", type=_pair, help="LOW,HIGH (default: the base model's)")
    p.add_argument("--target-scale", type=_pair, help="LOW,HIGH (default: the base model's)")
    p.add_argument("--mode", choices=FINETUNE_MODES, default="full", help="full: train backbone + concept layer; "
                   "freeze: linear probe on the frozen backbone; head: refit the head only; joint: train all together")
    p.add_argument("--head", choices=["linear", "gam"], help="head type for a fitted head (default: the base's)")
    p.add_argument("--add-concepts", action="store_true", help="add the rated concepts to the base's instead of "
                   "replacing them; the kept ones are held to the base's predictions (see --keep-weight)")
    p.add_argument("--keep-concepts", type=_names, help="with --add-concepts: comma-separated base concepts to keep "
                   "(default: all)")
    p.add_argument("--keep-weight", type=float, help="with --add-concepts: weight of the kept "
                   "concepts' distillation loss against the added ones' rating loss (default 3)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--joint-weight", type=float, default=0.5, help="weight of the concept loss in joint training")
    p.add_argument("--split", type=_fractions, default=(0.7, 0.15, 0.15),
                   help="train,val,test fractions (default 0.7,0.15,0.15)")
    p.add_argument("--resample", action="store_true", help="accept audio sampled below the base model's rate")
    p.add_argument("--cache-dir", help="spectrogram cache folder (default: inside OUT.partial)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty OUT (only once the new model is complete)")
    p.add_argument("--log-explanations", metavar="DIR",
                   help="log each epoch's explanation of fixed validation clips (concept r, head, contributions, "
                        "attribution maps, listenable parts) as TensorBoard events in DIR: tensorboard --logdir DIR")
    add_device_argument(p)
    p.set_defaults(func=cmd_finetune)
    return p


# -- options of the library functions (argparse lives here only) ----------------------------------
def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--report`` option and its settings, for ``midlevel explain``."""
    group = parser.add_argument_group("report")
    group.add_argument("--report", help="write a self-contained HTML report (a file, or a folder for several inputs)")
    group.add_argument("--format", choices=["html", "png"], default="html",
                       help="html: interactive page (player, timeline and maps in step; default); png: static "
                            "figures, for papers")
    group.add_argument("--target", help="target to explain in the report (default: the one furthest from mid-scale)")
    group.add_argument("--map-method", choices=sorted(POSTHOC),
                       help="attribution method for the spectrogram maps (default: gradient_x_input for html, "
                            "integrated_gradients for png)")
    group.add_argument("--posthoc", action="append", default=[], choices=sorted(POSTHOC),
                       help="add maps of another attribution method (repeatable)")
    group.add_argument("--listen", help="target or concept for the listening views (default: --target)")
    group.add_argument("--timeline-window", type=float, help="timeline window in seconds (default: the model's)")
    group.add_argument("--timeline-hop", type=float, help="timeline hop in seconds (default: the model's)")
    group.add_argument("--report-seconds", type=float, default=30.0,
                       help="longest excerpt for the spectrogram and listening views (png; html covers the whole "
                            "track)")
    group.add_argument("--wav-dir", help="also write the listening views' parts and rests there as WAV files")


def report_options(args: argparse.Namespace) -> dict[str, Any]:
    """``write_report`` keyword arguments from the parsed ``add_report_arguments`` options."""
    return {"target": args.target, "format": args.format, "method": args.map_method,
            "posthoc": args.posthoc, "listen": args.listen, "window_seconds": args.timeline_window,
            "hop_seconds": args.timeline_hop, "max_seconds": args.report_seconds, "wav_dir": args.wav_dir}


def add_baseline_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--baseline`` options of ``midlevel explain``."""
    group = parser.add_argument_group("post-hoc baseline")
    group.add_argument("--baseline", choices=["shap"],
                       help="also explain a black-box counterpart with SHAP and print both side by side")
    group.add_argument("--baseline-model", help="the black box (A2E) to explain: zoo name or model folder")
    group.add_argument("--shap-method", choices=SHAP_METHODS, default="permutation",
                       help="permutation/partition: masked segments; deep: DeepSHAP on the spectrogram (standard "
                            "layers only); gradient: expected gradients (any backbone)")
    group.add_argument("--shap-segments", default="8x4", metavar="TIMExBANDS",
                       help="grid of the spectrogram's segments (default 8x4)")
    group.add_argument("--shap-max-evals", type=int, default=500,
                       help="masked inputs evaluated per explanation (permutation, partition)")


def _shap_grid(args: argparse.Namespace) -> tuple[int, int]:
    """(n_time, n_freq) from --shap-segments, with --shap-max-evals checked against it."""
    try:
        n_time, n_freq = (int(v) for v in args.shap_segments.lower().split("x"))
    except ValueError:
        n_time = n_freq = 0
    if n_time < 1 or n_freq < 1:
        raise ConfigError(f"--shap-segments must look like 8x4 (positive numbers), not {args.shap_segments!r}")
    least = min_evals(args.shap_method, n_time * n_freq)
    if args.shap_max_evals < least:
        raise ConfigError(f"--shap-max-evals must be at least {least} for --shap-method {args.shap_method} with "
                          f"{n_time}x{n_freq} segments; got {args.shap_max_evals}")
    return n_time, n_freq


def explain_from_args(model: AudioModel, audio: Any, args: argparse.Namespace) -> SideBySide:
    """``explain_with_baseline`` with the options from ``add_baseline_arguments``."""
    from .explain.shap_side_by_side import explain_with_baseline
    from .zoo import load

    n_time, n_freq = _shap_grid(args)
    baseline = load(args.baseline_model) if args.baseline_model else None
    return explain_with_baseline(model, audio, baseline, method=args.shap_method, n_time=n_time,
                                 n_freq=n_freq, max_evals=args.shap_max_evals)


def cmd_annotate(args: argparse.Namespace) -> int:
    """``annotate.annotate`` plus a summary; exit 2 when any file failed (each listed in the errors table)."""
    from .annotate import annotate

    summary = annotate(args.inputs, args.out, model=args.model, workers=args.workers, engine=args.engine,
                       runtime=args.runtime, errors=args.errors, progress=False if args.no_progress else None)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        done = summary["inputs"] - summary["resumed"]
        rate = f"{done / summary['seconds']:.2f} files/s, " if done else ""
        speed = f"{summary['audio_seconds'] / summary['seconds']:.0f}x real time" if summary["seconds"] else ""
        runtime = f" on {summary['runtime']}" if summary["runtime"] != "torch" else ""
        print(f"annotated {summary['annotated']} of {summary['inputs']} file(s) with {summary['model']}{runtime} into "
              f"{summary['out']}" + (f" ({summary['resumed']} done by an earlier run)" if summary["resumed"] else "")
              + f"; {summary['seconds']:.1f} s, {rate}{speed}")
    for failure in summary["failures"][:10]:
        print(f"midlevel: error: {failure['path']}: {failure['reason']}", file=sys.stderr)
    if summary["failed"]:
        print(f"midlevel: {summary['failed']} of {summary['inputs']} input(s) failed; {summary['errors_out']} "
              "lists them", file=sys.stderr)
        return 2
    return 0


def add_annotate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``midlevel annotate INPUT... --out TABLE`` (``annotate.annotate``)."""
    p = subparsers.add_parser("annotate", help="annotate a catalogue: a table row per audio file (resumable)",
                              description="Explain every audio file into one table (Parquet or CSV): concepts, "
                                          "targets, contributions, flags, model and weights. Resumable: rerun "
                                          "the same command after an interruption.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="a folder (audio files, recursively), a quoted glob, a .csv/.parquet list with a 'file' "
                        "or 'path' column, a file, or an s3:// (any pyarrow filesystem) file or folder")
    p.add_argument("--out", required=True, help="the table: .parquet or .csv (parts kept in OUT.parts until done)")
    p.add_argument("--model", help="zoo name or model folder (default: the zoo's default model)")
    p.add_argument("--workers", type=int, help="processes (local engine; default 1) or Ray actors (default: "
                                               "every CPU of the cluster); one torch thread each")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: processes on this machine; ray: a Ray Data actor pool (RAY_ADDRESS joins a "
                        "cluster; the 'ray' extra)")
    p.add_argument("--runtime", choices=["torch", "onnxruntime"], default="torch",
                   help="torch: every row exactly as `midlevel explain`; onnxruntime: the per-window network in "
                        "onnxruntime, faster on CPUs, equal to float32 rounding (the 'onnx' extra)")
    p.add_argument("--errors", help="the table of files that failed (path, reason; default: OUT's name + "
                                    ".errors, e.g. table.errors.parquet)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: one on a terminal)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_annotate)
    return p


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from .export import TrackGraph, export_onnx
    from .zoo import load

    model = load(args.model)
    path = export_onnx(model, args.out, opset=args.opset)
    outputs = ", ".join(TrackGraph(model).output_names)
    print(f"wrote {path}: {model.name}, input wave (batch, samples) at {model.config.sample_rate} Hz; "
          f"outputs {outputs}")
    return 0


def add_export_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``midlevel export-onnx NAME_OR_DIR OUT.onnx [--opset N]``."""
    p = subparsers.add_parser("export-onnx", help="export a model (front-end, windowing and head included) to ONNX")
    p.add_argument("model", metavar="NAME_OR_DIR", help="zoo name or model folder")
    p.add_argument("out", metavar="OUT.onnx", help="file to write (replaced atomically)")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's; 18 or later)")
    p.set_defaults(func=cmd_export_onnx)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="midlevel", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (("predict", "concept and target values for audio files"),
                           ("explain", "values plus each concept's contribution to each target")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("audio", nargs="*", help="audio files (wav, flac, ogg, mp3); default: the bundled example clip")
        p.add_argument("--model", help="zoo name or model folder (default: the zoo's default model)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "explain":
            p.add_argument("--top", type=int, default=3, help="list the k largest contributions per target (0: off)")
            p.add_argument("--plot", help="save a contribution bar chart (PNG file, or a folder for several inputs)")
            add_baseline_arguments(p)
            add_report_arguments(p)
        p.set_defaults(func=lambda a, explain=(name == "explain"): cmd_predict_or_explain(a, explain=explain))
    p = sub.add_parser("train", help="train A2Mid, A2Mid2E, A2Mid2E-Joint and A2E on a Mid-level-layout data set")
    p.add_argument("--corpus", required=True, help="data set root (Mid-level layout + mean_ratings_set1.csv)")
    p.add_argument("--out", required=True, help="output folder (re-running resumes)")
    p.add_argument("--backbone", default="compact", choices=sorted(BACKBONES))
    p.add_argument("--heads", default="linear,gam",
                   help="comma-separated head types fitted sequentially and independently on a concept model "
                        "('' trains no concept model)")
    p.add_argument("--joint-heads", help="heads that also get a jointly trained network (default: all of --heads)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--joint-weight", type=float, default=0.5, help="weight of the concept loss in joint training")
    p.add_argument("--crop-frames", type=int, help="train on random excerpts of this many frames (31.3 per second)")
    p.add_argument("--transpose", type=int, default=0, metavar="N",
                   help="transpose each training clip by a random number of semitones in [-N, N] "
                        "(concept and joint training; the A2E black box is trained without)")
    p.add_argument("--equivariant-shift", type=int, default=0, metavar="N",
                   help="a third of the training clips transposed by up to N semitones with the register concept "
                        "moved accordingly (the other concepts kept; no emotion loss on them)")
    p.add_argument("--equivariant-stretch", type=float, default=1.0, metavar="S",
                   help="a third of the training clips played up to S times faster or slower with the tempo "
                        "concept moved accordingly (S > 1; 1: off)")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                   help="cosine: decay the learning rate to 0 over --epochs (a function of the epoch, so resumable)")
    p.add_argument("--roll-weight", type=float, default=0.0, metavar="W",
                   help="weight of an auxiliary note-transcription loss on the controlled corpus's note rolls "
                        "(needs a compact_transcribe backbone; 0: off)")
    p.add_argument("--ingredient-weight", type=float, default=0.0, metavar="W",
                   help="weight of an auxiliary loss on the ratings' recorded ingredients (jitter, rubato, "
                        "syncopation, ... from the controlled corpus's factors.csv), read out of the embedding by "
                        "a training-only linear layer that is not saved with the model (0: off)")
    p.add_argument("--trainable", metavar="PREFIXES",
                   help="train only the parameters whose names start with one of these comma-separated prefixes "
                        "(e.g. backbone.note_measures_in,concept_layer,head with --init-from); the rest stays "
                        "frozen in eval mode (default: train everything)")
    p.add_argument("--cache-dir", help="spectrogram cache folder (default: OUT/cache)")
    p.add_argument("--level-normalize", type=float, metavar="DBFS",
                   help="scale every window to this RMS level (dBFS) inside the front-end, so the file's gain "
                        "cannot reach the concepts (e.g. -32, the dry corpus's median); also allowed with --init-from")
    p.add_argument("--outside-concepts", action="store_true",
                   help="add loudness, tempo and register (from the controlled corpus's factors.csv) to the seven "
                        "concepts: the corpus's emotions depend on them, so the bottleneck can carry them by name")
    p.add_argument("--no-a2e", action="store_true", help="skip the black-box counterpart (e.g. one trained already)")
    p.add_argument("--init-from", metavar="MODEL",
                   help="warm-start every network from this model folder or zoo name (same backbone, concepts "
                        "and kind), e.g. to continue a model on a larger corpus")
    p.add_argument("--log-explanations", metavar="DIR",
                   help="log each epoch's explanation of fixed validation clips (concept r, head, contributions, "
                        "attribution maps, listenable parts) as TensorBoard events in DIR/<network>: "
                        "tensorboard --logdir DIR")
    add_device_argument(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("train-speech", help="train (or fine-tune) an explainable spoken-digit or speaker-sex classifier "
                       "and its black-box twins on a corpus from `midlevel corpus speech` or on AudioMNIST")
    p.add_argument("--corpus", required=True, help="a spoken-digit corpus folder (labels.csv, audio/) or an AudioMNIST "
                   "clone (the folder holding data/; speaker-disjoint splits, concepts from the lexicon or Praat)")
    p.add_argument("--out", required=True, help="output folder (models/, results.json; resumable)")
    p.add_argument("--task", choices=["digit", "sex"], default="digit")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-black-box", action="store_true", help="train only the explainable model")
    p.add_argument("--init-from", metavar="MODEL", help="fine-tune: start from this zoo entry or model folder of the "
                   "same task (and each black box from its zoo twin) instead of from scratch")
    p.add_argument("--lr", type=float, help="learning rate (default 2e-3; 5e-4 with --init-from)")
    p.add_argument("--log-explanations", metavar="DIR", help="TensorBoard explanations per epoch (see train)")
    add_device_argument(p)
    p.set_defaults(func=cmd_train_speech)
    p = sub.add_parser("train-heart", help="train an explainable normal/abnormal phonocardiogram classifier, its "
                       "black-box twin and a cardiac-cycle segmenter on a corpus from `midlevel corpus heart`")
    p.add_argument("--corpus", required=True, help="a PCG corpus folder (PhysioNet layout + concepts.csv, segments/)")
    p.add_argument("--out", required=True, help="output folder (models/, results.json; resumable)")
    p.add_argument("--heldout", help="a corpus of another seed, scored whole")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-black-box", action="store_true", help="train only the explainable model and the segmenter")
    p.add_argument("--backbone", default="compact_pcg_beats", choices=["compact_pcg_beats", "compact_pcg"],
                   help="compact_pcg_beats: with the heart rate from the segmenter's S1 onsets (default); "
                        "compact_pcg: without (the first models)")
    p.add_argument("--concepts", default="card10", choices=["card10", "card12"],
                   help="what the explainable model hears: card10, the issue's ten cardiac concepts (default), or "
                        "card12, those and the share of ectopic beats and a holosystolic murmur")
    p.add_argument("--log-explanations", metavar="DIR", help="TensorBoard explanations per epoch (see train)")
    add_device_argument(p)
    p.set_defaults(func=cmd_train_heart)
    corpus = sub.add_parser("corpus", help="the controlled corpus").add_subparsers(dest="corpus_command", required=True)
    p = corpus.add_parser("build", help="render a controlled corpus (resumable; deterministic for a seed)")
    p.add_argument("--out", required=True, help="corpus folder")
    p.add_argument("--n", type=int, required=True, help="number of clips")
    p.add_argument("--seconds", type=float, default=10.0, help="clip length")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="rendering processes")
    p.add_argument("--format", default="flac", choices=["flac", "mp3", "wav"], help="audio file format")
    p.add_argument("--only-split", choices=["train", "val", "test"],
                   help="draw clips only from this split's pieces (a held-out corpus built with another seed)")
    p.add_argument("--clips-per-piece", type=int, default=3,
                   help="consecutive clips drawn from one piece (1: as many distinct pieces as the catalogue allows)")
    p.add_argument("--conditions", choices=["dry", "randomised"], default="dry",
                   help="recording conditions: dry (one soundfont, no room, fixed gain, lossless) or randomised "
                        "(soundfont, room, EQ, compression, level, noise and codec drawn per clip; same clips and "
                        "labels as the dry build of the seed; datasets.controlled.conditions)")
    p.set_defaults(func=cmd_corpus_build)
    p = corpus.add_parser("vocode", help="add phase-vocoder variants of a built corpus's training clips (pitch shift, "
                                         "time stretch, shift-and-back; labels moved; datasets.controlled.vocoded)")
    p.add_argument("--from", dest="source", required=True, help="a built controlled corpus")
    p.add_argument("--out", required=True, help="the new corpus folder (the source's audio is linked, not copied)")
    p.add_argument("--share", type=float, default=1.0, help="share of the training clips that get a variant")
    p.add_argument("--max-semitones", type=int, default=4, help="largest shift, in semitones")
    p.add_argument("--max-stretch", type=float, default=1.4, help="largest speed factor (and its inverse)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_corpus_vocode)
    p = corpus.add_parser("speech", help="synthesise the controlled spoken-digit corpus (espeak-ng, flite, festival "
                          "voices; resumable; deterministic for a seed)")
    p.add_argument("--out", required=True, help="corpus folder")
    p.add_argument("--reps", type=int, default=5, help="repetitions of each digit by each voice")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="synthesis processes")
    p.add_argument("--conditions", choices=["dry", "randomised"], default="randomised",
                   help="recording conditions after synthesis: none, or the music corpus's randomised ones")
    p.set_defaults(func=cmd_corpus_speech)
    p = corpus.add_parser("heart", help="simulate the controlled phonocardiogram corpus in the PhysioNet 2016 layout "
                          "(concepts and per-beat segmentation known; resumable; deterministic for a seed)")
    p.add_argument("--out", required=True, help="corpus folder (training-a ... training-f, concepts.csv, segments/)")
    p.add_argument("--n", type=int, required=True, help="number of recordings")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="rendering processes")
    p.add_argument("--seconds", type=float, default=15.0, help="length of each recording (5-120 s)")
    p.add_argument("--noise", choices=["clean", "randomised"], default="randomised",
                   help="recording conditions: clean (sensor noise only, no band-limiting) or randomised (motion, "
                        "breathing, talking, intestinal sounds, sensor noise, stethoscope band and gain drawn per "
                        "recording; same patients and labels)")
    p.set_defaults(func=cmd_corpus_heart)
    add_export_parser(sub)
    add_finetune_parser(sub)
    add_annotate_parser(sub)
    p = sub.add_parser("models", help="list the zoo's checkpoints with their held-out scores; * marks the default")
    p.add_argument("--all", action="store_true", help="also list superseded entries (not installed)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("evaluate", help="score a model on a labelled data set: r [95%% CI], r2 and n per concept "
                                        "and target")
    p.add_argument("--model", help="zoo name or model folder (default: the zoo's default model)")
    p.add_argument("--data", required=True,
                   help="a folder in the Mid-level layout (metadata_annotations/annotations.csv, audio/, targets "
                        "from mean_ratings_set1.csv) or the Soundtracks layout (mean_ratings_set1.csv), or a CSV "
                        "with a 'file' column and columns named like the model's concepts and/or targets")
    p.add_argument("--audio-dir", help="where the audio is (default: the layout's audio folder; for a CSV, the "
                                       "CSV's folder, which its paths are relative to)")
    p.add_argument("--split", choices=["test", "val", "train", "all"],
                   help="which clips (default: test where the data set records a split -- the controlled corpus's "
                        "metadata.csv or a CSV's 'split' column -- as the model cards were scored; else all)")
    p.add_argument("--path", choices=["auto", "window", "track"], default="auto",
                   help="window: each clip's first window through the spectrogram cache, exactly as the cards were "
                        "scored; track: the model's own predict() over every window; auto (default): window when "
                        "every clip fits in one window, else track")
    p.add_argument("--cache-dir", help="keep the spectrogram cache here (window path; default: a temporary folder)")
    p.add_argument("--resamples", type=int, default=1000,
                   help="bootstrap resamples for the 95%% intervals of r, by piece where the data set names "
                        "pieces, else by clip (seed 0; 0: no intervals)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--out", help="also write the JSON result to this file")
    p.set_defaults(func=cmd_evaluate)
    return parser


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings to the user (deprecated names, superseded entries) as one line, not a source excerpt."""
    print(f"midlevel: warning: {message}", file=file or sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if argv is None:  # a process of our own (the console script), not a call from someone's program
        import torch

        from .ioutil import fix_mmap_threshold

        fix_mmap_threshold()
        # flush denormals before torch starts its worker threads, which inherit the setting only then
        # (training.loops.flush_denormals covers the calling thread alone)
        torch.set_flush_denormal(True)
    try:
        with warnings.catch_warnings():  # restored afterwards: a caller's own warning display is theirs
            warnings.showwarning = _warning_line
            return args.func(args)
    except USER_ERRORS as exc:
        print(f"midlevel: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`midlevel models | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("midlevel: interrupted (work already written is kept; rerun the same command to resume where "
              "it supports resuming)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
