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

Extending (``add_concepts``, ``midlevel finetune --add-concepts``): the data's concept columns become
concepts added after the base's, which are kept (all, or the ``keep_concepts`` named). The concept
layer grows: the base's rows for the kept concepts, rows for the added ones started as the linear probe.
In ``full`` and ``joint`` the kept concepts are held to the frozen base's own outputs on the same input
(distillation: their rescaled squared error to the base counts ``keep_weight`` times as much as the
added concepts' error to the ratings, ``loops.Distillation``); in ``freeze`` the backbone and the kept
rows are the base's, so the kept concepts are exactly the base's. ``head`` is refused (it learns no
concept). Without target ratings the base's head is kept for the kept concepts and gives the added ones
zero weight (the targets are the base's, through the kept concepts); a dropped concept whose head terms
are not all zero is then refused, as no head could be refitted. With target ratings a head (the base's
type, or ``head``) is fitted on all the concepts. The result and card state the added concepts' scores
and how far each kept one drifted from the base's predictions on the held-out parts (Pearson r and
mean absolute change). Refused: an added column named like a kept concept, a concept scale other than
the base's, a base without concepts, a kept name the base does not have.

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
import difflib
import json
import math
import numbers
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.linear_model import RidgeCV

from ..checkpoint import ModelLoadError
from ..config import ModelConfig
from ..datasets import DatasetError
from ..datasets.errors import normalise_name
from ..errors import MidlevelError, refuse
from ..heads import HEADS

#: the heads fine-tuning fits on rated targets (the classification heads take class labels: not here yet)
RATING_HEADS = {k: v for k, v in HEADS.items() if k in ("linear", "gam")}
from ..ioutil import atomic_write_text, output_path_problem, sha256_file
from ..model import TwoStageModel
from ..zoo import load, weights_sha256
from .annotations import Annotations, check_audio, read_finetune_annotations
from .cache import cache_file, cache_key, cached_log_spectrograms
from .data import LabelledClips
from .distributed import DeviceError, resolve_device
from .loops import (ArraySet, Distillation, TrainSettings, batched_outputs, network_outputs, predict_targets,
                    spectrogram_predictions, train_network, validation_score)
from .metrics import pearson_per_column, score_outputs
from .recipes import evaluate

MODES = ("full", "freeze", "head", "joint")
MIN_PART = 3  # clips per split part: fewer cannot give a meaningful Pearson r
PROBE_ALPHAS = np.logspace(-3, 4, 15)
DEFAULT_KEEP_WEIGHT = 3.0  # the kept concepts' distillation loss against the added ones' rating loss
IDENTITY_NOTE = ("no target ratings were given for these concepts: the head is the identity, so each "
                 "target is a concept and its explanation is trivially exact")


class FinetuneError(MidlevelError, ValueError):
    """Options that cannot work together, or an output folder that must not be touched."""


@dataclass
class Plan:
    """The output model's config and what is carried over from the base."""

    config: ModelConfig
    same_concepts: bool  # continue from the base's concept layer
    head: str  # "keep" (base head), "fit" (fitted on targets), "identity" (no targets, new concepts),
    #            "extend" (the base head for the kept concepts, zero for the added ones)
    kept: list[str] = field(default_factory=list)  # extending: the base's concepts kept (first, in its order)
    added: list[str] = field(default_factory=list)  # extending: the data's concepts, after the kept ones
    dropped: list[str] = field(default_factory=list)  # extending: the base's concepts not kept

    @property
    def extends(self) -> bool:
        return bool(self.kept)


# -- deciding what to build --------------------------------------------------------------------
def plan_model(base: ModelConfig, data: Annotations, scales: dict[str, tuple[float, float]], mode: str,
               head: str | None) -> Plan:
    """Decide the output config; reorders ``data.concepts`` to the base's order when they are the base's."""
    if head is not None and head not in RATING_HEADS:
        raise FinetuneError(f"unknown head type {head!r}; choose from {sorted(RATING_HEADS)}")
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


def _did_you_mean(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def keep_problems(base: ModelConfig, keep: Sequence[str] | None) -> list[str]:
    """What is wrong with ``keep_concepts`` for this base (names normalised as the CSV's columns are)."""
    if keep is None:
        return []
    names = [normalise_name(str(k)) for k in keep]
    if not names:
        return ["keep_concepts (--keep-concepts) names no concept; name at least one of the base model's "
                f"concepts {base.concept_names} (to keep none, fine-tune without --add-concepts)"]
    return [f"keep_concepts (--keep-concepts): {n!r} is not a concept of the base model"
            f"{_did_you_mean(n, base.concept_names)}; its concepts: {', '.join(base.concept_names)}"
            for n in dict.fromkeys(names) if n not in base.concept_names]


def contributing(head, names: Sequence[str], scale: Sequence[float]) -> list[str]:
    """The concepts of ``names`` whose head terms are not zero everywhere on the concept scale."""
    grid = np.repeat(np.linspace(scale[0], scale[1], 101)[:, None], len(head.concept_names), axis=1)
    terms = np.abs(head.contributions(grid)).max(axis=(0, 1))
    return [n for n in names if terms[head.concept_names.index(n)] > 0]


def plan_extension(base: TwoStageModel, data: Annotations, scales: dict[str, tuple[float, float]], mode: str,
                   head: str | None, keep: Sequence[str] | None, concept_scale: Sequence[float] | None) -> Plan:
    """The output config when the data's concepts are added to the base's (``keep`` valid: ``keep_problems``);
    every problem raised together."""
    bcfg = base.config
    wanted = {normalise_name(str(k)) for k in keep} if keep is not None else set(bcfg.concept_names)
    kept = [c for c in bcfg.concept_names if c in wanted]
    dropped = [c for c in bcfg.concept_names if c not in wanted]
    added = list(data.concepts.columns)
    problems = []
    if mode == "head":
        problems.append(f"mode 'head' keeps the base model's concept network as it is, so it cannot learn the added "
                        f"concepts {added}; use mode 'freeze' (a linear probe for them; the kept concepts stay "
                        "exactly the base's) or 'full'")
    clash = [c for c in added if c in kept]
    if clash:
        problems.append(f"{data.source}: column(s) {clash} are concepts of the base model that --add-concepts keeps; "
                        "a concept cannot be both kept and added: leave the column out (--concepts), or drop it "
                        "from the kept concepts (--keep-concepts) to learn it anew from these ratings")
    if concept_scale is not None and tuple(scales["concept"]) != tuple(bcfg.concept_scale):
        problems.append(f"rating scale mismatch: the added concepts' ratings are read on the "
                        f"{_scale_text(scales['concept'])} (--concept-scale), but the base model's concepts are on "
                        f"the {_scale_text(bcfg.concept_scale)}; an extended model has one concept scale: rescale "
                        "the ratings to the base's")
    if data.targets is None:
        if mode == "joint":
            problems.append(f"mode {mode!r} needs target ratings (a targets CSV or target columns)")
        if head is not None:
            problems.append("a head type was given but no target ratings to fit it on")
        used = contributing(base.head, dropped, bcfg.concept_scale)
        if used:
            problems.append(f"--keep-concepts drops {used}, which the base model's head uses; without target "
                            "ratings the head cannot be refitted: give target ratings (--targets or "
                            "--target-columns), or keep those concepts")
    refuse([FinetuneError(p) for p in problems])
    names = kept + added
    if data.targets is None:
        params = dict(bcfg.head_params)
        if isinstance(params.get("monotone"), dict):  # constraints of dropped concepts go with them
            params["monotone"] = {c: v for c, v in params["monotone"].items() if c in kept} or None
        config = replace(bcfg, concept_names=names, head_params=params)
        return Plan(config, False, "extend", kept, added, dropped)
    kind = head or bcfg.head
    config = replace(bcfg, concept_names=names, target_names=list(data.targets.columns),
                     target_scale=scales["target"], head=kind,
                     head_params={"concept_range": list(bcfg.concept_scale)} if kind == "gam" else {})
    return Plan(config, False, "fit", kept, added, dropped)


# -- building and fitting ----------------------------------------------------------------------
def embeddings(model: TwoStageModel, data: ArraySet, batch_size: int = 64) -> np.ndarray:
    """Backbone outputs (N, D) in eval mode: what the concept layer reads."""
    return batched_outputs(model, data, model.backbone, batch_size)


def fit_probe(model: TwoStageModel, train: ArraySet, rows: Sequence[int] | None = None) -> None:
    """Concept layer = ridge regression on frozen embeddings, penalty per concept by leave-one-out CV
    (``rows``: only those concepts' rows, from those columns of ``train.concepts``; default all)."""
    if rows is None:
        ridge = RidgeCV(alphas=PROBE_ALPHAS, alpha_per_target=True).fit(embeddings(model, train), train.concepts)
        with torch.no_grad():
            model.concept_layer.weight.copy_(torch.as_tensor(ridge.coef_.reshape(model.concept_layer.weight.shape)))
            model.concept_layer.bias.copy_(torch.as_tensor(np.reshape(ridge.intercept_, -1)))
        return
    rows = list(rows)
    ridge = RidgeCV(alphas=PROBE_ALPHAS, alpha_per_target=True).fit(embeddings(model, train), train.concepts[:, rows])
    weight, bias = model.concept_layer.weight, model.concept_layer.bias
    with torch.no_grad():
        weight[rows] = torch.as_tensor(np.reshape(ridge.coef_, (len(rows), -1)), dtype=weight.dtype)
        bias[rows] = torch.as_tensor(np.reshape(ridge.intercept_, -1), dtype=bias.dtype)


#: per head type, the state tensors with a concept axis (and which axis); the others do not depend on the concepts
CONCEPT_AXES = {"linear": {"weight": 1}, "gam": {"increments": 1, "basis_mean": 0, "step_min": 1, "step_max": 1}}
#: of those, the ones that make a concept's terms: zero for an added concept, so its terms are zero
TERM_TENSORS = ("weight", "increments")


def grow_head(base_head, head, columns: Sequence[int]) -> None:
    """``head`` (the kept concepts first, then the added ones) takes ``base_head``'s state: concept i of
    ``head`` gets the terms of the base's concept ``columns[i]``, the added concepts zero terms."""
    axes = CONCEPT_AXES[head.kind]
    state, index = head.state_dict(), torch.as_tensor(list(columns), dtype=torch.long)
    for name, value in base_head.state_dict().items():
        if name not in axes:
            if value.shape != state[name].shape:
                raise RuntimeError(f"{head.kind} head: {name} has a concept axis that grow_head does not know")
            state[name] = value.clone()
            continue
        grown = state[name].clone()
        if name in TERM_TENSORS:
            grown.zero_()
        grown.index_copy_(axes[name], torch.arange(len(index)), value.index_select(axes[name], index))
        state[name] = grown
    head.load_state_dict(state)


def _start_extension(base: TwoStageModel, plan: Plan, model: TwoStageModel, train: ArraySet) -> None:
    """The kept concepts' rows and head terms copied from the base, the added rows a linear probe."""
    columns = [base.config.concept_names.index(c) for c in plan.kept]
    n = len(plan.kept)
    with torch.no_grad():
        model.concept_layer.weight[:n] = base.concept_layer.weight[columns]
        model.concept_layer.bias[:n] = base.concept_layer.bias[columns]
    fit_probe(model, train, range(n, n + len(plan.added)))
    if plan.head == "extend":
        grow_head(base.head, model.head, columns)
    else:
        model.head.fit(network_outputs(model, train), train.targets)


def start_model(base: TwoStageModel, plan: Plan, train: ArraySet, seed: int) -> TwoStageModel:
    """The base network adapted in closed form only: what "before" measures and training starts from."""
    torch.manual_seed(seed)
    model = TwoStageModel(plan.config)
    model.frontend.load_state_dict(base.frontend.state_dict())
    model.backbone.load_state_dict(base.backbone.state_dict())
    if plan.extends:
        _start_extension(base, plan, model, train)
        return model.eval()
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
           run_dir: Path, progress: bool, distill: Distillation | None = None,
           callbacks: Sequence[Any] = (), device: str | None = "cpu") -> dict[str, Any] | None:
    """Adapt ``model`` in place as ``mode`` says; the training summary, or None without gradient training."""
    train = arrays["train"]
    summary = None
    if mode in ("full", "joint"):
        started = time.perf_counter()
        start_score = validation_score(model, settings, arrays["val"], distill)["score"]
        start_weights = copy.deepcopy(model.state_dict())
        state = train_network(model, train, arrays["val"], settings, run_dir, progress=progress, distill=distill,
                              callbacks=callbacks, device=device)
        kept_start = bool(start_score >= state["best_score"])
        if kept_start:
            model.load_state_dict(start_weights)
        summary = {"setup": settings.setup, "epochs_run": len(state["history"]), "best_epoch": state["best_epoch"],
                   "start_val_score": start_score, "best_val_score": state["best_score"], "kept_start": kept_start,
                   "seconds": time.perf_counter() - started, "history": state["history"]}
    elif mode == "freeze" and not plan.extends:  # extending: the start is this already (probe for the added)
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


def _load_base(base: str | Path, extending: bool = False) -> TwoStageModel:
    model = load(base, replace_superseded=False)  # fine-tune exactly the weights named, or refuse
    if not isinstance(model, TwoStageModel):
        if extending:
            raise ModelLoadError(f"{base}: is a {model.config.kind} model, without concepts for --add-concepts to "
                                 "keep; extending needs a two-stage model (audio -> concepts -> head)")
        raise ModelLoadError(f"{base}: is a {model.config.kind} model; fine-tuning needs a two-stage model "
                             "(audio -> concepts -> head)")
    return model


# -- extending: the kept concepts' teacher, drift and scores ------------------------------------
def _with_base_concepts(arrays: dict[str, ArraySet], base: TwoStageModel, plan: Plan) -> dict[str, ArraySet]:
    """Each part's concepts widened to the model's: the base's own (eval-mode) outputs for the kept concepts,
    then the ratings of the added ones. Training replaces the kept columns by the base's outputs on each
    batch as the model sees it (``loops.Distillation``); validation and the drift compare with these."""
    columns = [base.config.concept_names.index(c) for c in plan.kept]
    return {name: replace(part, concepts=np.hstack([network_outputs(base, part)[:, columns], part.concepts]))
            for name, part in arrays.items()}


def _distillation(base: TwoStageModel, plan: Plan, keep_weight: float) -> Distillation:
    columns = [base.config.concept_names.index(c) for c in plan.kept]
    return Distillation(base, columns, list(range(len(plan.kept))), float(keep_weight))


def _scores(model: TwoStageModel, data: ArraySet, clips: LabelledClips, plan: Plan) -> dict[str, Any]:
    """``recipes.evaluate``; extending, of the rated (added) concepts only, as ``midlevel evaluate`` selects them."""
    if not plan.extends:
        return evaluate(model, data, clips)
    concepts, targets = spectrogram_predictions(model, data)
    index = [model.config.concept_names.index(c) for c in clips.concept_names]
    columns = {"concepts": (clips.concepts, np.ascontiguousarray(concepts[:, index]), clips.concept_names)}
    if clips.targets is not None:
        columns["targets"] = (clips.targets, targets, clips.target_names)
    return {**score_outputs(columns), "n": len(clips)}


def _drift_table(then: np.ndarray, now: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, float]]:
    r = pearson_per_column(then, now)
    change = np.abs(now - then).mean(axis=0)
    table = {n: {"r": float(r[i]), "mean_abs_change": float(change[i])} for i, n in enumerate(names)}
    with np.errstate(all="ignore"):
        table["mean"] = {"r": float(np.nanmean(r)) if np.isfinite(r).any() else float("nan"),
                         "mean_abs_change": float(change.mean())}
    return table


def drift(model: TwoStageModel, base: TwoStageModel, data: ArraySet, plan: Plan) -> dict[str, Any]:
    """How far the kept concepts (and, with the base's head kept, the targets) moved from the base's own
    predictions on ``data`` (whose kept concept columns are the base's outputs): per column Pearson r and mean
    absolute change in rating units, and their means."""
    n = len(plan.kept)
    out = {"n": len(data), "concepts": _drift_table(data.concepts[:, :n], network_outputs(model, data)[:, :n],
                                                    plan.kept)}
    if plan.head == "extend":
        out["targets"] = _drift_table(predict_targets(base, data), predict_targets(model, data),
                                      plan.config.target_names)
    return out


# -- the whole run -----------------------------------------------------------------------------
def finetune(base: str | Path, annotations: str | Path, audio_dir: str | Path, out: str | Path, *,
             targets: str | Path | None = None, concepts: Sequence[str] | None = None,
             target_columns: Sequence[str] | None = None, concept_scale: Sequence[float] | None = None,
             target_scale: Sequence[float] | None = None, mode: str = "full", head: str | None = None,
             epochs: int = 20, batch_size: int = 16, lr: float = 3e-4, patience: int = 5, seed: int = 0,
             joint_weight: float = 0.5, split: Sequence[float] = (0.7, 0.15, 0.15), resample: bool = False,
             overwrite: bool = False, cache_dir: str | Path | None = None, progress: bool = True,
             add_concepts: bool = False, keep_concepts: Sequence[str] | None = None,
             keep_weight: float | None = None, callbacks: Sequence[Any] = (), device: str | None = "cpu"
             ) -> dict[str, Any]:
    """Fine-tune ``base`` (zoo name or model folder) on rated audio; returns what the card reports.

    ``annotations``: a ratings CSV (see ``training.annotations``); ``targets``: an optional second
    CSV of target ratings, or ``target_columns`` of the annotations. Scales default to the base's.
    ``add_concepts``: the rated concepts are added to the base's (all kept, or ``keep_concepts``), which
    are held to the base's predictions with weight ``keep_weight`` (default ``DEFAULT_KEEP_WEIGHT``; module
    docstring); giving it without ``add_concepts`` is refused rather than ignored.
    ``out`` becomes a model folder (``midlevel.load(out)``) with ``README.md`` (the model card) and
    ``finetune.json`` (this function's result). Re-running an interrupted call resumes it.
    ``callbacks``: passed to ``train_network`` (``training.callbacks``) in the modes that train by gradient
    (full, joint); the others train no network and call none. ``device``: where the network trains (cpu,
    cuda, cuda:N, mps, auto); the model is saved from the CPU. Fine-tuning runs in one process: under
    torchrun with several processes it is refused (a fine-tune is small; ``midlevel train`` scales out).
    """
    out = Path(out)
    base_model, data, plan, parts, scales = _checked_inputs(
        base, annotations, audio_dir, out, targets=targets, concepts=concepts, target_columns=target_columns,
        concept_scale=concept_scale, target_scale=target_scale, mode=mode, head=head, epochs=epochs,
        batch_size=batch_size, lr=lr, patience=patience, seed=seed, joint_weight=joint_weight, split=split,
        resample=resample, overwrite=overwrite, cache_dir=cache_dir, progress=progress,
        add_concepts=add_concepts, keep_concepts=keep_concepts, keep_weight=keep_weight, device=device)
    keep_weight = DEFAULT_KEEP_WEIGHT if keep_weight is None else float(keep_weight)
    bcfg = base_model.config
    settings = TrainSettings(setup="joint" if mode == "joint" else "concepts", epochs=epochs, batch_size=batch_size,
                             lr=lr, patience=patience, seed=seed, joint_weight=joint_weight, freeze_norm=plan.extends)
    request = json.loads(json.dumps({
        "base": _base_identity(base), "data": {str(f): sha256_file(f) for f in data.files},
        "audio": cache_key(data.paths, base_model.frontend, bcfg.window_samples),
        "concepts": list(data.concepts.columns),
        "targets": None if data.targets is None else list(data.targets.columns), "scales": scales, "mode": mode,
        "head": head, "split": list(split), "resample": resample, "settings": asdict(settings),
        **({"extend": {"kept": plan.kept, "added": plan.added, "keep_weight": keep_weight}} if plan.extends else {}),
    }))
    partial = open_staging(out, request, overwrite)
    arrays, clips = _labelled_arrays(data, parts, base_model, Path(cache_dir) if cache_dir else partial / "cache",
                                     progress)
    distill = None
    if plan.extends:
        arrays = _with_base_concepts(arrays, base_model, plan)
        distill = _distillation(base_model, plan, keep_weight)
    model = start_model(base_model, plan, arrays["train"], seed)
    before = {name: _scores(model, arrays[name], clips[name], plan) for name in ("val", "test")}
    training = _train(model, plan, mode, arrays, settings, partial / "run", progress, distill, callbacks, device)
    after = {name: _scores(model, arrays[name], clips[name], plan) for name in ("val", "test")}
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
    if plan.extends:
        result["extension"] = {"kept": plan.kept, "added": plan.added, "dropped": plan.dropped,
                               "keep_weight": keep_weight if mode in ("full", "joint") else None,
                               "drift": {part: drift(model, base_model, arrays[part], plan)
                                         for part in ("val", "test")}}
        if plan.head == "extend":
            notes.append(added_note(plan.added))
    provenance = {k: result[k] for k in ("base", "mode", "data", "split", "concepts_changed", "head")}
    if plan.extends:
        provenance["extension"] = {k: result["extension"][k] for k in ("kept", "added", "dropped", "keep_weight")}
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
                      concept_scale: Sequence[float] | None, target_scale: Sequence[float] | None,
                      add_concepts: bool = False, keep_concepts: Sequence[str] | None = None,
                      keep_weight: Any = None) -> list[str]:
    """What is wrong with ``finetune``'s settings, one phrase each (all of them, not the first)."""
    problems = []
    if keep_concepts is not None and not add_concepts:
        problems.append("keep_concepts (--keep-concepts) chooses the base's concepts to keep when adding concepts; "
                        "it needs add_concepts (--add-concepts)")
    if keep_weight is not None and not add_concepts:
        problems.append("keep_weight (--keep-weight) weighs the kept concepts' distillation when adding concepts; "
                        "it needs add_concepts (--add-concepts)")
    if keep_weight is not None and not (_finite(keep_weight) and keep_weight >= 0):
        problems.append(f"{_option('keep_weight')} must be a number >= 0; got {keep_weight!r}")
    if mode not in MODES:
        problems.append(f"{_option('mode')} must be one of {MODES}; got {mode!r}")
    if head is not None and head not in RATING_HEADS:
        problems.append(f"unknown head type {head!r}; choose from {sorted(RATING_HEADS)}")
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
                    progress: bool, add_concepts: bool = False, keep_concepts: Sequence[str] | None = None,
                    keep_weight: float | None = None, device: str | None = "cpu"
                    ) -> tuple[TwoStageModel, Annotations, Plan, dict[str, list[str]], dict]:
    """Every check of a fine-tuning run, before anything is written: the arguments, the output places,
    the base model, the whole annotation table(s), the split and every clip (header and, unless its
    spectrograms are cached already, a full decode). All problems are raised together (``Refusals``)."""
    bad_arguments = argument_problems(mode=mode, head=head, epochs=epochs, batch_size=batch_size, lr=lr,
                                      patience=patience, seed=seed, joint_weight=joint_weight, split=split,
                                      concept_scale=concept_scale, target_scale=target_scale,
                                      add_concepts=add_concepts, keep_concepts=keep_concepts, keep_weight=keep_weight)
    problems: list[MidlevelError] = [FinetuneError(p) for p in bad_arguments]
    try:
        resolve_device(device)
    except DeviceError as exc:
        problems.append(exc)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        problems.append(FinetuneError("finetune runs in one process, not under torchrun with several (WORLD_SIZE="
                                      f"{os.environ['WORLD_SIZE']}); use --device cuda for a GPU, or midlevel train to "
                                      "scale out"))
    problems += _output_problems(out, overwrite, cache_dir)
    base_model = data = plan = parts = None
    try:
        base_model = _load_base(base, extending=add_concepts)
    except MidlevelError as exc:
        problems.append(exc)
    bcfg = base_model.config if base_model is not None else None
    bad_keep = keep_problems(bcfg, keep_concepts) if bcfg is not None and add_concepts else []
    problems += [FinetuneError(p) for p in bad_keep]
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
        if not concepts and not add_concepts:  # extending: the columns are the added concepts, checked in the plan
            try:
                check_concept_columns(bcfg, data)
            except FinetuneError as exc:
                problems.append(exc)
        if mode in MODES and (head is None or head in RATING_HEADS) and None not in scales.values() and not table_problems:
            try:
                if add_concepts:
                    if not bad_keep:
                        plan = plan_extension(base_model, data, scales, mode, head, keep_concepts, concept_scale)
                else:
                    plan = plan_model(bcfg, data, scales, mode, head)
            except MidlevelError as exc:
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
        arrays[name] = ArraySet(spec, c, t, paths=list(paths))
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
    if "extension" in result:
        return (f"{result['base']['name']} extended with {', '.join(result['extension']['added'])} "
                f"({result['mode']}) on {result['data']['rows']} clips of {Path(result['data']['annotations']).name}")
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


def added_note(added: Sequence[str]) -> str:
    return (f"added concept(s) {', '.join(added)} have zero weight in the head (fine-tuned without target "
            "ratings): they are predicted and explained, but do not move the targets")


def _head_text(result: dict[str, Any]) -> str:
    extension = result.get("extension")
    if result["head"]["action"] == "extend":
        dropped = (f"; the dropped concept(s) {', '.join(extension['dropped'])} had no weight in it, so their "
                   "columns were removed" if extension["dropped"] else "")
        return (f"the base's `{result['head']['kind']}` head, unchanged for the kept concepts; the added concepts "
                f"have zero weight in it (no target ratings were given), so they do not move the targets{dropped}")
    if result["head"]["action"] == "keep":
        return "kept from the base model (no target ratings were given; the concepts are the base's)"
    if result["head"]["action"] == "identity":
        return IDENTITY_NOTE
    how = " and trained jointly" if result["mode"] == "joint" else " (on the predicted training concepts)"
    on = ("" if extension is None
          else f" on all {len(extension['kept']) + len(extension['added'])} concepts, kept and added,")
    return f"a `{result['head']['kind']}` head fitted{on} on the target ratings{how}"


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


def _drift_rows(result: dict[str, Any], kind: str) -> list[str]:
    drift = result["extension"]["drift"]
    rows = []
    for name in drift["test"][kind]:
        cells = [f"{drift[s][kind][name][m]:.3f}" for s in ("val", "test") for m in ("r", "mean_abs_change")]
        rows.append(f"| {'**mean**' if name == 'mean' else name} | " + " | ".join(cells) + " |")
    return rows


def extension_text(result: dict[str, Any]) -> str:
    """Markdown: which concepts were kept, added and dropped, and how far the kept ones (and the targets, when
    the base's head was kept) drifted from the base's own predictions on the held-out parts."""
    ext, drift = result["extension"], result["extension"]["drift"]
    if result["mode"] == "freeze":
        held = "exactly the base's (frozen backbone, the base's concept-layer rows)"
    else:
        held = (f"held to the base model's own predictions on the same input by distillation (keep weight "
                f"{ext['keep_weight']:g})")
    lines = [f"- kept ({len(ext['kept'])}): {', '.join(ext['kept'])}: {held}",
             f"- added ({len(ext['added'])}): {', '.join(ext['added'])}: learnt from the ratings (started as a linear "
             "probe of the base's features); their scores are in the metrics tables below",
             f"- dropped: {', '.join(ext['dropped']) if ext['dropped'] else 'none'}", "",
             f"Drift of the kept concepts from the base model's predictions on the same held-out clips "
             f"({drift['val']['n']} validation, {drift['test']['n']} test): Pearson r with the base's predictions and "
             "the mean absolute change in rating units.", "",
             "| kept concept | r val | mean abs change val | r test | mean abs change test |", "|---|---|---|---|---|",
             *_drift_rows(result, "concepts"), ""]
    if "targets" in drift["test"]:
        lines += ["The targets (the base's head, through the kept concepts), against the base model's:", "",
                  "| target | r val | mean abs change val | r test | mean abs change test |", "|---|---|---|---|---|",
                  *_drift_rows(result, "targets"), ""]
    return "\n".join(lines)


def model_card(result: dict[str, Any]) -> str:
    """README.md for the output folder, every number read from ``result`` (measured, not typed)."""
    data, split, base = result["data"], result["split"], result["base"]
    sizes, n_test = split["sizes"], result["metrics"]["after"]["test"]["n"]
    by = "artist (no artist in two parts)" if split["by"] == "artist" else "file"
    concept_layer = ("rebuilt for the new concepts (started as a linear probe of the frozen backbone)"
                     if result["concepts_changed"] else "continued from the base")
    if "extension" in result:
        concept_layer = ("grown: the base's rows for the kept concepts, new rows for the added ones (started as a "
                         "linear probe of the base's backbone)")
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
        *(["## Concepts kept and added", "", extension_text(result)] if "extension" in result else []),
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
