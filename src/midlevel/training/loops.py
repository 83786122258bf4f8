"""Network training for the paper's setups, on cached log spectrograms.

Setups (Chowdhury et al. 2019; Koh et al. 2020 for the names in brackets):
- ``"concepts"``: audio -> mid-level ratings (the first stage of A2Mid2E [sequential/independent]);
- ``"joint"``: audio -> concepts -> head -> targets with ``w * concept loss + (1 - w) * target loss``
  (A2Mid2E-Joint);
- ``"a2e"``: audio -> targets directly with the same backbone (the black-box baseline).

Losses are mean squared errors on values rescaled to [0, 1] by their rating scales (the
paper divides by 10). For the joint setup the head's own penalty is added with the weight that
makes the target part proportional to the head's fitting objective (see ``SparseLinearHead``).
Early stopping watches the validation mean Pearson r of what the setup predicts (concepts,
targets, or, for joint, the average of both).

A ``Distillation`` holds some of a two-stage model's concepts to a frozen teacher's outputs on the
same (augmented, cropped) input while the others are learnt from ratings: how fine-tuning adds
concepts to a model without losing the ones it has (``training.finetune``).

Each epoch is seeded from (seed, epoch) and the full state is saved after every epoch, so a
run killed and resumed gives the same weights as one that was never interrupted. A resumed run
may raise the epoch budget (to extend training); every other setting must match.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..ioutil import atomic_write_text
from ..model import AudioModel, BlackBoxModel, TwoStageModel
from ..numerics import flush_denormals
from .augment import EquivariantAugmentation, transpose_batch, transposition_matrices
from .callbacks import Callback, CallbackList, TrainInfo
from .checkpointing import load_training_state, save_training_state
from .distributed import Parallel, parallel_from_environment
from .metrics import pearson_per_column

SETUPS = ("concepts", "joint", "a2e")
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainSettings:
    setup: str = "concepts"
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-5
    patience: int = 8
    seed: int = 0
    joint_weight: float = 0.5  # weight of the concept loss in the joint setup
    #: train on random excerpts of this many frames (None: whole clips); validation always sees whole clips.
    #: Halving the frames halves the cost of an epoch and acts as augmentation (global pooling
    #: makes the network length-agnostic).
    crop_frames: int | None = None
    #: "constant", or "cosine": lr x (1 + cos(pi x epoch / epochs)) / 2, a function of the epoch number only,
    #: so a resumed run continues the same schedule without storing scheduler state.
    lr_schedule: str = "constant"
    #: transpose each training clip by a random whole number of semitones in [-n, n] (0: off); see
    #: ``training.augment``. Only where the labels do not depend on register (concepts).
    transpose_semitones: int = 0
    #: equivariant augmentation (``training.augment.EquivariantAugmentation``): a third of the training
    #: clips transposed by up to this many semitones with the ``register`` label moved accordingly, a
    #: third stretched by up to ``equivariant_stretch`` (> 1) with ``tempo`` moved; 0 and 1: off.
    #: Augmented clips carry no target loss (the targets depend on register and tempo).
    equivariant_semitones: int = 0
    equivariant_stretch: float = 1.0
    #: weight of the auxiliary note-roll loss (binary cross-entropy of a transcribing backbone's
    #: note logits against ``ArraySet.rolls``; 0: off). See ``datasets.controlled.rolls``.
    roll_weight: float = 0.0
    #: weight of the auxiliary loss on the ratings' recorded ingredients (mean squared error of a
    #: training-only linear read-out of the embedding against ``ArraySet.ingredients``, each column
    #: standardised on the training clips; 0: off). See ``datasets.controlled.ratings.INGREDIENTS``.
    ingredient_weight: float = 0.0
    #: train only the parameters whose names start with one of these prefixes (e.g.
    #: ``("backbone.note_measures_in", "concept_layer", "head")``); every other module is frozen and
    #: kept in eval mode (fixed batch-norm statistics, no dropout), so what it computes cannot drift.
    #: Empty: train everything. For adding inputs to a trained network without retraining the rest.
    trainable: tuple[str, ...] = ()
    #: keep the batch-norm layers in eval mode: the normalisation statistics the network starts with are used
    #: and kept (their affine weights still train). For fine-tuning that must not move what the network
    #: computes for concepts it already has (``Distillation``): batch statistics would move them unseen.
    freeze_norm: bool = False

    def __post_init__(self) -> None:
        self.trainable = tuple(str(p) for p in self.trainable)
        if self.setup not in SETUPS:
            raise ValueError(f"setup must be one of {SETUPS}; got {self.setup!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}; got {self.lr_schedule!r}")
        if self.transpose_semitones < 0:
            raise ValueError(f"transpose_semitones must be >= 0; got {self.transpose_semitones}")
        if self.roll_weight < 0:
            raise ValueError(f"roll_weight must be >= 0; got {self.roll_weight}")
        if self.ingredient_weight < 0:
            raise ValueError(f"ingredient_weight must be >= 0; got {self.ingredient_weight}")
        if self.equivariant_semitones < 0 or not self.equivariant_stretch >= 1.0:
            raise ValueError(f"equivariant_semitones must be >= 0 and equivariant_stretch >= 1; got "
                             f"{self.equivariant_semitones}, {self.equivariant_stretch}")
        equivariant = bool(self.equivariant_semitones or self.equivariant_stretch > 1.0)
        if self.roll_weight and (self.transpose_semitones or equivariant):
            raise ValueError("roll_weight cannot be combined with transposition or stretching (the note rolls are not moved)")
        if self.transpose_semitones and equivariant:
            raise ValueError("transpose_semitones (labels kept) and the equivariant augmentation (register moved) exclude each other")
        if self.setup == "a2e" and equivariant:
            raise ValueError("the equivariant augmentation needs concept labels; the a2e setup has none (train it without)")

    @property
    def equivariant(self) -> bool:
        return bool(self.equivariant_semitones or self.equivariant_stretch > 1.0)

    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (0-based)."""
        if self.lr_schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / max(self.epochs, 1)))
        return self.lr


@dataclass
class ArraySet:
    """Log spectrograms (N, bands, frames), un-normalised, plus labels in rating units."""

    logspec: torch.Tensor
    concepts: np.ndarray | None = None
    targets: np.ndarray | None = None
    rolls: torch.Tensor | None = None  # (N, channels, pitches, frames) 0/1 note rolls, for ``roll_weight``
    ingredients: np.ndarray | None = None  # (N, M) the ratings' recorded ingredients, for ``ingredient_weight``
    #: the clips' audio files (None: not known), for callbacks that play them (``callbacks.ExplanationLogger``)
    paths: list[Path] | None = None
    #: (N, K, 2) where each concept is heard, in frames [start, end); NaN for concepts without a time span (or
    #: absent). With ``TrainSettings.crop_frames`` a timed concept's label becomes whether the crop overlaps its
    #: span by ``SPAN_MIN_FRAMES`` (``timed_labels``): the network learns to hear the sound, not the word around it
    spans: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.logspec.shape[0])


@dataclass
class Distillation:
    """Concepts held to a frozen ``teacher``: the model's concept columns ``kept`` learn the teacher's concept
    columns ``teacher_columns`` (its eval-mode outputs on the very batch the model sees, after cropping and
    augmentation), the other columns learn ``ArraySet.concepts`` (whose ``kept`` columns are ignored in
    training; for validation they must hold the teacher's outputs, which ``validation_score`` compares with).

    Concept loss (rescaled units): ``(mse of the rated columns + weight x mse of the kept ones) / (1 + weight)``;
    the validation score is the same mix of the two parts' mean Pearson r."""

    teacher: TwoStageModel
    teacher_columns: list[int]
    kept: list[int]
    weight: float = 1.0

    def __post_init__(self) -> None:
        self.teacher.eval()
        for param in self.teacher.parameters():
            param.requires_grad_(False)

    def rated(self, n_concepts: int) -> list[int]:
        return [k for k in range(n_concepts) if k not in self.kept]

    def column_weights(self, n_concepts: int) -> torch.Tensor:
        """Per concept column, its weight in the concept loss (summing to 1)."""
        weights = torch.zeros(n_concepts)
        rated = self.rated(n_concepts)
        weights[rated] = 1.0 / len(rated) / (1.0 + self.weight)
        weights[self.kept] = self.weight / len(self.kept) / (1.0 + self.weight)
        return weights

    @torch.no_grad()
    def fill(self, logspec: torch.Tensor, concepts: torch.Tensor) -> torch.Tensor:
        """``concepts`` (B, K) with the kept columns replaced by the teacher's outputs for ``logspec``
        (un-normalised: the teacher normalises with its own statistics)."""
        taught = self.teacher.concepts_from_spectrogram(self.teacher.frontend.normalize(logspec.float()))
        concepts = concepts.clone()
        concepts[:, self.kept] = taught[:, self.teacher_columns].to(concepts.dtype)
        return concepts

    def score(self, truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
        r = pearson_per_column(truth, predicted)
        rated = self.rated(truth.shape[1])
        kept_r, rated_r = float(np.nanmean(r[self.kept])), float(np.nanmean(r[rated]))
        return {"kept_r": kept_r, "rated_r": rated_r,
                "concept_r": (rated_r + self.weight * kept_r) / (1.0 + self.weight)}


SPAN_MIN_FRAMES = 3  # a crop "hears" a timed concept when it overlaps the concept's span by this many frames


def timed_labels(concepts: torch.Tensor, spans: np.ndarray, offset: int, length: int,
                 scale: tuple[float, float]) -> torch.Tensor:
    """``concepts`` (B, K) with each timed concept (finite span) set to the scale's top where the crop
    [offset, offset + length) overlaps its span by ``SPAN_MIN_FRAMES`` frames, else to its bottom."""
    start, end = spans[..., 0], spans[..., 1]
    timed = np.isfinite(start) & np.isfinite(end)
    overlap = np.minimum(np.where(timed, end, 0), offset + length) - np.maximum(np.where(timed, start, 0), offset)
    heard = torch.as_tensor(np.where(overlap >= SPAN_MIN_FRAMES, scale[1], scale[0]), dtype=concepts.dtype)
    return torch.where(torch.as_tensor(timed), heard, concepts)


def _unit(values: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
    lo, hi = scale
    return (values - lo) / (hi - lo)


@torch.no_grad()
@flush_denormals()
def batched_outputs(model: AudioModel, data: ArraySet, forward, batch_size: int = 64) -> np.ndarray:
    """``forward`` applied to the normalised spectrograms batch by batch, in eval mode."""
    was_training = model.training
    model.eval()
    device = model.frontend.mean.device
    out = [forward(model.frontend.normalize(data.logspec[i:i + batch_size].float().to(device))).cpu().numpy()
           for i in range(0, len(data), batch_size)]
    model.train(was_training)
    return np.concatenate(out).astype(np.float64)


def network_outputs(model: AudioModel, data: ArraySet, batch_size: int = 64) -> np.ndarray:
    """Per-clip outputs (concepts for two-stage models, targets for black boxes), eval mode."""
    return batched_outputs(model, data, model.outputs_from_spectrogram, batch_size)


def predict_targets(model: AudioModel, data: ArraySet) -> np.ndarray:
    out = network_outputs(model, data)
    if isinstance(model, TwoStageModel):
        return model.head.predict(out)
    return out


def spectrogram_predictions(model: AudioModel, data: ArraySet) -> tuple[np.ndarray | None, np.ndarray]:
    """(concepts, or None for a black box; targets) of each clip: ``network_outputs`` and, for a two-stage
    model, its head on the predicted concepts. What ``recipes.evaluate`` (the model cards) and ``midlevel
    evaluate`` (``midlevel.evaluation``, on clips of one window) score."""
    out = network_outputs(model, data)
    if isinstance(model, TwoStageModel):
        return out, model.head.predict(out)
    return None, out


def batch_loss(model: AudioModel, settings: TrainSettings, spec: torch.Tensor, c_true, t_true,
               rolls: torch.Tensor | None = None, ingredients: torch.Tensor | None = None,
               ingredient_head: torch.nn.Module | None = None, target_mask: torch.Tensor | None = None,
               concept_weights: torch.Tensor | None = None) -> torch.Tensor:
    """The setup's loss, plus ``roll_weight`` x the note-roll cross-entropy when ``rolls`` are given, plus
    ``ingredient_weight`` x the squared error of ``ingredient_head`` (on the embedding) against the
    standardised ``ingredients`` when they are given. ``target_mask`` (B,) bool: the clips whose targets
    count (None: all). ``concept_weights`` (K,) summing to 1: each concept column's weight in the concept
    loss (None: all alike, the plain mean)."""
    if rolls is None:
        embedding = model.backbone(spec)
        loss = _setup_loss(model, settings, embedding, c_true, t_true, target_mask, concept_weights)
    else:
        embedding, logits = model.backbone.forward_with_salience(spec)
        roll_loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, rolls.to(logits.dtype))
        loss = (_setup_loss(model, settings, embedding, c_true, t_true, target_mask, concept_weights)
                + settings.roll_weight * roll_loss)
    if ingredients is not None:
        loss = loss + settings.ingredient_weight * torch.nn.functional.mse_loss(ingredient_head(embedding), ingredients)
    return loss


def ingredient_read_out(model: AudioModel, train: ArraySet, settings: TrainSettings
                        ) -> tuple[torch.nn.Linear, torch.Tensor] | None:
    """The training-only linear read-out of the ingredients and the training clips' standardised
    ingredients (None when ``ingredient_weight`` is 0).

    The read-out is not part of the model: a trained model's weights, outputs and ONNX export are
    those of any other model of its kind. It lives in the training state, so a resumed run
    continues it; its start is drawn from the run's seed."""
    if not settings.ingredient_weight:
        return None
    if train.ingredients is None:
        raise ValueError("ingredient_weight > 0 needs the ratings' ingredients of the training clips "
                         "(ArraySet.ingredients: a controlled corpus)")
    values = torch.as_tensor(train.ingredients, dtype=torch.float64)
    scale = values.std(dim=0)
    standardised = (values - values.mean(dim=0)) / torch.where(scale > 0, scale, torch.ones_like(scale))
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(settings.seed * 31 + 7)
    head = torch.nn.Linear(model.backbone.out_features, values.shape[1])
    torch.random.set_rng_state(generator_state)
    return head, standardised.float()


def _setup_loss(model: AudioModel, settings: TrainSettings, embedding: torch.Tensor, c_true, t_true,
                target_mask: torch.Tensor | None = None, concept_weights: torch.Tensor | None = None) -> torch.Tensor:
    cfg = model.config
    outputs = model.outputs_from_embedding(embedding)
    if settings.setup == "a2e":
        if cfg.task == "classification":  # targets hold class indices; the outputs are logits
            return torch.nn.functional.cross_entropy(outputs, t_true.reshape(-1).long())
        return torch.mean((_unit(outputs, cfg.target_scale) - _unit(t_true, cfg.target_scale)) ** 2)
    concepts = outputs
    squared = (_unit(concepts, cfg.concept_scale) - _unit(c_true, cfg.concept_scale)) ** 2
    loss_c = squared.mean() if concept_weights is None else (squared * concept_weights).sum(dim=-1).mean()
    if settings.setup == "concepts":
        return loss_c
    w = settings.joint_weight
    targets = model.head(concepts)
    if cfg.task == "classification":  # the logistic heads' own objective: mean cross-entropy + penalty()
        labels = t_true.reshape(-1).long()
        if target_mask is not None:
            targets, labels = targets[target_mask], labels[target_mask]
        loss_t = model.head.loss(targets, labels) if len(labels) else targets.sum() * 0.0
        return w * loss_c + (1 - w) * (loss_t + model.head.penalty())
    span = cfg.target_scale[1] - cfg.target_scale[0]
    errors = (_unit(targets, cfg.target_scale) - _unit(t_true, cfg.target_scale)) ** 2
    if target_mask is not None:  # clips whose targets are unknown (augmented) count for the concepts only
        errors = errors[target_mask]
    loss_t = errors.mean() if errors.numel() else errors.sum()
    loss_t = loss_t + 2.0 * model.head.penalty() / (span ** 2 * len(cfg.target_names))
    return w * loss_c + (1 - w) * loss_t


def target_score(model: AudioModel, truth: np.ndarray, predicted: np.ndarray) -> tuple[str, float]:
    """("target_r", mean Pearson r) for ratings; ("accuracy", share of argmax logits equal to the class) for
    a classifier, whose ``truth`` holds class indices."""
    if model.config.task == "classification":
        return "accuracy", float(np.mean(predicted.argmax(axis=1) == np.asarray(truth).astype(int).ravel()))
    return "target_r", float(np.nanmean(pearson_per_column(truth, predicted)))


def validation_score(model: AudioModel, settings: TrainSettings, data: ArraySet,
                     distill: Distillation | None = None) -> dict[str, float]:
    out = network_outputs(model, data)
    scores: dict[str, float] = {}
    if settings.setup == "a2e":
        name, value = target_score(model, data.targets, out)
        scores[name] = scores["score"] = value
        return scores
    if distill is None:
        scores["concept_r"] = float(np.nanmean(pearson_per_column(data.concepts, out)))
    else:
        scores.update(distill.score(data.concepts, out))
    scores["score"] = scores["concept_r"]
    if settings.setup == "joint":
        name, scores[name] = target_score(model, data.targets, model.head.predict(out))
        scores["score"] = (scores["concept_r"] + scores[name]) / 2
    return scores


def trains(name: str, settings: TrainSettings) -> bool:
    """Whether the parameter or module called ``name`` is trained (``TrainSettings.trainable``)."""
    return not settings.trainable or name.startswith(settings.trainable)


def set_training_modes(model: torch.nn.Module, settings: TrainSettings) -> None:
    """Train mode for the trained modules, eval mode for the frozen ones (``TrainSettings.trainable``) and for
    batch norm with ``TrainSettings.freeze_norm``."""
    model.train()
    if settings.trainable:
        for name, module in model.named_modules():
            module.training = bool(name) and trains(name, settings)
    if settings.freeze_norm:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def train_network(model: AudioModel, train: ArraySet, valid: ArraySet, settings: TrainSettings,
                  out_dir: str | Path, *, progress: bool = True, distill: Distillation | None = None,
                  callbacks: Sequence[Callback] = (), device: str | torch.device | None = "cpu",
                  parallel: Parallel | None = None) -> dict[str, Any]:
    """Train with early stopping; resumes from ``out_dir`` if a run was interrupted there.

    Returns the history; the best epoch's model is saved to ``out_dir/best`` (a model folder)
    and loaded back into ``model``. Denormal floats are flushed to zero meanwhile (``flush_denormals``).
    ``distill``: concepts held to a frozen teacher (``Distillation``; not part of the saved state: a
    resumed run must pass the same one). ``callbacks`` (``training.callbacks``): called when the run
    begins, after each epoch it trains (once the epoch is saved) and at its end; they are not part of the
    saved state and do not change the weights (e.g. ``ExplanationLogger`` into TensorBoard).
    ``device``: where the network trains (``distributed.resolve_device``: cpu, cuda, mps, auto); the model is
    back on the CPU afterwards. ``parallel``: this process's place among data-parallel processes (default:
    from torchrun's environment, or one process); see ``training.distributed``.
    """
    parallel = parallel or parallel_from_environment(device)
    with flush_denormals():
        return _train_network(model, train, valid, settings, out_dir, progress=progress and parallel.main,
                              distill=distill, callbacks=callbacks if parallel.main else (), parallel=parallel)


class _Loss(torch.nn.Module):
    """The model's training loss as one module's forward, which is what ``DistributedDataParallel``
    synchronises; it holds the training-only ingredient read-out too, so its gradients are averaged alike."""

    def __init__(self, model: AudioModel, settings: TrainSettings, read_out: torch.nn.Module | None,
                 concept_weights: torch.Tensor | None) -> None:
        super().__init__()
        self.model, self.read_out, self.settings, self.concept_weights = model, read_out, settings, concept_weights

    def forward(self, spec, c_true, t_true, rolls, ingredients, target_mask) -> torch.Tensor:
        return batch_loss(self.model, self.settings, spec, c_true, t_true, rolls, ingredients, self.read_out,
                          target_mask=target_mask, concept_weights=self.concept_weights)


def _on(device: torch.device, *values):
    return tuple(None if v is None else v.to(device) for v in values)


def _train_network(model: AudioModel, train: ArraySet, valid: ArraySet, settings: TrainSettings,
                   out_dir: str | Path, *, progress: bool, distill: Distillation | None = None,
                   callbacks: Sequence[Callback] = (), parallel: Parallel = Parallel()) -> dict[str, Any]:
    out_dir = Path(out_dir)
    if settings.setup == "a2e" and not isinstance(model, BlackBoxModel):
        raise TypeError("the a2e setup trains a BlackBoxModel")
    if settings.setup != "a2e" and not isinstance(model, TwoStageModel):
        raise TypeError(f"the {settings.setup} setup trains a TwoStageModel")
    if distill is not None and settings.setup == "a2e":
        raise ValueError("distillation holds concepts; the a2e setup has none")
    concept_weights = None if distill is None else distill.column_weights(len(model.config.concept_names))
    was_trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    if settings.trainable:
        named = dict(model.named_parameters())
        unknown = [p for p in settings.trainable if not any(n.startswith(p) for n in named)]
        if unknown:
            raise ValueError(f"trainable {unknown}: no parameter of this model starts with that; "
                             f"its modules: {sorted({n.rsplit('.', 1)[0] for n in named})}")
        for name, param in named.items():
            param.requires_grad_(trains(name, settings))
    params = [p for p in model.parameters() if p.requires_grad]
    if settings.setup == "concepts":  # the head is fitted afterwards, not trained here
        params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
    if settings.roll_weight:
        if train.rolls is None:
            raise ValueError("roll_weight > 0 needs note rolls for the training clips (ArraySet.rolls)")
        if not hasattr(model.backbone, "forward_with_salience"):
            raise ValueError(f"roll_weight > 0 needs a transcribing backbone (e.g. compact_transcribe), "
                             f"not {model.config.backbone!r}")
    device = parallel.device
    model.to(device)
    if distill is not None:
        distill.teacher.to(device)
    read_out = ingredient_read_out(model, train, settings)
    if read_out is not None:
        read_out[0].to(device)
    tracked: torch.nn.Module = model  # what the training state holds: the model, and the read-out if any
    if read_out is not None:
        params += list(read_out[0].parameters())
        tracked = torch.nn.ModuleDict({"model": model, "ingredients": read_out[0]})
    optimizer = torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    state = load_training_state(out_dir, tracked, optimizer)
    if state is not None:  # settings added since the run started take their defaults
        state["settings"] = {**asdict(TrainSettings()), **state["settings"]}
    if state is not None and {**state["settings"], "epochs": 0} != {**json.loads(json.dumps(asdict(settings))), "epochs": 0}:
        raise ValueError(f"{out_dir / 'state.json'}: was written with other settings; use a new --out folder")
    if state is not None:  # only the epoch budget may change: a finished run can be extended
        state["settings"] = asdict(settings)
    state = state or {"settings": asdict(settings), "history": [], "best_score": -np.inf,
                      "best_epoch": -1, "epoch": -1}
    c_all = torch.as_tensor(train.concepts, dtype=torch.float32) if train.concepts is not None else None
    t_all = torch.as_tensor(train.targets, dtype=torch.float32) if train.targets is not None else None
    shifts = transposition_matrices(model.config.frontend, settings.transpose_semitones) \
        if settings.transpose_semitones else None
    equivariant = EquivariantAugmentation(model.config.frontend, list(model.config.concept_names),
                                          semitones=settings.equivariant_semitones, stretch=settings.equivariant_stretch,
                                          scale=tuple(model.config.concept_scale)) if settings.equivariant else None
    net = parallel.wrap(_Loss(model, settings, read_out[0] if read_out is not None else None,
                              None if concept_weights is None else concept_weights.to(device)),
                        unused_parameters=settings.setup == "concepts")
    hooks = CallbackList(callbacks)
    hooks.on_train_begin(TrainInfo(model, settings, train, valid, out_dir, state["epoch"] + 1))
    for epoch in range(state["epoch"] + 1, settings.epochs):
        if epoch - state["best_epoch"] > settings.patience and state["best_epoch"] >= 0:
            break
        start = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = settings.lr_at(epoch)
        torch.manual_seed(settings.seed * 100_003 + epoch)
        gen = torch.Generator().manual_seed(settings.seed * 7919 + epoch)
        order = torch.randperm(len(train), generator=gen)
        set_training_modes(model, settings)
        total, batches = 0.0, range(0, len(train), settings.batch_size)
        for i in tqdm(batches, desc=f"{settings.setup} epoch {epoch}", disable=not progress, leave=False):
            idx = order[i:i + settings.batch_size]
            batch = train.logspec[idx]
            rolls = train.rolls[idx] if settings.roll_weight else None
            c_batch = c_all[idx] if c_all is not None else None
            target_mask = None
            if equivariant is not None:  # before cropping: a stretch reads up to 1.4x the frames it writes
                batch, c_batch, target_mask = equivariant(batch, c_batch, gen)
            if settings.crop_frames and batch.shape[-1] > settings.crop_frames:
                offset = int(torch.randint(batch.shape[-1] - settings.crop_frames + 1, (1,), generator=gen))
                batch = batch[..., offset:offset + settings.crop_frames]
                if train.spans is not None and c_batch is not None:
                    c_batch = timed_labels(c_batch, train.spans[idx.numpy()], offset, settings.crop_frames,
                                           tuple(model.config.concept_scale))
                rolls = rolls[..., offset:offset + settings.crop_frames] if rolls is not None else None
            if shifts is not None:
                batch = transpose_batch(batch, shifts, gen)
            # everything above is drawn for the global batch, as one process draws it; this rank trains on its share
            if not parallel.trainable_batch(len(idx)):
                continue
            part = parallel.share(len(idx))
            t_batch = t_all[idx] if t_all is not None else None
            ingredients = read_out[1][idx] if read_out is not None else None
            batch, c_batch, t_batch, rolls, ingredients, target_mask = _on(device, *(
                None if v is None else v[part] for v in (batch, c_batch, t_batch, rolls, ingredients, target_mask)))
            if distill is not None:  # the teacher sees what the model sees
                c_batch = distill.fill(batch, c_batch)
            spec = model.frontend.normalize(batch.float())
            with parallel.autocast():
                loss = net(spec, c_batch, t_batch, rolls, ingredients, target_mask)
            optimizer.zero_grad(set_to_none=True)
            # scaled by this rank's share of the global batch: the averaged gradient is the global batch's
            (loss * (len(batch) * parallel.world / len(idx)) if parallel.distributed else loss).backward()
            optimizer.step()
            total += loss.item() * len(batch)
        total = parallel.sum(total)
        parallel.average_buffers(model)
        scores = validation_score(model, settings, valid, distill)  # every rank: same weights, same decision
        row = {"epoch": epoch, "train_loss": total / len(train), "seconds": time.perf_counter() - start, **scores}
        state["history"].append(row)
        better = scores["score"] > state["best_score"]
        if better:
            state["best_score"], state["best_epoch"] = scores["score"], epoch
        if parallel.main:
            if better:
                model.save_pretrained(out_dir / "best")
            save_training_state(out_dir, epoch, tracked, optimizer, state)
            atomic_write_text(out_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in state["history"]))
        if progress:
            tqdm.write(f"epoch {epoch}: loss {row['train_loss']:.4f} "
                       + " ".join(f"{k} {v:.3f}" for k, v in scores.items()) + f" ({row['seconds']:.0f} s)")
        hooks.on_epoch_end(epoch, model, row)  # after the save: a failing callback loses no epoch
    for name, param in model.named_parameters():  # frozen only while training
        param.requires_grad_(was_trainable[name])
    parallel.barrier()  # rank 0 has written the best model
    best = type(model).from_pretrained(out_dir / "best")
    model.to("cpu")
    if distill is not None:
        distill.teacher.to("cpu")
    model.load_state_dict(best.state_dict())
    hooks.on_train_end(model, state["history"])
    return state
