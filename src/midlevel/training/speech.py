"""Spoken-digit models (issue 33): an explainable classifier and its black-box twin, on a built corpus.

The explainable model hears the task's concepts (``datasets.spoken_corpus``: phone classes for the digit,
Praat's speaker measures for the sex), trained with the library's ``train_network`` ("concepts" setup);
then a sparse logistic head (``heads.SparseLogisticHead``) is fitted on the predicted concepts of the
training voices (A2Mid2E's order: the concepts stay what they were trained to be). The black-box twin has
the same front-end and backbone and learns the classes directly with cross-entropy ("a2e").

Front-end: 16 kHz, 25 ms frames with a 10 ms hop, 12 bands per octave from 50 Hz to 8 kHz, per-window
level normalisation (a recording's gain is not a concept). One window is the corpus's 1.2 s clip.

Black-box twins come in the paper's two kinds (``BLACK_BOXES``): the same spectrogram CNN, and a 1-D CNN on
the level-normalised waveform (``backbones.RawWaveformBackbone``, Becker et al.'s AudioNet at CPU size).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..backbones import WAVEFORM_BACKBONES
from ..config import FrontendConfig, ModelConfig
from ..datasets.spoken_corpus import TASKS, SpokenClips, audiomnist_clips, load_spoken_corpus
from ..ioutil import atomic_write_text
from ..model import BlackBoxModel, TwoStageModel
from .cache import cached_log_spectrograms
from .loops import ArraySet, TrainSettings, network_outputs, train_network
from .metrics import pearson_per_column

SPEECH_FRONTEND = FrontendConfig(sample_rate=16000, n_fft=400, hop_length=160, bands_per_octave=12, fmin=50.0,
                                 fmax=8000.0, level_target_dbfs=-20.0)
#: the raw-waveform front-end: the same rate and level normalisation, one "frame" per sample
WAVEFORM_FRONTEND = replace(SPEECH_FRONTEND, representation="waveform", hop_length=1)
#: the black-box twins ``train_speech_models`` trains: model folder -> backbone
BLACK_BOXES = {"black_box": "compact", "black_box_raw": "raw_waveform"}
WINDOW_SECONDS = 1.2
HEAD_PARAMS = {"C": 1.0, "penalty": "elasticnet", "l1_ratio": 0.5}
#: crops for the timed (phonetic) concepts: long enough for a phone and its neighbours, a quarter of the clip
TIMED_CROP_SECONDS = 0.3


def speech_config(task: str, kind: str = "two_stage", backbone: str = "compact") -> ModelConfig:
    concepts, classes = TASKS[task]
    frontend = WAVEFORM_FRONTEND if backbone in WAVEFORM_BACKBONES else SPEECH_FRONTEND
    return ModelConfig(kind=kind, task="classification", backbone=backbone, frontend=frontend,
                       concept_names=list(concepts), concept_scale=(0.0, 1.0), target_names=list(classes),
                       head="logistic" if kind == "two_stage" else "linear",
                       head_params=dict(HEAD_PARAMS) if kind == "two_stage" else {},
                       window_seconds=WINDOW_SECONDS, hop_seconds=WINDOW_SECONDS / 2)


def speech_arrays(clips: dict[str, SpokenClips], frontend, n_samples: int, cache: Path, progress: bool) -> dict[str, ArraySet]:
    """Each split's cached front-end outputs (spectrograms, or waveforms for a waveform front-end)."""
    frames_per_second = frontend.cfg.sample_rate / frontend.cfg.hop_length
    return {name: ArraySet(cached_log_spectrograms(c.paths, frontend, n_samples, cache, progress=progress),
                           c.concepts, c.classes.astype(np.float64), paths=list(c.paths),
                           spans=None if c.spans is None else c.spans * frames_per_second)
            for name, c in clips.items()}


def speech_scores(model, data: ArraySet, clips: SpokenClips) -> dict[str, Any]:
    """Accuracy (and for the explainable model each concept's r, and accuracy where it is present/absent)
    of ``model`` on one split's cached inputs ``data``."""
    out = network_outputs(model, data)
    scores: dict[str, Any] = {"n": len(data), "voices": len(set(clips.speakers))}
    if isinstance(model, TwoStageModel):
        concepts = np.clip(out, *model.config.concept_scale)
        logits = model.head.predict(concepts)
        r = pearson_per_column(data.concepts, concepts)
        scores["concepts"] = {n: {"r": float(r[k])} for k, n in enumerate(model.config.concept_names)}
        for k, n in enumerate(model.config.concept_names):
            if set(np.unique(data.concepts[:, k])) <= {0.0, 1.0}:  # present or absent
                scores["concepts"][n]["accuracy"] = float(np.mean((concepts[:, k] > 0.5) == (data.concepts[:, k] > 0.5)))
        scores["concept_r"] = float(np.nanmean(r))
    else:
        logits = out
    scores["accuracy"] = float(np.mean(logits.argmax(axis=1) == clips.classes))
    return scores


def load_speech_clips(source: str | Path, task: str, cache: Path, progress: bool = True) -> dict[str, SpokenClips]:
    """The train/val/test clips of a spoken-digit corpus (``midlevel corpus speech``) or of an AudioMNIST clone
    (the folder holding ``data/``; its speaker-disjoint splits, concepts from ``audiomnist_clips``), told apart
    by their layout."""
    from ..datasets.audiomnist import META_FILE, load_audiomnist

    root = Path(source)
    if (root / "data" / META_FILE).is_file() and not (root / "labels.csv").is_file():
        return audiomnist_clips(load_audiomnist(root, task=task), task, cache / f"praat-{task}.csv", progress)
    return load_spoken_corpus(root, task)


def _start_from(init_from: str | Path, folder: str):
    """The model a fine-tune of ``folder`` starts from: ``init_from`` itself for the explainable model; for a
    black box, the zoo entry of that backbone whose explainable twin ``init_from`` names, or the sibling folder
    of a trained run (``.../models/<folder>``); None when there is none (it trains from scratch)."""
    from .. import zoo

    if folder == "explainable":
        return zoo.load(init_from)
    if isinstance(init_from, Path) or "/" in str(init_from):
        sibling = Path(init_from).parent / folder
        return zoo.load(sibling) if (sibling / "config.json").is_file() else None
    entry = zoo.get_entry(str(init_from))
    twins = [e.name for e in zoo.REGISTRY.values() if e.twin == entry.name and e.shipped
             and e.backbone == BLACK_BOXES[folder]]
    return zoo.load(twins[0]) if twins else None


def train_speech_models(corpus: str | Path, out_dir: str | Path, *, task: str = "digit", epochs: int = 12,
                        seed: int = 0, black_box: bool | Sequence[str] = True, device: str | None = "cpu",
                        progress: bool = True, callbacks: Sequence[Any] = (),
                        crop_seconds: float | None | str = "auto", init_from: str | Path | None = None,
                        lr: float | None = None) -> dict[str, Any]:
    """Train the explainable ``task`` model (and its black-box twins) on a spoken-digit corpus or an AudioMNIST
    clone (``load_speech_clips``); resumable. Writes ``out_dir/models/{explainable,black_box,black_box_raw}``
    and ``out_dir/results.json`` (held-out voices' scores). ``black_box``: True for every twin of
    ``BLACK_BOXES``, False for none, or the folder names to train.

    ``init_from``: fine-tune instead of training from scratch: the explainable model starts from this zoo entry
    (or model folder) of the same task, each black box from its zoo twin (``_start_from``); the front-ends keep
    their normalisation, the logistic head is fitted again on the new training clips' concepts. ``lr``: the
    learning rate (default 2e-3 from scratch, 5e-4 for a fine-tune).

    ``crop_seconds``: the concept network trains on random crops of this length, each phone class labelled
    by whether the crop overlaps where it was said (``loops.timed_labels``), so a concept follows its sound
    over time; None: whole clips with whole-word labels; "auto": ``TIMED_CROP_SECONDS`` for the digit task (its
    concepts have time spans), None for the sex task (Praat's measures describe the whole clip). The model's
    metadata keeps the crop length as ``timeline_window_seconds``: the window its timeline reads best with."""
    if crop_seconds == "auto":
        crop_seconds = TIMED_CROP_SECONDS if task == "digit" else None
    out_dir = Path(out_dir)
    clips = load_speech_clips(corpus, task, out_dir / "cache", progress)
    torch.manual_seed(seed)
    if init_from is not None:
        explainable = _start_from(init_from, "explainable")
        if not isinstance(explainable, TwoStageModel) or explainable.config.concept_names != list(TASKS[task][0]):
            raise ValueError(f"--init-from {init_from}: not an explainable {task} model (its concepts: "
                             f"{getattr(explainable.config, 'concept_names', None)})")
        explainable.config = replace(explainable.config, name=f"{task}-explainable")
        crop_seconds = explainable.config.metadata.get("timeline_window_seconds") if crop_seconds == "auto" else crop_seconds
    else:
        config = replace(speech_config(task), name=f"{task}-explainable")
        if crop_seconds is not None:
            config = replace(config, metadata={"timeline_window_seconds": crop_seconds})
        explainable = TwoStageModel(config)
    arrays = speech_arrays(clips, explainable.frontend, explainable.config.window_samples, out_dir / "cache", progress)
    spec = arrays["train"].logspec.float()
    mean, std = spec.mean(dim=(0, 2)), spec.std(dim=(0, 2))
    del spec
    crop = None if crop_seconds is None else int(round(crop_seconds * SPEECH_FRONTEND.sample_rate
                                                       / SPEECH_FRONTEND.hop_length))
    # crops make the whole-clip validation score noisier: a longer patience
    settings = TrainSettings(setup="concepts", epochs=epochs, batch_size=32,
                             lr=lr or (2e-3 if init_from is None else 5e-4), patience=4 if crop is None else 10,
                             seed=seed, lr_schedule="cosine", crop_frames=crop)
    results: dict[str, Any] = {"task": task, "corpus": str(corpus), "seed": seed, "epochs": epochs,
                               "crop_seconds": crop_seconds, "init_from": None if init_from is None else str(init_from),
                               "clips": {k: len(v.paths) for k, v in clips.items()},
                               "voices": {k: len(set(v.speakers)) for k, v in clips.items()}, "models": {}}
    started = time.perf_counter()
    if init_from is None:  # a fine-tune keeps the normalisation its weights were trained with
        explainable.set_input_normalization(mean, std)
    state = train_network(explainable, arrays["train"], arrays["val"], settings, out_dir / "runs" / "explainable",
                          progress=progress, device=device, callbacks=callbacks)
    explainable.head.fit(np.clip(network_outputs(explainable, arrays["train"]), 0, 1), clips["train"].classes)
    explainable.save_pretrained(out_dir / "models" / "explainable")
    results["models"]["explainable"] = {"best_epoch": state["best_epoch"], "seconds": time.perf_counter() - started,
                                        **{k: speech_scores(explainable, arrays[k], clips[k]) for k in ("val", "test")}}
    twins = list(BLACK_BOXES) if black_box is True else [] if black_box is False else list(black_box)
    for folder in twins:
        if folder not in BLACK_BOXES:
            raise ValueError(f"unknown black box {folder!r}; choose from {sorted(BLACK_BOXES)}")
        started = time.perf_counter()
        torch.manual_seed(seed)
        name = f"{task}-{folder.replace('_', '-')}"
        start = None if init_from is None else _start_from(init_from, folder)
        twin = BlackBoxModel(replace(speech_config(task, "black_box", BLACK_BOXES[folder]), name=name)) \
            if start is None else start
        twin.config = replace(twin.config, name=name)
        twin_arrays = arrays
        if twin.config.frontend != explainable.config.frontend:
            twin_arrays = speech_arrays(clips, twin.frontend, twin.config.window_samples, out_dir / "cache", progress)
        if start is None and twin_arrays is arrays:  # the explainable model's inputs: the statistics above
            twin.set_input_normalization(mean, std)
        elif start is None:
            spec = twin_arrays["train"].logspec.float()
            twin.set_input_normalization(spec.mean(dim=(0, 2)), spec.std(dim=(0, 2)))
            del spec
        state = train_network(twin, twin_arrays["train"], twin_arrays["val"], replace(settings, setup="a2e", crop_frames=None),
                              out_dir / "runs" / folder, progress=progress, device=device)
        twin.save_pretrained(out_dir / "models" / folder)
        results["models"][folder] = {"best_epoch": state["best_epoch"], "seconds": time.perf_counter() - started,
                                     "backbone": BLACK_BOXES[folder], "fine_tuned": start is not None,
                                     **{k: speech_scores(twin, twin_arrays[k], clips[k]) for k in ("val", "test")}}
    atomic_write_text(out_dir / "results.json", json.dumps(results, indent=1) + "\n")
    return results
