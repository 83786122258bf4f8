"""The zoo's classifiers (spoken digit, speaker sex): evaluate a trained model folder on its corpus's held-out
voices, ship it, and give ``build_zoo.py`` its registry row and card.

Used by ``scripts/build_zoo.py --entry NAME`` for manifest entries whose task is not music emotion; the
results go into ``model_cards/results.json`` under ``classifiers`` (music entries keep their own layout).
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
from pathlib import Path
from typing import Any

from midlevel.ioutil import sha256_file
from midlevel.model import AudioModel, TwoStageModel
from midlevel.zoo.registry import ModelEntry, parse_name

#: registry task -> the corpus reader's task
CORPUS_TASKS = {"spoken-digit": "digit", "speaker-sex": "sex", "heart-sound": "heart"}
#: the explainable heads' name codes
HEAD_CODES = {"logistic": "logistic", "gam_logistic": "gam"}


def evaluate_classifier(name: str, manifest_entry: dict, corpus: Path, root: Path, zoo: Path) -> dict[str, Any]:
    """Score the entry's model folder on its corpus's validation and held-out voices (speech), or on the
    training corpus's test split and a held-out corpus of another seed (heart sounds), save it as the zoo's
    ``name`` and return its results row (everything its card and registry row quote)."""
    model_dir = root / manifest_entry["model_dir"]
    run = json.loads((model_dir.parent.parent / "results.json").read_text())
    parsed = parse_name(name)
    model = AudioModel.from_pretrained(model_dir)
    if parsed["task"] == "heart-sound":
        info = _heart_scores(model, manifest_entry, corpus, root, run, model_dir.name)
    else:
        info = _speech_scores(model, manifest_entry, corpus, root, run, parsed["task"], model_dir.name)
    info.update({"task": parsed["task"], "source": manifest_entry["model_dir"],
                 "description": " ".join(manifest_entry["description"].split()),
                 "explainable": isinstance(model, TwoStageModel), "backbone": model.config.backbone,
                 "parameters": sum(p.numel() for p in model.parameters()),
                 "window_seconds": model.config.window_seconds,
                 "level_normalized": model.config.frontend.level_target_dbfs is not None,
                 "recipe": [" ".join(c.split()) for c in manifest_entry["train"]]})
    if info["explainable"]:
        info["concepts"] = list(model.config.concept_names)
        info["head_kind"] = HEAD_CODES[model.config.head]
        grid = np.linspace(0.0, 1.0, 5)
        terms = model.head.contributions(np.repeat(grid[:, None], len(info["concepts"]), axis=1))  # (5, C, K)
        info["head"] = {"grid": grid.tolist(), "intercept": dict(zip(model.config.target_names,
                                                                     map(float, np.ravel(model.head.intercept_)))),
                        "terms": {c: {k: terms[:, j, i].round(4).tolist() for i, k in enumerate(info["concepts"])}
                                  for j, c in enumerate(model.config.target_names)}}
        if model.config.head == "logistic":
            info["head"]["coef"] = {c: dict(zip(model.config.concept_names, map(float, row)))
                                    for c, row in zip(model.config.target_names, model.head.coef_)}
    model.config = replace(model.config, name=name, description=info["description"])
    folder = model.save_pretrained(zoo / "weights" / name)
    info["sha256"] = sha256_file(folder / "model.safetensors")
    info["size_bytes"] = (folder / "model.safetensors").stat().st_size
    info["sample_rate"] = model.config.sample_rate
    info["target_names"] = list(model.config.target_names)
    return info


def _heart_scores(model, manifest_entry: dict, heldout: Path, root: Path, run: dict, folder: str) -> dict[str, Any]:
    """Held-out corpus (another seed, read whole) and the training corpus's test split, as a user reads files."""
    from midlevel.datasets.heart_corpus import HEART_CONCEPTS, load_heart_corpus
    from midlevel.training.heart import score_model

    train_corpus = root / manifest_entry["train_corpus_path"]
    concepts = tuple(model.config.concept_names) if isinstance(model, TwoStageModel) else HEART_CONCEPTS
    splits = load_heart_corpus(train_corpus, concepts=concepts)
    trained = run["models"][folder]
    return {"heldout_test": score_model(model, load_heart_corpus(heldout, fractions=(0.0, 0.0, 1.0),
                                                                 concepts=concepts)["test"]),
            "validation": score_model(model, splits["test"]),
            "train_clips": len(splits["train"]),
            "corpus": {k: v for k, v in json.loads((heldout / "build.json").read_text()).items()
                       if isinstance(v, (int, float, str))},
            "training": {"seed": run["seed"], "epochs": run["epochs"], "recordings": run["recordings"]},
            "best_epoch": trained.get("best_epoch"), "seconds": trained.get("seconds", 0.0)}


def _speech_scores(model, manifest_entry: dict, corpus: Path, root: Path, run: dict, task: str, folder: str
                   ) -> dict[str, Any]:
    """Validation and held-out voices of the spoken-digit corpus."""
    from midlevel.datasets.spoken_corpus import load_spoken_corpus
    from midlevel.training.speech import speech_arrays, speech_scores

    model_dir = Path(manifest_entry["model_dir"])
    clips = load_spoken_corpus(corpus, CORPUS_TASKS[task])
    held = {k: clips[k] for k in ("val", "test")}
    build = json.loads((corpus / "build.json").read_text())
    arrays = speech_arrays(held, model.frontend, model.config.window_samples, root / model_dir.parent.parent / "cache",
                           progress=False)
    trained = run["models"][folder]
    scores = {"validation": speech_scores(model, arrays["val"], clips["val"]),
              "heldout_test": speech_scores(model, arrays["test"], clips["test"]),
              "train_clips": len(clips["train"].paths), "heldout_voices": sorted(set(clips["test"].speakers)),
              "corpus": {k: v for k, v in build.items() if k != "speakers"} | {"speakers": len(build["speakers"])},
              "training": {k: run[k] for k in ("seed", "epochs", "voices", "clips")},
              "best_epoch": trained["best_epoch"], "seconds": trained["seconds"]}
    if isinstance(model, TwoStageModel) and model.config.metadata.get("timeline_window_seconds"):
        scores["timeline_window_seconds"] = model.config.metadata["timeline_window_seconds"]
        heard = heard_in_timeline(model, clips["test"])
        timed = ~np.isnan(clips["test"].spans[:, :, 0]).all(axis=0)  # concepts with a place in time
        for k, c in enumerate(model.config.concept_names):
            if timed[k] and "accuracy" in scores["heldout_test"]["concepts"][c]:
                scores["heldout_test"]["concepts"][c]["heard_accuracy"] = float(heard[k])
    return scores


def heard_in_timeline(model: TwoStageModel, clips, hop_seconds: float = 0.05):
    """Per concept, the share of clips where "heard somewhere" (the timeline's maximum over windows of the
    length the concepts were trained on, > 0.5) is right about present/absent. A concept trained on crops
    reads diluted on a whole clip (the sound fills part of it), so presence is read where the model says it
    hears it."""
    from midlevel.audio import load_audio
    from midlevel.explain.timeline import timeline

    window = model.config.metadata["timeline_window_seconds"]
    right = []
    for path, truth in zip(clips.paths, clips.concepts):
        line = timeline(model, load_audio(str(path), model.config.sample_rate), window_seconds=window,
                        hop_seconds=hop_seconds)
        right.append((line.concepts.max(axis=0) > 0.5) == (truth > 0.5))
    return np.mean(right, axis=0)


def registry_row(name: str, info: dict[str, Any], manifest_entry: dict) -> dict[str, Any]:
    """The registry's row of a classifier entry, its name checked against what the entry is."""
    parsed = parse_name(name)
    held = info["heldout_test"]
    concepts = info.get("concepts", [])
    wanted = {"task": info["task"], "backbone": info["backbone"], "n_concepts": len(concepts),
              "head": info.get("head_kind", "logistic") if info["explainable"] else "a2c",
              "train_clips": round(info["train_clips"] / 1000) * 1000}
    wrong = {k: (parsed[k], v) for k, v in wanted.items() if parsed[k] != v}
    if wrong:
        raise SystemExit(f"{name}: the name says {', '.join(f'{k}={a}' for k, (a, _) in wrong.items())} but the "
                         f"entry has {', '.join(f'{k}={b}' for k, (_, b) in wrong.items())}")
    metrics = {"accuracy": held["accuracy"], "n_eval": held["n"]}
    if "concept_r" in held:
        metrics["concept_r"] = held["concept_r"]
    return {"name": name, "task": info["task"], "description": info["description"],
            "purpose": " ".join(manifest_entry["purpose"].split()), "backbone": info["backbone"],
            "head": wanted["head"] if info["explainable"] else "none",
            "setup": (f"concepts, then a {'GAM' if wanted['head'] == 'gam' else 'sparse'} logistic head"
                      if info["explainable"] else "black box: audio to class logits"),
            "concept_names": concepts, "target_names": info["target_names"], "sample_rate": info["sample_rate"],
            "sha256": info["sha256"], "size_bytes": info["size_bytes"], "train_clips": info["train_clips"],
            "card": f"{name}.md", "status": manifest_entry["status"], "shipped": bool(manifest_entry["ship"]),
            "explainable": info["explainable"], "superseded_by": manifest_entry.get("superseded_by"),
            "aliases": list(manifest_entry.get("aliases", [])), "twin": manifest_entry.get("twin"),
            "metrics": metrics}


def is_classifier(name: str) -> bool:
    return parse_name(name)["task"] in CORPUS_TASKS


__all__ = ["ModelEntry", "evaluate_classifier", "is_classifier", "registry_row"]
