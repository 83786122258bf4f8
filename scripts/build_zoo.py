#!/usr/bin/env python
"""Evaluate a trained family on a held-out corpus, ship the chosen models, write their cards.

    python scripts/build_zoo.py --family runs/compact --eval-corpus corpora/eval-seed2
    python scripts/build_zoo.py --shap-benchmark benchmarks/results/intrinsic_vs_shap.json  # re-quote only
    python scripts/build_zoo.py --cards-only          # render the cards again from results.json
    python scripts/build_zoo.py --add compact-linear-10=runs/outside/models/joint-linear \
        --eval-corpus corpora/heldout --description "..."                        # one more entry

The first form replaces the whole zoo (entries added with ``--add`` must be added again). The third
form evaluates one more model (e.g. trained with ``--outside-concepts``) on the same
held-out corpus the zoo was evaluated on (checked), ships it beside the pinned entries without
touching them, and renders every card again (their comparison tables gain its row). Its training
corpus may differ from the zoo's (e.g. more clips of the same seed; never the held-out corpus's
seed): the entry records it and its card says so.

The second form leaves the shipped weights and every other number alone: it replaces the SHAP
section of ``model_cards/results.json`` with the benchmark's (which must have been measured on the
weights the registry pins) and renders the cards again.

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
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from midlevel.checkpoint import read_config
from midlevel.datasets.controlled.rolls import corpus_rolls
from midlevel.ioutil import atomic_write_text, sha256_file
from midlevel.model import AudioModel, TwoStageModel
from midlevel.training.cache import cached_log_spectrograms
from midlevel.training.data import load_splits
from midlevel.config import ModelConfig
from midlevel.training.loops import ArraySet, TrainSettings, batch_loss, network_outputs
from midlevel.training.recipes import evaluate, transcription_scores
from midlevel.zoo.cards import render_card, render_recipe_card
from midlevel.zoo.explain_head import head_directions, plot_shape_functions

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "src" / "midlevel" / "zoo"
CARDS = ROOT / "model_cards"

# zoo name -> (family models to ship, first one present wins; one-line description)
DEFAULT_SHIP = {
    "compact-linear": (("joint-linear",), "Compact CNN + music descriptors -> 7 mid-level concepts -> sparse linear head -> 8 emotions (A2Mid2E-Joint)"),
    "compact-gam": (("joint-gam", "a2mid2e-gam"), "Compact CNN + music descriptors -> 7 mid-level concepts -> GAM head (one curve per concept and emotion)"),
    "compact-linear-sequential": (("a2mid2e-linear",), "Compact CNN + music descriptors -> 7 mid-level concepts; sparse linear head fitted afterwards (A2Mid2E)"),
    "compact-a2e": (("a2e",), "Black-box baseline: compact CNN + music descriptors -> 8 emotions directly (A2E), for SHAP comparisons"),
}
DEFAULT_MODEL = "compact-linear"
SETUP_NAMES = {"joint": "A2Mid2E-Joint", "a2mid2e": "A2Mid2E", "a2e": "A2E", "independent": "A2Mid2E (independent)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", type=Path, help="output folder of `midlevel train`")
    ap.add_argument("--eval-corpus", type=Path, help="corpus built with a seed not used in training")
    ap.add_argument("--cache-dir", type=Path)
    ap.add_argument("--add", metavar="NAME=MODEL_DIR",
                    help="ship one more trained model folder under NAME, leaving the pinned entries alone")
    ap.add_argument("--description", help="one-line description of the --add entry")
    ap.add_argument("--cards-only", action="store_true",
                    help="render every card again from model_cards/results.json (after a change to the card text)")
    ap.add_argument("--shap-benchmark", type=Path,
                    help="intrinsic_vs_shap.json of benchmarks/intrinsic_vs_shap.py run on the shipped models "
                         "(--models with their zoo names); its numbers go into the cards")
    args = ap.parse_args()
    if args.cards_only:
        write_results_and_cards(json.loads((CARDS / "results.json").read_text()))
        return
    if args.add:
        if args.family or args.shap_benchmark or not args.eval_corpus or not args.description:
            ap.error("--add takes --eval-corpus and --description (and neither --family nor --shap-benchmark)")
        name, _, folder = args.add.partition("=")
        if not name or not folder:
            ap.error("--add wants NAME=MODEL_DIR")
        add_entry(name, Path(folder), args.eval_corpus, args.description, args.cache_dir)
        return
    if args.family is None and args.eval_corpus is None:
        if args.shap_benchmark is None:
            ap.error("give --family and --eval-corpus (build the zoo), or --shap-benchmark alone (re-quote it)")
        requote_shap_benchmark(args.shap_benchmark)
        return
    if args.family is None or args.eval_corpus is None:
        ap.error("--family and --eval-corpus go together")

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
            "training": training_summary(family, trained),
            "corpus_test": family["models"][name]["test"],
        }
    registry = {"default": DEFAULT_MODEL, "models": []}
    shutil.rmtree(ZOO / "weights", ignore_errors=True)
    (ZOO / "cards").mkdir(exist_ok=True)
    for zoo_name, (candidates, description) in DEFAULT_SHIP.items():
        source = next(c for c in candidates if c in models)
        ship(zoo_name, models[source], source, description, results["family"][source]["setup"], arrays, truth,
             results, registry)
    if args.shap_benchmark:
        results["shap_benchmark"] = shap_benchmark_summary(json.loads(args.shap_benchmark.read_text()),
                                                           {n: e["sha256"] for n, e in results["zoo"].items()},
                                                           args.shap_benchmark)
    train_clips = len(load_splits(family_corpus(args.family))["train"])
    results["recipes"] = {"vgg-linear": vgg_recipe(family, arrays, train_clips)}
    atomic_write_text(ZOO / "registry.json", json.dumps(registry, indent=1) + "\n")
    write_results_and_cards(results)


def ship(zoo_name: str, model: AudioModel, source: str, description: str, setup: str, arrays: ArraySet,
         truth: dict, results: dict, registry: dict) -> None:
    """Save ``model`` as zoo entry ``zoo_name``; its explanation and pinned sha256 go into results and registry."""
    entry_info = {"source": source, "setup": setup, "description": description,
                  "explainable": isinstance(model, TwoStageModel),
                  "parameters": sum(p.numel() for p in model.parameters()), "backbone": model.config.backbone}
    roll_weight = model.config.metadata.get("settings", {}).get("roll_weight", 0.0)
    if roll_weight:
        entry_info["roll_weight"] = roll_weight
    if isinstance(model, TwoStageModel):
        entry_info["concepts"] = list(model.config.concept_names)
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
    registry["models"] = [m for m in registry["models"] if m["name"] != zoo_name] + [{
        "name": zoo_name, "description": description, "backbone": cfg.backbone,
        "head": cfg.head if entry_info["explainable"] else "none", "setup": setup,
        "concept_names": cfg.concept_names if entry_info["explainable"] else [],
        "target_names": cfg.target_names, "sample_rate": cfg.sample_rate, "sha256": entry_info["sha256"],
        "card": f"{zoo_name}.md", "explainable": entry_info["explainable"],
    }]


def training_summary(family: dict, trained: str, model: AudioModel | None = None) -> dict:
    """How long the model ``trained`` took, from a family's results.json; for a model warm-started from
    another (``midlevel train --init-from``), also that model's own training, read from its family's
    results.json, so the card counts every epoch the weights went through."""
    out = {k: family["models"][trained][k]
           for k in ("epochs", "best_epoch", "seconds_per_epoch", "seconds_fastest_epoch", "seconds_total")}
    metadata = (model.config.metadata or {}) if model is not None else {}
    if metadata.get("settings", {}).get("trainable"):  # only these parameters moved (``midlevel train --trainable``)
        out["trainable"] = list(metadata["settings"]["trainable"])
    init = metadata.get("init_from")
    if init and Path(init["model"]).is_dir():
        init_dir = Path(init["model"])
        init_model = AudioModel.from_pretrained(init_dir, expected_sha256=init["weights_sha256"])
        init_family = json.loads((init_dir.parent.parent / "results.json").read_text())
        out["warm_start"] = {"from": init_dir.name, "weights_sha256": init["weights_sha256"],
                             "corpus": trained_corpus(init_model),
                             **training_summary(init_family, init_dir.name, init_model)}
    elif init:
        out["warm_start"] = zoo_training_summary(init["model"], init["weights_sha256"])
    return out


def zoo_training_summary(zoo_name: str, weights_sha256: str) -> dict:
    """The training of a zoo entry a run started from (``--init-from NAME``), as the shipped results record
    it: the folders it was trained in need not exist any more. Refused when the zoo now ships other weights."""
    results = json.loads((CARDS / "results.json").read_text())
    entry = results["zoo"].get(zoo_name)
    if entry is None or entry["sha256"] != weights_sha256:
        raise SystemExit(f"--init-from {zoo_name}: the shipped zoo has " + (
            f"other weights under that name ({entry['sha256'][:12]}, the run started from {weights_sha256[:12]})"
            if entry else "no such entry") + "; the training the run continued is not on record")
    return {"from": zoo_name, "weights_sha256": weights_sha256,
            "corpus": entry.get("train_corpus", results["train_corpus"]),
            **results["family"][entry["source"]]["training"]}


def read_shipped(replacing: str | None = None) -> tuple[dict, dict]:
    """(results.json, registry.json) of the shipped zoo, refused when they describe different weights
    (an entry about to be ``replacing``-ed may differ)."""
    results = json.loads((CARDS / "results.json").read_text())
    registry = json.loads((ZOO / "registry.json").read_text())
    pinned = {m["name"]: m["sha256"] for m in registry["models"] if m["name"] != replacing}
    if pinned != {n: e["sha256"] for n, e in results["zoo"].items() if n != replacing}:
        raise SystemExit(f"{CARDS / 'results.json'}: describes other weights than {ZOO / 'registry.json'} pins; "
                         "build the zoo again with --family and --eval-corpus")
    return results, registry


def add_entry(zoo_name: str, model_dir: Path, eval_corpus: Path, description: str, cache_dir: Path | None) -> None:
    """Evaluate one more model on the zoo's held-out corpus and ship it beside the pinned entries."""
    results, registry = read_shipped(replacing=zoo_name)
    corpus_info = json.loads((eval_corpus / "corpus.json").read_text())
    if summarise_corpus(corpus_info, results["eval_corpus"]["n_test"]) != results["eval_corpus"]:
        raise SystemExit(f"{eval_corpus}: is not the corpus the zoo was evaluated on "
                         f"({summarise_corpus(corpus_info, None)} vs {results['eval_corpus']})")
    model = AudioModel.from_pretrained(model_dir)
    concepts = model.config.concept_names if isinstance(model, TwoStageModel) else None
    test = load_splits(eval_corpus, concepts=concepts)["test"]
    if len(test) != results["eval_corpus"]["n_test"]:
        raise SystemExit(f"{eval_corpus}: test split has {len(test)} clips, the zoo was evaluated on "
                         f"{results['eval_corpus']['n_test']}")
    family_dir = model_dir.parent.parent  # train_family's layout: FAMILY/models/NAME
    family = json.loads((family_dir / "results.json").read_text())
    arrays = ArraySet(cached_log_spectrograms(test.paths, model.frontend, model.config.window_samples,
                                              cache_dir or family_dir / "cache"), test.concepts, test.targets)
    source = model_dir.name
    trained_on = trained_corpus(model)
    if trained_on["seed"] == results["eval_corpus"]["seed"]:
        raise SystemExit(f"{model_dir}: was trained on a corpus of seed {trained_on['seed']}, the held-out corpus's; "
                         "its clips could repeat held-out excerpts")
    setup = SETUP_NAMES.get(source.split("-")[0], source)
    replaced = results["zoo"].get(zoo_name, {}).get("source")
    key = family_key(source, concepts, model.config.backbone, train_clips=trained_on["n"],
                     taken=set(results["family"]) - {replaced})
    results["family"][key] = {
        "setup": setup if concepts is None or len(concepts) == 7 else f"{setup} ({len(concepts)} concepts)",
        "heldout_test": evaluate(model, arrays, test),
        "training": training_summary(family, source, model),
        "corpus_test": family["models"][source]["test"],
    }
    if hasattr(model.backbone, "forward_with_salience"):
        rolls = corpus_rolls(eval_corpus, test.ids, arrays.logspec.shape[-1], model.config.frontend.hop_length,
                             cache_dir=cache_dir or family_dir / "cache")
        results["family"][key]["transcription"] = transcription_scores(model, arrays, rolls)
    truth = json.loads((eval_corpus / "ground_truth.json").read_text())
    ship(zoo_name, model, key, description, results["family"][key]["setup"], arrays, truth, results, registry)
    results["zoo"][zoo_name]["trained_as"] = source
    if trained_on != results["train_corpus"]:  # e.g. a larger build of the same seed; the card says so
        results["zoo"][zoo_name]["train_corpus"] = trained_on
    atomic_write_text(ZOO / "registry.json", json.dumps(registry, indent=1) + "\n")
    write_results_and_cards(results)


def family_key(source: str, concepts: list[str] | None, backbone: str, *, train_clips: int,
               taken: set[str]) -> str:
    """The family table's row of a model added later: its setup, its number of concepts, and its backbone
    where that is not the family's (``joint-linear-10``, ``joint-linear-10-transcribe``). Where another
    row (``taken``) has that name, the training corpus's clip count follows
    (``joint-linear-10-transcribe_measures-24000``): adding a model never rewrites another's numbers."""
    key = f"{source}-{len(concepts)}" if concepts else source
    key = key if backbone == "compact_music" else f"{key}-{backbone.removeprefix('compact_')}"
    if key in taken:
        key = f"{key}-{train_clips}"
    if key in taken:
        raise SystemExit(f"the family table already has a row {key!r} for another model; ship this one under "
                         "the zoo name that row belongs to to replace it")
    return key


def write_results_and_cards(results: dict) -> None:
    """``results.json``, then every card rendered from the file as re-read (a card is a function of it)."""
    # insertion order kept (tables list concepts and emotions in their usual order)
    atomic_write_text(CARDS / "results.json", json.dumps(results, indent=1) + "\n")
    results = json.loads((CARDS / "results.json").read_text())
    for zoo_name in results["zoo"]:
        text = render_card(zoo_name, results)
        atomic_write_text(CARDS / f"{zoo_name}.md", text)
        atomic_write_text(ZOO / "cards" / f"{zoo_name}.md", text)
    for recipe_name, recipe in results["recipes"].items():
        atomic_write_text(CARDS / f"{recipe_name}.md", render_recipe_card(recipe_name, recipe, results))
    print(f"cards of {', '.join(results['zoo'])} written to {CARDS}")


def requote_shap_benchmark(path: Path) -> None:
    """Replace the SHAP numbers of the shipped zoo's results with a new benchmark run on the same weights."""
    results, registry = read_shipped()
    pinned = {m["name"]: m["sha256"] for m in registry["models"]}
    results["shap_benchmark"] = shap_benchmark_summary(json.loads(path.read_text()), pinned, path)
    write_results_and_cards(results)
    print(f"re-quoted {path} in {CARDS / 'results.json'} and the cards")


def vgg_recipe(family: dict, arrays: ArraySet, train_clips: int, n_steps: int = 3) -> dict:
    """Time joint-training steps of the paper's VGG backbone on real batches, to say why it is not shipped."""
    settings = TrainSettings(setup="joint", batch_size=16)
    torch.manual_seed(0)
    model = TwoStageModel(ModelConfig(backbone="vgg"))
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    model.train()
    spec = model.frontend.normalize(arrays.logspec[:settings.batch_size].float())
    concepts = torch.as_tensor(arrays.concepts[:settings.batch_size], dtype=torch.float32)
    targets = torch.as_tensor(arrays.targets[:settings.batch_size], dtype=torch.float32)
    times = []
    for _ in range(n_steps + 1):  # the first step warms up
        start = time.perf_counter()
        loss = batch_loss(model, settings, spec, concepts, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return {"description": "The 2019 paper's VGG-style CNN -> 7 mid-level concepts -> sparse linear head -> 8 emotions",
            "backbone": "vgg", "parameters": sum(p.numel() for p in model.parameters()),
            "batch_size": settings.batch_size, "seconds_per_batch": float(np.median(times[1:])),
            "threads": torch.get_num_threads(), "train_clips": train_clips,
            "batches_per_epoch": -(-train_clips // settings.batch_size),
            "compact_seconds_per_epoch": family["models"]["a2mid"]["seconds_fastest_epoch"]}


def shap_benchmark_summary(bench: dict, zoo_sha256: dict[str, str], path: Path) -> dict:
    """The benchmark's numbers for the shipped models it measured (on these very weights); entries it has
    not measured yet are named, and their cards say so."""
    missing = [n for n in zoo_sha256 if n not in bench["models"] and n not in bench["black_boxes"]]
    if missing:
        print(f"{path}: no results yet for {missing} (their cards say so); measure them with "
              f"`benchmarks/intrinsic_vs_shap.py --models {','.join(missing)} --merge`")
    zoo_names = [n for n in zoo_sha256 if n not in missing]
    stale = [n for n in zoo_names if bench.get("weights_sha256", {}).get(n) != zoo_sha256[n]]
    if stale:
        raise SystemExit(f"{path}: was measured on other weights than the ones shipped now for {stale}; "
                         f"run the benchmark again with --models {','.join(stale)} --merge")
    keep = {"settings": bench["settings"], "n_test": bench["n_test"], "machine": bench["machine"],
            "weights_sha256": {n: bench["weights_sha256"][n] for n in zoo_names},
            "file": "benchmarks/results/intrinsic_vs_shap.md", "models": {}, "black_boxes": bench["black_boxes"],
            "runs": bench.get("runs", []),
            "ratios": bench["cost"]["ratios"], "seconds": bench["cost"]["seconds"],
            **{k: bench["cost"][k] for k in ("additivity_tolerance", "cheapest_black_box_shap",
                                             "cheapest_any_black_box_shap", "gradient_budget")}}
    for name in zoo_names:
        if name in bench["models"]:
            keep["models"][name] = bench["models"][name]
    return keep


def family_corpus(family_dir: Path) -> str:
    config, _ = read_config(family_dir / "models" / "a2mid")
    return config.metadata["corpus"]


def trained_corpus(model: AudioModel) -> dict:
    """The summary of the corpus a model's config says it was trained on."""
    return summarise_corpus(json.loads((Path(model.config.metadata["corpus"]) / "corpus.json").read_text()), None)


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
