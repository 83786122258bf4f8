#!/usr/bin/env python
"""Evaluate a trained family on a held-out corpus, ship the chosen models, write their cards.

    python scripts/build_zoo.py --family runs/compact --eval-corpus corpora/eval-seed2

Writes (all generated; never edit by hand):
- ``src/midlevel/zoo/weights/<name>/`` model folders and ``src/midlevel/zoo/registry.json``
  (sha256 pinned per entry);
- ``model_cards/results.json``: every number the cards quote;
- ``model_cards/<name>.md`` (+ a copy in ``src/midlevel/zoo/cards/`` for installed packages) and
  ``model_cards/figures/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from midlevel.checkpoint import read_config
from midlevel.ioutil import atomic_write_text, sha256_file
from midlevel.model import AudioModel, TwoStageModel
from midlevel.training.cache import cached_log_spectrograms
from midlevel.training.data import load_splits
from midlevel.training.loops import ArraySet, network_outputs
from midlevel.training.recipes import evaluate
from midlevel.zoo.cards import render_card
from midlevel.zoo.explain_head import head_directions, plot_shape_functions

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "src" / "midlevel" / "zoo"
CARDS = ROOT / "model_cards"

# zoo name -> (family models to ship, first one present wins; one-line description)
DEFAULT_SHIP = {
    "compact-linear": (("joint-linear",), "Compact CNN -> 7 mid-level concepts -> sparse linear head -> 8 emotions (A2Mid2E-Joint)"),
    "compact-gam": (("joint-gam", "a2mid2e-gam"), "Compact CNN -> 7 mid-level concepts -> GAM head (one curve per concept and emotion)"),
    "compact-linear-sequential": (("a2mid2e-linear",), "Compact CNN -> 7 mid-level concepts; sparse linear head fitted afterwards (A2Mid2E)"),
    "compact-a2e": (("a2e",), "Black-box baseline: compact CNN -> 8 emotions directly (A2E), for SHAP comparisons"),
}
DEFAULT_MODEL = "compact-linear"
SETUP_NAMES = {"joint": "A2Mid2E-Joint", "a2mid2e": "A2Mid2E", "a2e": "A2E", "independent": "A2Mid2E (independent)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", required=True, type=Path, help="output folder of `midlevel train`")
    ap.add_argument("--eval-corpus", required=True, type=Path, help="corpus built with a seed not used in training")
    ap.add_argument("--cache-dir", type=Path)
    args = ap.parse_args()

    family = json.loads((args.family / "results.json").read_text())
    splits = load_splits(args.eval_corpus)
    test = splits["test"]
    any_model = AudioModel.from_pretrained(args.family / "models" / "a2e")
    arrays = ArraySet(cached_log_spectrograms(test.paths, any_model.frontend, any_model.config.window_samples,
                                              args.cache_dir or args.family / "cache"), test.concepts, test.targets)
    truth = json.loads((args.eval_corpus / "ground_truth.json").read_text())
    corpus_info = json.loads((args.eval_corpus / "corpus.json").read_text())
    train_info = json.loads((Path(family_corpus(args.family)) / "corpus.json").read_text())

    results = {"eval_corpus": summarise_corpus(corpus_info, len(test)),
               "train_corpus": summarise_corpus(train_info, None),
               "ground_truth": truth, "family": {}, "zoo": {}}
    models = {}
    for name in family["models"]:
        model = AudioModel.from_pretrained(args.family / "models" / name)
        models[name] = model
        # sequential and independent heads reuse the concept model: its training is theirs
        trained = "a2mid" if name.startswith(("a2mid2e", "independent")) else name
        results["family"][name] = {
            "setup": SETUP_NAMES.get(name.split("-")[0], name),
            "heldout_test": evaluate(model, arrays, test),
            "training": {k: family["models"][trained][k] for k in ("epochs", "best_epoch", "seconds_per_epoch",
                                                                         "seconds_fastest_epoch", "seconds_total")},
            "corpus_test": family["models"][name]["test"],
        }
    registry = {"default": DEFAULT_MODEL, "models": []}
    shutil.rmtree(ZOO / "weights", ignore_errors=True)
    (ZOO / "cards").mkdir(exist_ok=True)
    for zoo_name, (candidates, description) in DEFAULT_SHIP.items():
        source = next(c for c in candidates if c in models)
        model = models[source]
        info = results["family"][source]
        entry_info = {"source": source, "setup": info["setup"], "description": description,
                      "explainable": isinstance(model, TwoStageModel),
                      "parameters": sum(p.numel() for p in model.parameters())}
        if isinstance(model, TwoStageModel):
            concepts = network_outputs(model, arrays)
            entry_info["directions"] = head_directions(model.head, concepts, truth)
            if model.config.head == "gam":
                figure = CARDS / "figures" / f"{zoo_name}-shape-functions.png"
                plot_shape_functions(model.head, concepts, figure)
                entry_info["figure"] = f"figures/{figure.name}"
            else:
                entry_info["weights"] = {t: dict(zip(model.config.concept_names, map(float, row)))
                                         for t, row in zip(model.config.target_names, model.head.coef_)}
                entry_info["intercepts"] = dict(zip(model.config.target_names, map(float, model.head.intercept_)))
        model.config = replace(model.config, name=zoo_name, description=description)
        folder = model.save_pretrained(ZOO / "weights" / zoo_name)
        entry_info["sha256"] = sha256_file(folder / "model.safetensors")
        entry_info["size_bytes"] = (folder / "model.safetensors").stat().st_size
        results["zoo"][zoo_name] = entry_info
        cfg = model.config
        registry["models"].append({
            "name": zoo_name, "description": description, "backbone": cfg.backbone,
            "head": cfg.head if entry_info["explainable"] else "none", "setup": info["setup"],
            "concept_names": cfg.concept_names if entry_info["explainable"] else [],
            "target_names": cfg.target_names, "sample_rate": cfg.sample_rate, "sha256": entry_info["sha256"],
            "card": f"{zoo_name}.md", "explainable": entry_info["explainable"],
        })
    atomic_write_text(CARDS / "results.json", json.dumps(results, indent=1, sort_keys=True) + "\n")
    atomic_write_text(ZOO / "registry.json", json.dumps(registry, indent=1) + "\n")
    for zoo_name in results["zoo"]:
        text = render_card(zoo_name, results)
        atomic_write_text(CARDS / f"{zoo_name}.md", text)
        atomic_write_text(ZOO / "cards" / f"{zoo_name}.md", text)
    print(f"shipped {', '.join(results['zoo'])}; cards in {CARDS}")


def family_corpus(family_dir: Path) -> str:
    config, _ = read_config(family_dir / "models" / "a2mid")
    return config.metadata["corpus"]


def summarise_corpus(info: dict, n_test: int | None) -> dict:
    keep = {k: info["settings"][k] for k in ("seed", "seconds", "only_split", "music21")}
    keep.update({k: info[k] for k in ("n", "clips_per_split", "pieces_per_split")})
    if n_test is not None:
        keep["n_test"] = n_test
    return keep


if __name__ == "__main__":
    torch.set_num_threads(2)
    np.set_printoptions(precision=3)
    main()
