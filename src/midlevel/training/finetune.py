"""Fine-tune a two-stage model on new concept (and target) ratings.

``finetune(base, annotations, audio_dir, out, ...)`` and ``midlevel finetune`` share this code.

What is kept from the base: the front-end (with its normalisation statistics) and the backbone
always; the concept layer when the data's concepts are the base's (same names, any column order,
same scale); the head when there are no target ratings and the concepts are the base's.

Concepts that differ (other names, count or scale) get a new concept layer, started as a ridge
regression on the frozen backbone's embeddings (a linear probe, fitted in closed form) rather
than at random, so fine-tuning starts from the best the pretrained features offer linearly.

Modes: ``full`` trains backbone and concept layer (concept loss), then refits the head;
``freeze`` keeps the backbone and fits the concept layer as that linear probe; ``head`` keeps
the base's concept model and refits the head only (needs targets; seconds once the spectrograms
are cached: pass the same ``cache_dir``);
``joint`` trains backbone, concept layer and head together (needs targets).

The head, by case: with target ratings a head of the base's type (or ``head=``) is fitted on the
predicted training concepts (and trained on in ``joint``); without them the base's head is kept
when the concepts are the base's; when they are not, no head can be fitted, and the model's
targets are its concepts through an identity linear head (weight I, bias 0), said so in the
model's notes and card: a concept model, with nothing to say about the base's targets.

"Before" is the base network with closed-form adaptations only (the probe for new concepts, a
head fitted for new targets); "after" is the fine-tuned model. Both are measured per concept
(and per target) on the held-out validation and test parts; early stopping and the choice to
keep the starting weights when training does not beat them use the validation part only.

Nothing half-written: all inputs are checked before anything is written (every argument, the
output places, the base, each cell of the tables, each clip's header and a full decode of it),
and every problem found is reported at once (``errors.Refusals``); work happens in
``<out>.partial/`` (its ``request.json`` records the arguments and input hashes; the same
command resumes there; other arguments are refused once training has started there, and replace
it otherwise); the finished model folder is renamed to ``out`` at the end. An existing non-empty
``out`` is refused unless ``overwrite``, and even then replaced only by the complete new folder.
The full decode is skipped when the spectrogram cache of every part exists already (a resumed run:
the files were decoded then, and the cache's name changes with any file's size or time).
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.linear_model import RidgeCV

from ..checkpoint import ModelLoadError
from ..config import ModelConfig
from ..datasets import DatasetError
from ..errors import MidlevelError, refuse
from ..heads import HEADS
from ..ioutil import atomic_write_text, output_path_problem, sha256_file
from ..model import TwoStageModel
from ..zoo import load, weights_sha256
from .annotations import Annotations, check_audio, read_finetune_annotations
from .cache import cache_file, cache_key, cached_log_spectrograms
from .data import LabelledClips
from .loops import ArraySet, TrainSettings, batched_outputs, network_outputs, train_network, validation_score
from .recipes import evaluate

MODES = ("full", "freeze", "head", "joint")
MIN_PART = 3  # clips per split part: fewer cannot give a meaningful Pearson r
PROBE_ALPHAS = np.logspace(-3, 4, 15)
IDENTITY_NOTE = ("no target ratings were given for these concepts: the head is the identity, so each "
                 "target is a concept and its explanation is trivially exact")


class FinetuneError(MidlevelError, ValueError):
    """Options that cannot work together, or an output folder that must not be touched."""


@dataclass
class Plan:
    """The output model's config and what is carried over from the base."""

    config: ModelConfig
    same_concepts: bool  # continue from the base's concept layer
    head: str  # "keep" (base head), "fit" (fitted on targets), "identity" (no targets, new concepts)


# -- deciding what to build --------------------------------------------------------------------
def plan_model(base: ModelConfig, data: Annotations, scales: dict[str, tuple[float, float]], mode: str,
               head: str | None) -> Plan:
    """Decide the output config; reorders ``data.concepts`` to the base's order when they are the base's."""
    if head is not None and head not in HEADS:
        raise FinetuneError(f"unknown head type {head!r}; choose from {sorted(HEADS)}")
    concepts = list(data.concepts.columns)
    same = sorted(concepts) == sorted(base.concept_names) and scales["concept"] == tuple(base.concept_scale)
    if same:
        data.concepts = data.concepts[list(base.concept_names)]
    if mode == "head" and not same:
        raise FinetuneError(f"mode 'head' keeps the base model's concepts {base.concept_names}, but the data's "
                            f"concepts are {concepts}; use mode 'freeze' or 'full' to learn new ones")
    if data.targets is None:
        if mode in ("head", "joint"):
            raise FinetuneError(f"mode {mode!r} needs target ratings (a targets CSV or target columns)")
        if head is not None:
            raise FinetuneError("a head type was given but no target ratings to fit it on")
        if same:
            return Plan(base, True, "keep")
        config = replace(base, concept_names=concepts, concept_scale=scales["concept"], target_names=concepts,
                         target_scale=scales["concept"], head="linear", head_params={})
        return Plan(config, False, "identity")
    kind = head or base.head
    targets = list(data.targets.columns)
    config = replace(base, concept_names=list(data.concepts.columns), concept_scale=scales["concept"],
                     target_names=targets, target_scale=scales["target"], head=kind)
    if not (same and targets == list(base.target_names) and kind == base.head):
        config.head_params = {"concept_range": list(config.concept_scale)} if kind == "gam" else {}
    return Plan(config, same, "fit")


# -- building and fitting ----------------------------------------------------------------------
def embeddings(model: TwoStageModel, data: ArraySet, batch_size: int = 64) -> np.ndarray:
    """Backbone outputs (N, D) in eval mode: what the concept layer reads."""
    return batched_outputs(model, data, model.backbone, batch_size)


def fit_probe(model: TwoStageModel, train: ArraySet) -> None:
    """Concept layer = ridge regression on frozen embeddings, penalty per concept by leave-one-out CV."""
    ridge = RidgeCV(alphas=PROBE_ALPHAS, alpha_per_target=True).fit(embeddings(model, train), train.concepts)
    with torch.no_grad():
        model.concept_layer.weight.copy_(torch.as_tensor(ridge.coef_.reshape(model.concept_layer.weight.shape)))
        model.concept_layer.bias.copy_(torch.as_tensor(np.reshape(ridge.intercept_, -1)))


def start_model(base: TwoStageModel, plan: Plan, train: ArraySet, seed: int) -> TwoStageModel:
    """The base network adapted in closed form only: what "before" measures and training starts from."""
    torch.manual_seed(seed)
    model = TwoStageModel(plan.config)
    model.frontend.load_state_dict(base.frontend.state_dict())
    model.backbone.load_state_dict(base.backbone.state_dict())
    if plan.same_concepts:
        model.concept_layer.load_state_dict(base.concept_layer.state_dict())
    else:
        fit_probe(model, train)
    base_head_fits = (plan.same_concepts and plan.config.target_names == base.config.target_names
                      and plan.config.head == base.config.head and plan.config.head_params == base.config.head_params)
    if plan.head == "keep" or (plan.head == "fit" and base_head_fits):
        model.head.load_state_dict(base.head.state_dict())
    elif plan.head == "fit":
        model.head.fit(network_outputs(model, train), train.targets)
    else:  # identity: each target is its concept
        with torch.no_grad():
            model.head.weight.copy_(torch.eye(len(plan.config.concept_names)))
            model.head.bias.zero_()
    return model.eval()


def _train(model: TwoStageModel, plan: Plan, mode: str, arrays: dict[str, ArraySet], settings: TrainSettings,
           run_dir: Path, progress: bool) -> dict[str, Any] | None:
    """Adapt ``model`` in place as ``mode`` says; the training summary, or None without gradient training."""
    train = arrays["train"]
    summary = None
    if mode in ("full", "joint"):
        started = time.perf_counter()
        start_score = validation_score(model, settings, arrays["val"])["score"]
        start_weights = copy.deepcopy(model.state_dict())
        state = train_network(model, train, arrays["val"], settings, run_dir, progress=progress)
        kept_start = bool(start_score >= state["best_score"])
        if kept_start:
            model.load_state_dict(start_weights)
        summary = {"setup": settings.setup, "epochs_run": len(state["history"]), "best_epoch": state["best_epoch"],
                   "start_val_score": start_score, "best_val_score": state["best_score"], "kept_start": kept_start,
                   "seconds": time.perf_counter() - started, "history": state["history"]}
    elif mode == "freeze":
        fit_probe(model, train)
    if plan.head == "fit" and mode != "joint":
        model.head.fit(network_outputs(model, train), train.targets)
    return summary


# -- output folder: staging, resume, publishing -------------------------------------------------
def staging_dir(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FinetuneError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FinetuneError(f"{out}: exists and is not empty; pass --overwrite to replace it "
                            "(it is replaced only once the new model is complete)")


def open_staging(out: Path, request: dict[str, Any], overwrite: bool) -> Path:
    """``<out>.partial``: resumed when it holds this request; when it holds another, refused if that one had
    started training (or, with overwrite, discarded), else replaced, its content-addressed spectrogram cache
    kept (a run stopped while caching, or refused by an older version, must not block the corrected one)."""
    partial = staging_dir(out)
    partial.parent.mkdir(parents=True, exist_ok=True)
    fresh = None
    if partial.exists():
        old = _old_request(partial)
        if old == request:
            return partial
        if not overwrite and (partial / "run").exists():  # training progress that other arguments would lose
            changed = sorted(k for k in set(old) | set(request) if old.get(k) != request.get(k))
            raise FinetuneError(f"{partial}: holds an unfinished fine-tuning run with other arguments or inputs "
                                f"(differing: {', '.join(changed)}); re-run it with the same arguments to resume, "
                                "or pass --overwrite to discard it")
        # no training yet (or --overwrite): replaced; its spectrogram cache, named by content, is kept
        fresh = Path(tempfile.mkdtemp(prefix=f".{partial.name}.", dir=partial.parent))
        if (partial / "cache").is_dir():
            os.replace(partial / "cache", fresh / "cache")
        shutil.rmtree(partial)
    fresh = fresh or Path(tempfile.mkdtemp(prefix=f".{partial.name}.", dir=partial.parent))
    atomic_write_text(fresh / "request.json", json.dumps(request, indent=1, sort_keys=True) + "\n")
    os.replace(fresh, partial)  # the staging folder appears only with its request recorded
    return partial


def _old_request(partial: Path) -> dict[str, Any]:
    try:
        old = json.loads((partial / "request.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none, or damaged: not this request
        return {}
    return old if isinstance(old, dict) else {}


def publish(folder: Path, out: Path) -> None:
    """Move a complete model folder to ``out``; an old ``out`` is set aside first, then removed."""
    aside = None
    if out.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.replace(out, aside)
    os.replace(folder, out)
    if aside is not None:
        shutil.rmtree(aside)


def _base_identity(base: str | Path) -> dict[str, str]:
    return {"name": str(base), "weights_sha256": str(weights_sha256(base))}


def _load_base(base: str | Path) -> TwoStageModel:
    model = load(base, replace_superseded=False)  # fine-tune exactly the weights named, or refuse
    if not isinstance(model, TwoStageModel):
        raise ModelLoadError(f"{base}: is a {model.config.kind} model; fine-tuning needs a two-stage model "
                             "(audio -> concepts -> head)")
    return model


# -- the whole run -----------------------------------------------------------------------------
def finetune(base: str | Path, annotations: str | Path, audio_dir: str | Path, out: str | Path, *,
             targets: str | Path | None = None, concepts: Sequence[str] | None = None,
             target_columns: Sequence[str] | None = None, concept_scale: Sequence[float] | None = None,
             target_scale: Sequence[float] | None = None, mode: str = "full", head: str | None = None,
             epochs: int = 20, batch_size: int = 16, lr: float = 3e-4, patience: int = 5, seed: int = 0,
             joint_weight: float = 0.5, split: Sequence[float] = (0.7, 0.15, 0.15), resample: bool = False,
             overwrite: bool = False, cache_dir: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Fine-tune ``base`` (zoo name or model folder) on rated audio; returns what the card reports.

    ``annotations``: a ratings CSV (see ``training.annotations``); ``targets``: an optional second
    CSV of target ratings, or ``target_columns`` of the annotations. Scales default to the base's.
    ``out`` becomes a model folder (``midlevel.load(out)``) with ``README.md`` (the model card) and
    ``finetune.json`` (this function's result). Re-running an interrupted call resumes it.
    """
    out = Path(out)
    base_model, data, plan, parts, scales = _checked_inputs(
        base, annotations, audio_dir, out, targets=targets, concepts=concepts, target_columns=target_columns,
        concept_scale=concept_scale, target_scale=target_scale, mode=mode, head=head, epochs=epochs,
        batch_size=batch_size, lr=lr, patience=patience, seed=seed, joint_weight=joint_weight, split=split,
        resample=resample, overwrite=overwrite, cache_dir=cache_dir, progress=progress)
    bcfg = base_model.config
    settings = TrainSettings(setup="joint" if mode == "joint" else "concepts", epochs=epochs, batch_size=batch_size,
                             lr=lr, patience=patience, seed=seed, joint_weight=joint_weight)
    request = json.loads(json.dumps({
        "base": _base_identity(base), "data": {str(f): sha256_file(f) for f in data.files},
        "audio": cache_key(data.paths, base_model.frontend, bcfg.window_samples),
        "concepts": list(data.concepts.columns),
        "targets": None if data.targets is None else list(data.targets.columns), "scales": scales, "mode": mode,
        "head": head, "split": list(split), "resample": resample, "settings": asdict(settings),
    }))
    partial = open_staging(out, request, overwrite)
    arrays, clips = _labelled_arrays(data, parts, base_model, Path(cache_dir) if cache_dir else partial / "cache",
                                     progress)
    model = start_model(base_model, plan, arrays["train"], seed)
    before = {name: evaluate(model, arrays[name], clips[name]) for name in ("val", "test")}
    training = _train(model, plan, mode, arrays, settings, partial / "run", progress)
    after = {name: evaluate(model, arrays[name], clips[name]) for name in ("val", "test")}
    result = {
        "model": str(out), "name": out.name, "base": request["base"], "mode": mode,
        "data": {"annotations": str(data.source), "targets": None if targets is None else str(targets),
                 "layout": data.layout, "rows": len(data), "concepts": request["concepts"],
                 "concept_scale": list(scales["concept"]), "target_names": request["targets"],
                 "target_scale": list(scales["target"]) if data.targets is not None else None},
        "split": {"by": "artist" if data.artists is not None else "file", "seed": seed, "fractions": list(split),
                  "sizes": {k: len(v) for k, v in parts.items()}},
        "concepts_changed": not plan.same_concepts, "head": {"kind": plan.config.head, "action": plan.head},
        "settings": request["settings"], "training": training, "metrics": {"before": before, "after": after},
    }
    notes = list(bcfg.metadata.get("notes", [])) + ([IDENTITY_NOTE] if plan.head == "identity" else [])
    provenance = {k: result[k] for k in ("base", "mode", "data", "split", "concepts_changed", "head")}
    model.config = replace(plan.config, name=out.name, description=_description(result),
                           metadata={"notes": notes, "finetune": provenance})
    staged = partial / "model"
    model.save_pretrained(staged)
    atomic_write_text(staged / "finetune.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(staged / "README.md", model_card(result))
    publish(staged, out)
    shutil.rmtree(partial)
    return result


# -- every check before any work -------------------------------------------------------------------
def _option(name: str) -> str:
    return f"{name} (--{name.replace('_', '-')})"


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def argument_problems(*, mode: str, head: str | None, epochs: Any, batch_size: Any, lr: Any, patience: Any,
                      seed: Any, joint_weight: Any, split: Sequence[float],
                      concept_scale: Sequence[float] | None, target_scale: Sequence[float] | None) -> list[str]:
    """What is wrong with ``finetune``'s settings, one phrase each (all of them, not the first)."""
    problems = []
    if mode not in MODES:
        problems.append(f"{_option('mode')} must be one of {MODES}; got {mode!r}")
    if head is not None and head not in HEADS:
        problems.append(f"unknown head type {head!r}; choose from {sorted(HEADS)}")
    for name, value, least in (("epochs", epochs, 1), ("batch_size", batch_size, 1), ("patience", patience, 0),
                               ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
            problems.append(f"{_option(name)} must be a whole number >= {least}; got {value!r}")
    if not (_finite(lr) and lr > 0):
        problems.append(f"{_option('lr')}, the learning rate, must be a positive number; got {lr!r}")
    if not (_finite(joint_weight) and 0 <= joint_weight <= 1):
        problems.append(f"{_option('joint_weight')} must be a number from 0 to 1; got {joint_weight!r}")
    try:
        fractions = list(split)
    except TypeError:  # one number
        fractions = [split]
    if (len(fractions) != 3 or not all(_finite(f) and f >= 0 for f in fractions)
            or not np.isclose(sum(fractions), 1.0)):
        problems.append(f"{_option('split')} must be three non-negative train,val,test fractions summing to 1; "
                        f"got {fractions}")
    for name, scale in (("concept_scale", concept_scale), ("target_scale", target_scale)):
        if scale is not None and _scale(scale, None) is None:
            problems.append(f"{_option(name)}: a rating scale is (low, high) with low < high; got {scale!r}")
    return problems


def _output_problems(out: Path, overwrite: bool, cache_dir: str | Path | None) -> list[MidlevelError]:
    problems: list[MidlevelError] = []
    try:
        check_out(out, overwrite)
    except FinetuneError as exc:
        problems.append(exc)
    partial = staging_dir(out)
    where = partial / "request.json" if partial.is_dir() else partial
    if problem := output_path_problem(where):
        problems.append(FinetuneError(f"{out}: cannot write the output model there: {problem}"))
    if cache_dir is not None and (problem := output_path_problem(Path(cache_dir) / "logspec.npy")):
        problems.append(FinetuneError(f"{cache_dir}: cannot write the spectrogram cache there (--cache-dir): "
                                      f"{problem}"))
    return problems


def check_concept_columns(base: ModelConfig, data: Annotations) -> None:
    """Rating columns that are partly the base's concepts and partly not are refused when the concepts were
    not named: read as they are, one stray column would make a new concept set and drop the base's head."""
    columns = list(data.concepts.columns)
    extra = [c for c in columns if c not in base.concept_names]
    known = [c for c in columns if c in base.concept_names]
    if not extra or not known:
        return  # the base's concepts (all or some), or an entirely new set: both are meant
    one = len(extra) == 1
    named = ", ".join(map(repr, extra))
    which = (f"its {len(known)} concepts" if len(known) == len(base.concept_names)
             else f"{len(known)} of its {len(base.concept_names)} concepts")
    raise FinetuneError(
        f"{data.source}: " + (f"column {named} is not a concept" if one else f"columns {named} are not concepts")
        + f" of the base model, while the other rating columns are {which}; read as they are, the model would "
        f"get {len(columns)} concepts and lose the base's head. Name the concept columns: "
        f"--concepts {','.join(known)} leaves {'it' if one else 'them'} out; --concepts {','.join(columns)} "
        f"learns {'it as an added concept' if one else 'them as added concepts'} (a new concept layer; a head "
        f"only with target ratings); --target-columns {','.join(extra)} reads "
        f"{'it as a target rating' if one else 'them as target ratings'}")


def _checked_inputs(base: str | Path, annotations: str | Path, audio_dir: str | Path, out: Path, *,
                    targets: str | Path | None, concepts: Sequence[str] | None,
                    target_columns: Sequence[str] | None, concept_scale: Sequence[float] | None,
                    target_scale: Sequence[float] | None, mode: str, head: str | None, epochs: int,
                    batch_size: int, lr: float, patience: int, seed: int, joint_weight: float,
                    split: Sequence[float], resample: bool, overwrite: bool, cache_dir: str | Path | None,
                    progress: bool) -> tuple[TwoStageModel, Annotations, Plan, dict[str, list[str]], dict]:
    """Every check of a fine-tuning run, before anything is written: the arguments, the output places,
    the base model, the whole annotation table(s), the split and every clip (header and, unless its
    spectrograms are cached already, a full decode). All problems are raised together (``Refusals``)."""
    bad_arguments = argument_problems(mode=mode, head=head, epochs=epochs, batch_size=batch_size, lr=lr,
                                      patience=patience, seed=seed, joint_weight=joint_weight, split=split,
                                      concept_scale=concept_scale, target_scale=target_scale)
    problems: list[MidlevelError] = [FinetuneError(p) for p in bad_arguments]
    problems += _output_problems(out, overwrite, cache_dir)
    base_model = data = plan = parts = None
    try:
        base_model = _load_base(base)
    except MidlevelError as exc:
        problems.append(exc)
    bcfg = base_model.config if base_model is not None else None
    scales = {"concept": _scale(concept_scale, bcfg and bcfg.concept_scale),
              "target": _scale(target_scale, bcfg and bcfg.target_scale)}
    table_problems: list[MidlevelError] = []
    try:
        data = read_finetune_annotations(annotations, audio_dir, concept_scale=scales["concept"],
                                         target_scale=scales["target"], concept_columns=concepts,
                                         target_columns=target_columns, targets_file=targets, found=table_problems)
    except MidlevelError as exc:
        table_problems.append(exc)
    problems += table_problems
    if data is not None and bcfg is not None:
        if not concepts:
            try:
                check_concept_columns(bcfg, data)
            except FinetuneError as exc:
                problems.append(exc)
        if mode in MODES and (head is None or head in HEADS) and None not in scales.values() and not table_problems:
            try:
                plan = plan_model(bcfg, data, scales, mode, head)
            except FinetuneError as exc:
                problems.append(exc)
        if not bad_arguments and not table_problems:
            try:
                parts = _split(data, split, seed)
            except MidlevelError as exc:
                problems.append(exc)
        try:
            check_audio(data, bcfg.sample_rate, allow_lower_rates=resample, progress=progress,
                        decode=not _cached(data, parts, base_model, out, cache_dir))
        except MidlevelError as exc:
            problems.append(exc)
    refuse(problems, " (nothing was written)")
    return base_model, data, plan, parts, scales


def _cached(data: Annotations, parts: dict[str, list[str]] | None, base: TwoStageModel, out: Path,
            cache_dir: str | Path | None) -> bool:
    """Whether every part's spectrograms are cached already (then the files were decoded when it was made)."""
    if parts is None:
        return False
    cache = Path(cache_dir) if cache_dir else staging_dir(out) / "cache"
    try:
        return all(cache_file(data.rows(ids)[0], base.frontend, base.config.window_samples, cache).is_file()
                   for ids in parts.values())
    except OSError:  # a file gone: check_audio names it
        return False


def _labelled_arrays(data: Annotations, parts: dict[str, list[str]], base: TwoStageModel, cache: Path,
                     progress: bool) -> tuple[dict[str, ArraySet], dict[str, LabelledClips]]:
    """Per split part: cached spectrograms of the base's window with their ratings, and the clips for ``evaluate``."""
    arrays, clips = {}, {}
    targets = [] if data.targets is None else list(data.targets.columns)
    for name, ids in parts.items():
        paths, c, t = data.rows(ids)
        spec = cached_log_spectrograms(paths, base.frontend, base.config.window_samples, cache, progress=progress)
        arrays[name] = ArraySet(spec, c, t)
        clips[name] = LabelledClips(list(ids), paths, c, t, list(data.concepts.columns), targets)
    return arrays, clips


def _scale(given: Sequence[float] | None, default: Sequence[float] | None) -> tuple[float, float] | None:
    """The scale to read ratings on: the given one, else the base's; None (ratings read without a range)
    when the given one is not a scale (``argument_problems`` reports it) or there is no base to ask."""
    if given is None:
        return None if default is None else tuple(float(v) for v in default)  # type: ignore[return-value]
    pair = list(given) if isinstance(given, (list, tuple, np.ndarray)) else []
    if len(pair) == 2 and all(map(_finite, pair)) and pair[0] < pair[1]:
        return tuple(float(v) for v in pair)  # type: ignore[return-value]
    return None


def _split(data: Annotations, fractions: Sequence[float], seed: int) -> dict[str, list[str]]:
    if len(data) < 3 * MIN_PART:
        raise DatasetError(data.source, f"too few rows to split: {len(data)} rated clip(s); fine-tuning needs "
                           f"train, validation and test parts of at least {MIN_PART} clips each")
    parts = data.split(fractions, seed)
    small = {k: len(v) for k, v in parts.items() if len(v) < MIN_PART}
    if small:
        by = "artist" if data.artists is not None else "file"
        raise DatasetError(data.source, f"too few rows to split: the split by {by} of {len(data)} clip(s) leaves "
                           f"{small} (at least {MIN_PART} each are needed); add rows or change the split fractions")
    return parts


def _description(result: dict[str, Any]) -> str:
    return (f"{result['base']['name']} fine-tuned ({result['mode']}) on {result['data']['rows']} clips of "
            f"{Path(result['data']['annotations']).name}")


# -- the model card ----------------------------------------------------------------------------
def _scalar(value: Any) -> str:
    """A YAML scalar: JSON's spelling, except YAML's for NaN and infinities."""
    if isinstance(value, float) and not np.isfinite(value):
        return ".nan" if np.isnan(value) else ("-.inf" if value < 0 else ".inf")
    return json.dumps(value)


def _yaml(value: Any, indent: int = 0) -> list[str]:
    """Block-style YAML for dicts, lists and scalars."""
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines += [f"{pad}{key}:", *_yaml(item, indent + 2)]
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    else:
        for item in value:
            block = _yaml(item, indent + 2) if isinstance(item, (dict, list)) else [f"{pad}  {_scalar(item)}"]
            lines += [f"{pad}- {block[0].lstrip()}", *block[1:]]
    return lines


def _metric_rows(result: dict[str, Any], kind: str, split: str) -> list[str]:
    before = result["metrics"]["before"][split].get(kind, {})
    after = result["metrics"]["after"][split].get(kind, {})
    rows = []
    for name, now in after.items():
        then = before.get(name)
        cells = [f"{then['r']:.3f}" if then else "n/a", f"{now['r']:.3f}",
                 f"{then['r2']:.3f}" if then else "n/a", f"{now['r2']:.3f}"]
        label = f"**{name}**" if name == "mean" else name
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


def metric_tables(result: dict[str, Any], split: str = "test") -> str:
    """Markdown: Pearson r and R^2 before and after fine-tuning, per concept and per target."""
    parts = []
    for kind in ("concepts", "targets"):
        if kind in result["metrics"]["after"][split]:
            parts += [f"| {kind[:-1]} | r before | r after | R^2 before | R^2 after |", "|---|---|---|---|---|",
                      *_metric_rows(result, kind, split), ""]
    return "\n".join(parts)


def _front_matter(result: dict[str, Any]) -> list[str]:
    """Hugging Face style YAML (metric names as in ``zoo.cards``): base, tags, test r of each column after."""
    after = result["metrics"]["after"]["test"]
    metrics = [{"type": "pearsonr", "name": f"mean {kind[:-1]} r" if name == "mean" else f"{name} r",
                "value": round(v["r"], 4)}
               for kind in ("concepts", "targets") for name, v in after.get(kind, {}).items()]
    front = {"library_name": "midlevel", "base_model": result["base"]["name"],
             "tags": ["audio", "music", "interpretable", "concept-bottleneck", "fine-tuned"],
             "model-index": [{"name": result["name"], "results": [{
                 "task": {"type": "audio-regression", "name": "concept and target ratings"},
                 "dataset": {"name": Path(result["data"]["annotations"]).name, "type": "custom", "split": "test"},
                 "metrics": metrics}]}]}
    return ["---", *_yaml(front), "---"]


def _head_text(result: dict[str, Any]) -> str:
    if result["head"]["action"] == "keep":
        return "kept from the base model (no target ratings were given; the concepts are the base's)"
    if result["head"]["action"] == "identity":
        return IDENTITY_NOTE
    how = " and trained jointly" if result["mode"] == "joint" else " (on the predicted training concepts)"
    return f"a `{result['head']['kind']}` head fitted on the target ratings{how}"


def _training_text(training: dict[str, Any] | None) -> str:
    if training is None:
        return "No gradient training (closed-form fits only)."
    kept = ("; training did not beat the start on validation, so the starting weights were kept"
            if training["kept_start"] else "")
    return (f"{training['setup']} setup, {training['epochs_run']} epoch(s) run, best epoch {training['best_epoch']} "
            f"(validation score {training['best_val_score']:.3f}; start {training['start_val_score']:.3f}){kept}; "
            f"{training['seconds']:.0f} s.")


def _scale_text(scale: Sequence[float]) -> str:
    return f"scale {scale[0]:g}-{scale[1]:g}"


def model_card(result: dict[str, Any]) -> str:
    """README.md for the output folder, every number read from ``result`` (measured, not typed)."""
    data, split, base = result["data"], result["split"], result["base"]
    sizes, n_test = split["sizes"], result["metrics"]["after"]["test"]["n"]
    by = "artist (no artist in two parts)" if split["by"] == "artist" else "file"
    concept_layer = ("rebuilt for the new concepts (started as a linear probe of the frozen backbone)"
                     if result["concepts_changed"] else "continued from the base")
    targets = (", ".join(data["target_names"]) + f" ({_scale_text(data['target_scale'])})"
               if data["target_names"] else "none given")
    lines = [
        *_front_matter(result), "", f"# {result['name']}", "",
        f"A two-stage `midlevel` model fine-tuned from `{base['name']}` (mode `{result['mode']}`). "
        f"Load it with `midlevel.load(\"{result['model']}\")`.", "",
        "## Base model", "",
        f"- `{base['name']}` (weights sha256 `{base['weights_sha256'][:16]}...`)",
        f"- concept layer: {concept_layer}", f"- head: {_head_text(result)}", "",
        "## Fine-tuning data", "",
        f"- annotations: `{data['annotations']}` ({data['layout']} layout)"
        + (f"; targets: `{data['targets']}`" if data["targets"] else ""),
        f"- size: {data['rows']} rated clips",
        f"- concepts ({len(data['concepts'])}, {_scale_text(data['concept_scale'])}): " + ", ".join(data["concepts"]),
        f"- targets: {targets}", "",
        "## Split", "",
        f"By {by}, seed {split['seed']}, fractions " + "/".join(f"{f:g}" for f in split["fractions"])
        + f": {sizes['train']} train, {sizes['val']} validation, {sizes['test']} test clips.", "",
        "## Training", "", _training_text(result["training"]), "",
        "## Metrics on the held-out test part", "",
        "*Before*: the base network adapted in closed form only (a linear probe for new concepts, a head fitted "
        f"for new targets). *After*: the fine-tuned model. Pearson r and R^2 per column on {n_test} test clips"
        + (" (few clips: read the numbers as rough)" if n_test < 30 else "")
        + "; r is nan where a prediction is constant, and the mean row skips those.", "",
        metric_tables(result, "test"),
        "## Metrics on the validation part (used for early stopping)", "", metric_tables(result, "val"),
    ]
    return "\n".join(lines).rstrip() + "\n"
