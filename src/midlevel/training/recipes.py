"""The paper's setups end to end on a data set in the Mid-level layout, with one results file.

``train_family`` trains, for one backbone, everything the comparison table needs:

- ``a2mid``: the concept model (audio -> mid-level ratings);
- ``a2mid2e-<head>``: that concept model with a head fitted on its *predicted* training
  concepts (sequential), and ``independent-<head>`` (head fitted on the *true* concepts,
  evaluated on predicted ones);
- ``joint-<head>``: audio -> concepts -> head trained together, the head starting from its fit on
  the true training concepts;
- ``a2e``: the black box with the same backbone.

Every model is saved as a model folder under ``out_dir`` and ``results.json`` holds the
per-concept and per-target Pearson r and R^2 on the validation and test splits, plus wall times.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import precision_recall_fscore_support

from ..backbones import EXTENDS
from ..config import FrontendConfig, ModelConfig
from ..datasets.controlled_labels import INGREDIENT_COLUMNS, ROLL_CHANNELS
from ..datasets.errors import DatasetError
from ..ioutil import atomic_write_text
from ..model import AudioModel, BlackBoxModel, TwoStageModel
from ..numerics import flush_denormals
from ..zoo import load, weights_sha256
from .cache import cached_log_spectrograms
from .data import LabelledClips, load_splits
from .distributed import parallel_from_environment
from .loops import ArraySet, TrainSettings, network_outputs, spectrogram_predictions, train_network
from .metrics import score_outputs


def evaluate(model: AudioModel, data: ArraySet, clips: LabelledClips) -> dict[str, Any]:
    """Per-concept (two-stage models) and per-target r and R^2 on one split: the code ``midlevel evaluate``
    runs (``loops.spectrogram_predictions``, ``metrics.score_outputs``) without its counts and intervals, so
    what the cards quote is what ``midlevel evaluate`` prints for the same clips."""
    concepts, targets = spectrogram_predictions(model, data)
    columns = {}
    if concepts is not None:
        columns["concepts"] = (clips.concepts, concepts, clips.concept_names)
    if clips.targets is not None:
        columns["targets"] = (clips.targets, targets, clips.target_names)
    return {**score_outputs(columns), "n": len(clips)}


@torch.no_grad()
@flush_denormals()
def transcribed_rolls(model: AudioModel, arrays: ArraySet, *, threshold: float = 0.5, batch_size: int = 32) -> np.ndarray:
    """(N, channels, pitches, frames) bool: a transcribing backbone's notes and melody above ``threshold``."""
    was_training = model.training
    model.eval()
    predicted = []
    for i in range(0, len(arrays), batch_size):
        spec = model.frontend.normalize(arrays.logspec[i:i + batch_size].float())
        predicted.append((torch.sigmoid(model.backbone.forward_with_salience(spec)[1]) > threshold).numpy())
    model.train(was_training)
    return np.concatenate(predicted)


def transcription_scores(model: AudioModel, arrays: ArraySet, rolls: np.ndarray) -> dict:
    """Frame-level precision, recall and F1 (scikit-learn) of a transcribing backbone's notes and melody
    against the clips' note rolls (``datasets.controlled.rolls``), at probability 0.5."""
    predicted = transcribed_rolls(model, arrays)
    out = {}
    for c, channel in enumerate(ROLL_CHANNELS):
        p, r, f, _ = precision_recall_fscore_support(rolls[:, c].ravel(), predicted[:, c].ravel(), average="binary",
                                                     zero_division=0)
        out[channel] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    return out


def _arrays(splits: dict[str, LabelledClips], frontend, n_samples: int, cache_dir: Path, progress: bool,
            rolls_from: str | Path | None = None, ingredients_from: str | Path | None = None,
            roll_source: Callable | None = None):
    """Cached spectrograms and labels per split; with ``rolls_from`` (a controlled corpus), note rolls too;
    with ``ingredients_from`` (a controlled corpus), the ratings' recorded ingredients too."""
    out = {}
    ingredients = None
    if ingredients_from is not None:  # one read of the factors table for every split
        every = read_ingredients(ingredients_from, [i for c in splits.values() for i in c.ids])
        ingredients = np.split(every, np.cumsum([len(c.ids) for c in splits.values()])[:-1])
    for k, (name, c) in enumerate(splits.items()):
        logspec = cached_log_spectrograms(c.paths, frontend, n_samples, cache_dir, progress=progress)
        rolls = None
        if rolls_from is not None:
            rolls = torch.from_numpy(roll_source(rolls_from, c.ids, logspec.shape[-1], frontend.cfg.hop_length,
                                                 cache_dir=cache_dir, progress=progress))
        out[name] = ArraySet(logspec, c.concepts, c.targets, rolls, ingredients[k] if ingredients is not None else None,
                             paths=list(c.paths))
    return out


def read_ingredients(corpus: str | Path, song_ids) -> np.ndarray:
    """(N, len(INGREDIENT_COLUMNS)) the recorded ingredients of the ratings (``ratings.INGREDIENTS``) of a
    controlled corpus's clips, from its ``factors.csv``; a clear error names what is missing."""
    path = Path(corpus) / "factors.csv"
    if not path.is_file():
        raise DatasetError(path, "not found: rating ingredients come from a controlled corpus's factors table")
    table = pd.read_csv(path, dtype={"song_id": str}).set_index("song_id")
    absent = [c for c in INGREDIENT_COLUMNS if c not in table.columns]
    if absent:
        raise DatasetError(path, f"no column {absent} (a corpus of another build?)")
    ids = [str(i) for i in song_ids]
    missing = [i for i in ids if i not in table.index]
    if missing:
        raise DatasetError(path, f"no row for clips {missing[:5]}")
    values = table.loc[ids, list(INGREDIENT_COLUMNS)].to_numpy(dtype=np.float64)
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        row, col = bad[0]
        raise DatasetError(path, f"clip {ids[row]}: {INGREDIENT_COLUMNS[col]} is not a finite number")
    return values


def same_head(a: ModelConfig, b: ModelConfig) -> bool:
    """Whether two two-stage configs' heads are interchangeable (type and parameters)."""
    return a.head == b.head and a.head_params == b.head_params


def warm_start(model: AudioModel, init: AudioModel) -> AudioModel:
    """Copy ``init``'s trained weights into a fresh ``model`` of the same kind, backbone and concepts.

    The front-end (with the normalisation statistics ``init`` was trained with), the backbone, and
    for two-stage models the concept layer are always copied; the head only when it is of the same
    type with the same parameters (otherwise it keeps its own start, fitted as usual); for the black
    box, its target layer. A backbone that extends ``init``'s (``backbones.EXTENDS``: it only adds
    modules) gets every weight ``init`` has; the added modules keep their own start.
    """
    cfg, ref = model.config, init.config
    extended = EXTENDS.get(cfg.backbone) == ref.backbone
    for field in ("kind", "backbone", "concept_names", "concept_scale", "target_names", "frontend"):
        if field == "backbone" and extended:
            continue
        mine, theirs = getattr(cfg, field), getattr(ref, field)
        if field == "frontend":  # switching level normalisation on is a warm start too (same filterbank)
            mine, theirs = (replace(f, level_target_dbfs=None, level_floor_dbfs=0.0) for f in (mine, theirs))
        if mine != theirs:
            raise ValueError(f"cannot warm-start from {ref.name or 'the given model'}: its {field} is "
                             f"{getattr(ref, field)!r}, the network to train has {getattr(cfg, field)!r}")
    if cfg.kind == "black_box":
        parts = ["frontend", "backbone", "target_layer"]
    else:
        parts = ["frontend", "backbone", "concept_layer"] + (["head"] if same_head(cfg, ref) else [])
    for part in parts:
        # an extended backbone's added modules are the only keys allowed to be missing
        unexpected = getattr(model, part).load_state_dict(getattr(init, part).state_dict(),
                                                          strict=not (extended and part == "backbone")).unexpected_keys
        if unexpected:
            raise ValueError(f"cannot warm-start from {ref.name or 'the given model'}: {cfg.backbone!r} lacks {unexpected}")
    return model


def train_family(corpus: str | Path, out_dir: str | Path, *, backbone: str = "compact",
                 heads: Sequence[str] = ("linear", "gam"), joint_heads: Sequence[str] | None = None,
                 settings: TrainSettings | None = None,
                 head_params: dict[str, dict] | None = None, cache_dir: str | Path | None = None,
                 concepts: Sequence[str] | None = None, black_box: bool = True,
                 init_from: str | Path | None = None, level_target_dbfs: float | None = None,
                 roll_source: Callable | None = None, progress: bool = True,
                 callbacks: Sequence[Any] = (), device: str | None = "cpu") -> dict[str, Any]:
    """Train and evaluate the whole family; resumable (finished stages are skipped).

    ``heads`` get sequential and independent fits on the concept model (none: no concept model is
    trained); ``joint_heads`` (default: all of ``heads``) get a jointly trained network each;
    ``black_box`` adds the A2E counterpart. ``concepts`` names the bottleneck (default: the seven
    mid-level features; ``load_splits`` says which others a corpus can supply). With
    ``settings.roll_weight`` > 0 the corpus must be a controlled one: ``roll_source`` (the generator's
    ``datasets.controlled.rolls.corpus_rolls``, passed in by the caller so that training never imports the
    generator) rebuilds its note rolls and every network trains with the auxiliary transcription loss;
    likewise ``settings.ingredient_weight`` > 0 reads the ratings' ingredients from its ``factors.csv``.

    ``init_from`` (a model folder or zoo name) warm-starts every network from a trained model's weights
    instead of a random start: continuing a model on a larger corpus costs a fraction of training
    it again. See ``warm_start`` for what must match and what is kept. ``level_target_dbfs`` turns on the
    front-end's per-window level normalisation (``FrontendConfig.level_target_dbfs``).

    ``callbacks`` (``training.callbacks``) are passed to every network's ``train_network``: each network
    is a run of its own (``on_train_begin``, whose ``TrainInfo.name`` is the run's folder: ``a2mid``,
    ``joint-<head>``, ``a2e``). The fitted heads train no network and call none.

    ``device`` (cpu, cuda, mps, auto): where the networks train. Under ``torchrun`` every process runs this
    function: rank 0 builds the spectrogram cache before the others read it, the networks train data-parallel
    (``training.distributed``), and only rank 0 evaluates and writes models and ``results.json``.
    """
    parallel = parallel_from_environment(device)
    progress = progress and parallel.main
    out_dir, settings = Path(out_dir), settings or TrainSettings()
    head_params = head_params or {}
    cache_dir = Path(cache_dir) if cache_dir else out_dir / "cache"
    results_file = out_dir / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {"models": {}}
    splits = load_splits(corpus, concepts=concepts)
    metadata: dict[str, Any] = {"corpus": str(corpus), "settings": asdict(settings)}
    init = None
    if init_from is not None:
        init = load(init_from, replace_superseded=False)  # exactly those weights, or a refusal
        metadata["init_from"] = {"model": str(init_from), "weights_sha256": weights_sha256(init_from)}
    base = ModelConfig(backbone=backbone, concept_names=splits["train"].concept_names, metadata=metadata,
                       frontend=FrontendConfig(level_target_dbfs=level_target_dbfs))
    torch.manual_seed(settings.seed)
    frontend = TwoStageModel(base).frontend
    if settings.roll_weight and roll_source is None:
        raise ValueError("roll_weight > 0 needs roll_source: the controlled corpus's note rolls "
                         "(midlevel.datasets.controlled.rolls.corpus_rolls)")
    with parallel.main_first():  # one process writes the cache; the others read it
        arrays = _arrays(splits, frontend, base.window_samples, cache_dir, progress, roll_source=roll_source,
                         rolls_from=corpus if settings.roll_weight else None,
                         ingredients_from=corpus if settings.ingredient_weight else None)
    spec = arrays["train"].logspec.float()
    mean, std = spec.mean(dim=(0, 2)), spec.std(dim=(0, 2))
    del spec

    def record(name: str, model: AudioModel, state: dict | None, started: float) -> None:
        if not parallel.main:  # rank 0 writes; the others wait for it (they may read the model next)
            parallel.barrier()
            return
        history = state["history"] if state else []
        model.config = replace(model.config, name=name)
        model.save_pretrained(out_dir / "models" / name)
        results["models"][name] = {
            "kind": model.config.kind, "backbone": backbone, "head": model.config.head,
            "valid": evaluate(model, arrays["val"], splits["val"]),
            "test": evaluate(model, arrays["test"], splits["test"]),
            "epochs": len(history), "best_epoch": state["best_epoch"] if state else None,
            # epoch wall times from the run's own history, so a resumed run still reports them all
            "seconds_per_epoch": (sum(h["seconds"] for h in history) / len(history)) if history else 0.0,
            "seconds_fastest_epoch": min((h["seconds"] for h in history), default=0.0),
            "seconds_total": sum(h["seconds"] for h in history) if history else time.perf_counter() - started,
        }
        atomic_write_text(results_file, json.dumps(results, indent=1, sort_keys=True) + "\n")
        parallel.barrier()

    def fresh(kind: str, head: str = "linear") -> AudioModel:
        torch.manual_seed(settings.seed)
        cfg = replace(base, kind=kind, head=head, head_params=head_params.get(head, {}))
        model = TwoStageModel(cfg) if kind == "two_stage" else BlackBoxModel(cfg)
        model.set_input_normalization(mean, std)
        if init is not None:
            warm_start(model, init)
        return model

    train = arrays["train"]
    heads = [h for h in heads if h]
    joint_heads = heads if joint_heads is None else [h for h in joint_heads if h]
    if heads and "a2mid" not in results["models"]:
        started = time.perf_counter()
        concept_model = fresh("two_stage")
        state = train_network(concept_model, train, arrays["val"], replace(settings, setup="concepts"),
                              out_dir / "runs" / "a2mid", progress=progress, callbacks=callbacks,
                              parallel=parallel)
        concept_model.head.fit(network_outputs(concept_model, train), train.targets)
        record("a2mid", concept_model, state, started)
    if heads:
        concept_model = AudioModel.from_pretrained(out_dir / "models" / "a2mid")
        predicted = network_outputs(concept_model, train)
    for head in heads:
        for name, fit_on in ((f"a2mid2e-{head}", predicted), (f"independent-{head}", train.concepts)):
            if name in results["models"]:
                continue
            started = time.perf_counter()
            model = copy.deepcopy(concept_model)
            model.config = replace(model.config, head=head, head_params=head_params.get(head, {}))
            model.head = fresh("two_stage", head).head
            model.head.fit(fit_on, train.targets)
            record(name, model, None, started)
    for head in joint_heads:
        if f"joint-{head}" not in results["models"]:
            started = time.perf_counter()
            model = fresh("two_stage", head)
            if init is None or not same_head(model.config, init.config):  # a warm start keeps a matching head
                model.head.fit(train.concepts, train.targets)
            state = train_network(model, train, arrays["val"], replace(settings, setup="joint"),
                                  out_dir / "runs" / f"joint-{head}", progress=progress, callbacks=callbacks,
                                  parallel=parallel)
            record(f"joint-{head}", model, state, started)
    if black_box and "a2e" not in results["models"]:
        started = time.perf_counter()
        model = fresh("black_box")
        # no transposition: the black box may hear register, which the corpus's emotions depend on
        state = train_network(model, train, arrays["val"], replace(settings, setup="a2e", transpose_semitones=0,
                                                                        equivariant_semitones=0, equivariant_stretch=1.0),
                              out_dir / "runs" / "a2e", progress=progress, callbacks=callbacks,
                              parallel=parallel)
        record("a2e", model, state, started)
    return results
