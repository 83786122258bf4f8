#!/usr/bin/env python
"""Build the zoo from its manifest: evaluate, ship, write the registry and the cards.

    python scripts/build_zoo.py --registry                 # registry.json, cards, README table, pruned weights
    python scripts/build_zoo.py --entry NAME [--train]     # re-evaluate (and with --train rebuild) one entry
    python scripts/build_zoo.py --family runs/music --eval-corpus corpora/heldout   # a whole trained family
    python scripts/build_zoo.py --add NAME=runs/x/models/joint-linear --eval-corpus corpora/heldout
    python scripts/build_zoo.py --shap-benchmark benchmarks/results/intrinsic_vs_shap.json  # re-quote only

``scripts/zoo_manifest.toml`` is the one list of entries: name (the naming rule is at its top), deprecated
aliases, status (current, baseline, superseded), what each is for, its corpus recipe, training commands,
``--init-from`` chain, model folder and evaluation corpus. ``--entry NAME`` evaluates the entry's model
folder on the held-out corpus (building that corpus first when it is missing); with ``--train`` it first
runs whatever of the corpus recipes, the init-from chain and the training commands has no output yet.
Every mode ends by writing the registry from the manifest and ``model_cards/results.json``: entries with
``ship = false`` leave the package's weights (their numbers, sha256 and cards stay), and the default is
not chosen here but by ``midlevel.zoo.registry.default_name`` from the recorded scores.

``--family`` replaces the family rows of the results; ``--add`` evaluates one more model on the same
held-out corpus the zoo was evaluated on (checked) and ships it beside the pinned entries; its training
corpus may differ from the zoo's (more clips of the same seed; never the held-out corpus's seed): the entry
records it and its card says so. ``--shap-benchmark`` leaves weights and other numbers alone and replaces
the SHAP section of the results with the benchmark's (measured on the pinned weights).

Writes (all generated; never edit by hand):
- ``src/midlevel/zoo/weights/<name>/`` for shipped entries, ``src/midlevel/zoo/registry.json``;
- ``model_cards/results.json``: every number the cards quote;
- ``model_cards/<name>.md`` (+ a copy in ``src/midlevel/zoo/cards/`` for installed packages),
  ``model_cards/figures/``, and the zoo table between the README's ``zoo-table`` markers.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
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
from midlevel.zoo.cards import render_card, render_recipe_card, zoo_table_markdown
from midlevel.zoo.registry import ModelEntry, default_name, parse_name
from midlevel.zoo.explain_head import head_directions, plot_shape_functions
from midlevel.zoo.classifier_cards import classifier_table_markdown, render_classifier_card

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the classifiers' half of the build, beside this file
from zoo_classifiers import evaluate_classifier, is_classifier, registry_row  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "src" / "midlevel" / "zoo"
CARDS = ROOT / "model_cards"
MANIFEST = ROOT / "scripts" / "zoo_manifest.toml"
README = ROOT / "README.md"
TABLE_MARKERS = ("<!-- zoo-table:start -->", "<!-- zoo-table:end -->")
SPEECH_TABLE_MARKERS = ("<!-- speech-table:start -->", "<!-- speech-table:end -->")

# zoo name -> (family models to ship, first one present wins; one-line description)
DEFAULT_SHIP = {
    "emotion-compact-linear-mid7-ctrl3k": (("joint-linear",), "Compact CNN + music descriptors -> 7 mid-level concepts -> sparse linear head -> 8 emotions (A2Mid2E-Joint)"),
    "emotion-compact-gam-mid7-ctrl3k-seq": (("joint-gam", "a2mid2e-gam"), "Compact CNN + music descriptors -> 7 mid-level concepts -> GAM head (one curve per concept and emotion)"),
    "emotion-compact-linear-mid7-ctrl3k-seq": (("a2mid2e-linear",), "Compact CNN + music descriptors -> 7 mid-level concepts; sparse linear head fitted afterwards (A2Mid2E)"),
    "emotion-compact-a2e-ctrl3k": (("a2e",), "Black-box baseline: compact CNN + music descriptors -> 8 emotions directly (A2E), for SHAP comparisons"),
}
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
    ap.add_argument("--real-recordings", type=Path,
                    help="real_recordings.json of benchmarks/real_recordings.py run on the zoo's weights; its rows go "
                         "into every card (with --registry or alone)")
    ap.add_argument("--randomised", type=Path,
                    help="heldout_randomised.json of studies/heldout_randomised.py: each zoo entry's held-out scores "
                         "under randomised recording conditions (matched by weights sha256) go into results.json, "
                         "the registry's metrics (music's default is chosen by them) and the cards")
    ap.add_argument("--registry", action="store_true",
                    help="write registry.json, the cards and the README's zoo table from the manifest and "
                         "results.json, and drop the weights of entries the manifest does not ship")
    ap.add_argument("--entry", metavar="NAME", help="re-evaluate one manifest entry from its model folder")
    ap.add_argument("--train", action="store_true",
                    help="with --entry: first build its corpora and run its training (and its --init-from "
                         "chain's) where their outputs are missing")
    args = ap.parse_args()
    if args.real_recordings:
        results, _ = read_shipped()
        results["real_recordings"] = real_recordings_summary(json.loads(args.real_recordings.read_text()), results,
                                                             args.real_recordings)
        write_results_and_cards(results)
        return
    if args.randomised:
        results, _ = read_shipped()
        results["heldout_randomised"] = randomised_summary(json.loads(args.randomised.read_text()), results)
        write_results_and_cards(results)
        return
    if args.cards_only or args.registry:
        write_results_and_cards(json.loads((CARDS / "results.json").read_text()))
        return
    if args.entry:
        rebuild_entry(args.entry, train=args.train)
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
    shutil.rmtree(ZOO / "weights", ignore_errors=True)
    (ZOO / "cards").mkdir(exist_ok=True)
    for zoo_name, (candidates, description) in DEFAULT_SHIP.items():
        source = next(c for c in candidates if c in models)
        ship(zoo_name, models[source], source, description, results["family"][source]["setup"], arrays, truth,
             results)
    if args.shap_benchmark:
        results["shap_benchmark"] = shap_benchmark_summary(json.loads(args.shap_benchmark.read_text()),
                                                           {n: e["sha256"] for n, e in results["zoo"].items()},
                                                           args.shap_benchmark)
    train_clips = len(load_splits(family_corpus(args.family))["train"])
    results["recipes"] = {"vgg-linear": vgg_recipe(family, arrays, train_clips)}
    write_results_and_cards(results)


def ship(zoo_name: str, model: AudioModel, source: str, description: str, setup: str, arrays: ArraySet,
         truth: dict, results: dict) -> None:
    """Save ``model`` as zoo entry ``zoo_name``; its explanation and pinned sha256 go into the results (the
    registry is written from them and the manifest by ``write_registry``)."""
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
    entry_info["sample_rate"] = model.config.sample_rate
    entry_info["target_names"] = list(model.config.target_names)
    results["zoo"][zoo_name] = entry_info


def training_summary(family: dict, trained: str, model: AudioModel | None = None) -> dict:
    """How long the model ``trained`` took, from a family's results.json; for a model warm-started from
    another (``midlevel train --init-from``), also that model's own training, read from its family's
    results.json, so the card counts every epoch the weights went through."""
    out = {k: family["models"][trained][k]
           for k in ("epochs", "best_epoch", "seconds_per_epoch", "seconds_fastest_epoch", "seconds_total")}
    # what made weights without epochs: a closed-form fit (``scripts/fit_structural_register.py``), steps of a study's
    # terms (``studies/stretch_equivariance.py``), weights part of the way to a continuation (``studies/weight_interpolation.py``)
    out |= {k: family["models"][trained][k] for k in ("fit", "continued", "weight_average") if k in family["models"][trained]}
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
    recorded = {**results["zoo"], **results.get("classifiers", {})}
    if pinned != {n: e["sha256"] for n, e in recorded.items() if n != replacing}:
        raise SystemExit(f"{CARDS / 'results.json'}: describes other weights than {ZOO / 'registry.json'} pins; "
                         "build the zoo again with --family and --eval-corpus")
    return results, registry


def add_entry(zoo_name: str, model_dir: Path, eval_corpus: Path, description: str, cache_dir: Path | None) -> None:
    """Evaluate one more model on the zoo's held-out corpus and ship it beside the pinned entries."""
    if zoo_name not in manifest_entries():
        raise SystemExit(f"{zoo_name}: not in {MANIFEST}; add its entry (name, status, purpose, recipe) first")
    results, _ = read_shipped(replacing=zoo_name)
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
                     taken=set(results["family"]) - {replaced}, version=int(parse_name(zoo_name)["version"]))
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
    ship(zoo_name, model, key, description, results["family"][key]["setup"], arrays, truth, results)
    results["zoo"][zoo_name]["trained_as"] = source
    if trained_on != results["train_corpus"]:  # e.g. a larger build of the same seed; the card says so
        results["zoo"][zoo_name]["train_corpus"] = trained_on
    write_results_and_cards(results)


def family_key(source: str, concepts: list[str] | None, backbone: str, *, train_clips: int,
               taken: set[str], version: int = 1) -> str:
    """The family table's row of a model added later: its setup, its number of concepts, and its backbone
    where that is not the family's (``joint-linear-10``, ``joint-linear-10-transcribe``). Where another
    row (``taken``) has that name, the training corpus's clip count follows
    (``joint-linear-10-transcribe_measures-24000``), then the zoo name's version tag (``-v2``, later weights
    on the same corpus): adding a model never rewrites another's numbers."""
    key = f"{source}-{len(concepts)}" if concepts else source
    key = key if backbone == "compact_music" else f"{key}-{backbone.removeprefix('compact_')}"
    if key in taken:
        key = f"{key}-{train_clips}"
    if key in taken and version > 1:
        key = f"{key}-v{version}"
    if key in taken:
        raise SystemExit(f"the family table already has a row {key!r} for another model; ship this one under "
                         "the zoo name that row belongs to to replace it")
    return key


def write_results_and_cards(results: dict) -> None:
    """``results.json`` (with each entry's manifest metadata), the registry, then every card rendered from the
    file as re-read (a card is a function of it), and the README's zoo table."""
    manifest = manifest_entries()
    for name, info in [*results["zoo"].items(), *results.get("classifiers", {}).items()]:
        if name not in manifest:
            raise SystemExit(f"{name}: has results but no entry in {MANIFEST}")
        m = manifest[name]
        info.update(status=m["status"], purpose=" ".join(m["purpose"].split()), shipped=bool(m["ship"]),
                    aliases=list(m.get("aliases", [])), superseded_by=m.get("superseded_by"), twin=m.get("twin"))
    # insertion order kept (tables list concepts and emotions in their usual order)
    atomic_write_text(CARDS / "results.json", json.dumps(results, indent=1) + "\n")
    results = json.loads((CARDS / "results.json").read_text())
    entries = write_registry(results, manifest)
    (ZOO / "cards").mkdir(exist_ok=True)
    for stale in [*(ZOO / "cards").glob("*.md"), *CARDS.glob("*.md")]:
        if stale.stem not in results["zoo"] and stale.stem not in results["recipes"] \
                and stale.stem not in results.get("classifiers", {}):
            stale.unlink()
    cards = [(n, render_card) for n in results["zoo"]] + [(n, render_classifier_card) for n in results.get("classifiers", {})]
    for zoo_name, render in cards:
        text = render(zoo_name, results)
        atomic_write_text(CARDS / f"{zoo_name}.md", text)
        atomic_write_text(ZOO / "cards" / f"{zoo_name}.md", text)
    for recipe_name, recipe in results["recipes"].items():
        atomic_write_text(CARDS / f"{recipe_name}.md", render_recipe_card(recipe_name, recipe, results))
    write_readme_table(entries)
    print(f"cards of {', '.join(results['zoo'])} written to {CARDS}")


def manifest_entries() -> dict[str, dict]:
    """The manifest's entries by name, in its order."""
    return {e["name"]: e for e in read_manifest()["entry"]}


def read_manifest() -> dict:
    data = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    for e in data["entry"]:
        parse_name(e["name"])  # the naming rule, or a clear refusal
        if e.get("twin") and e["twin"] not in {x["name"] for x in data["entry"]}:
            raise SystemExit(f"{MANIFEST}: {e['name']}: twin {e['twin']!r} is not an entry")
        if e["status"] == "superseded" and (e["ship"] or not e.get("superseded_by")):
            raise SystemExit(f"{MANIFEST}: {e['name']} is superseded: ship = false and superseded_by are required")
    return data


def registry_metrics(heldout: dict, concepts: list[str], randomised: dict | None = None) -> dict:
    """The headline held-out scores a user chooses by, read from the results (never typed); with
    ``randomised`` (the entry's row of ``randomised_summary``), the same under randomised conditions."""
    out = {"emotion_r": heldout["targets"]["mean"]["r"], "n_eval": heldout.get("n")}
    if "concepts" in heldout:
        out["concept_r"] = heldout["concepts"]["mean"]["r"]
        seven = [heldout["concepts"][c]["r"] for c in concepts[:7]]
        out["concept_r_mid7"] = sum(seven) / len(seven)
    if randomised:
        out["emotion_r_randomised"] = randomised["emotion_r"]
        out["concept_r_randomised"] = randomised.get("concept_r")
    return {k: v for k, v in out.items() if v is not None}


def randomised_summary(study: dict, results: dict) -> dict:
    """Zoo entry -> its scores on the randomised held-out corpus, from ``studies/heldout_randomised.py``'s
    JSON (rows are matched to entries by the weights' sha256, so a retrained entry must be scored again)."""
    by_sha = {info["sha256"]: name for name, info in results["zoo"].items()}
    out = {}
    for per in study.values():
        for corpus, row in per.items():
            name = by_sha.get(row.get("weights_sha256"))
            if name is None or not corpus.rstrip("/").endswith("heldout-rand"):
                continue
            out[name] = {"corpus": corpus, "n": row["n"], "weights_sha256": row["weights_sha256"],
                         "emotion_r": row["targets"]["mean"]["r"],
                         **({"concept_r": row["concepts"]["mean"]["r"]} if row.get("concepts") else {})}
    return out


def write_registry(results: dict, manifest: dict[str, dict]) -> dict[str, ModelEntry]:
    """registry.json from the manifest (status, purpose, aliases) and the results (scores, sha256, size);
    weights of entries not shipped are removed from the package. Each name is checked against the entry it
    names (backbone, head, concept count, training clips, setup)."""
    models, entries = [], {}
    for name, m in manifest.items():
        info = results.get("classifiers" if is_classifier(name) else "zoo", {}).get(name)
        if info is None:
            print(f"{name}: in the manifest but not evaluated yet; build it with --entry {name}")
            continue
        if is_classifier(name):
            raw = registry_row(name, info, m)
            _check_shipped_weights(raw)
            models.append(raw)
            entries[name] = ModelEntry(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
            continue
        held = results["family"][info["source"]]["heldout_test"]
        concepts = [c for c in held.get("concepts", {}) if c != "mean"] if info["explainable"] else []
        clips = info.get("train_corpus", results["train_corpus"])["n"]
        head = info["source"].split("-")[1] if info["explainable"] else "none"
        parsed = parse_name(name)
        conditions = info.get("train_corpus", results["train_corpus"]).get("conditions", "dry")
        # the name gives thousands of clips, rounded (a 1200-clip continuation corpus is ``rand1k``)
        wanted = {"backbone": info["backbone"], "head": "a2e" if head == "none" else head,
                  "n_concepts": len(concepts), "train_clips": int(round(clips / 1000)) * 1000, "conditions": conditions,
                  "sequential": info["setup"].startswith("A2Mid2E") and "Joint" not in info["setup"]}
        wrong = {k: (parsed[k], v) for k, v in wanted.items() if parsed[k] != v}
        if wrong:
            raise SystemExit(f"{name}: the name says {', '.join(f'{k}={a}' for k, (a, _) in wrong.items())} but the "
                             f"entry has {', '.join(f'{k}={b}' for k, (_, b) in wrong.items())}")
        raw = {"name": name, "task": parsed["task"], "description": info["description"],
               "purpose": info["purpose"], "backbone": info["backbone"], "head": head, "setup": info["setup"],
               "concept_names": concepts,
               "target_names": info.get("target_names") or [t for t in held["targets"] if t != "mean"],
               "sample_rate": info.get("sample_rate", 22050), "sha256": info["sha256"],
               "size_bytes": info["size_bytes"], "train_clips": clips, "card": f"{name}.md",
               "status": m["status"], "shipped": bool(m["ship"]), "explainable": info["explainable"],
               "superseded_by": m.get("superseded_by"), "aliases": list(m.get("aliases", [])),
               "twin": m.get("twin"),
               "metrics": registry_metrics(held, concepts, results.get("heldout_randomised", {}).get(name))}
        _check_shipped_weights(raw)
        models.append(raw)
        entries[name] = ModelEntry(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    for folder in (ZOO / "weights").iterdir():
        if folder.name not in entries or not entries[folder.name].shipped:
            shutil.rmtree(folder)
    atomic_write_text(ZOO / "registry.json", json.dumps({"models": models}, indent=1) + "\n")
    print(f"registry: {len(models)} entries, {sum(e.shipped for e in entries.values())} shipped; "
          f"music default by recorded emotion r under randomised conditions: {default_name(entries)}")
    return entries


def _check_shipped_weights(raw: dict) -> None:
    """A shipped entry's weights are in the package and are the ones results.json records; an entry that
    does not ship leaves the package."""
    weights = ZOO / "weights" / raw["name"]
    if raw["shipped"] and sha256_file(weights / "model.safetensors") != raw["sha256"]:
        raise SystemExit(f"{weights}: missing or other weights than results.json records; "
                         f"rebuild with --entry {raw['name']}")
    if not raw["shipped"]:
        shutil.rmtree(weights, ignore_errors=True)


def write_readme_table(entries: dict[str, ModelEntry]) -> None:
    """The zoo tables between the README's markers (each left alone when its markers are absent): music
    emotion, then the speech classifiers."""
    text = README.read_text(encoding="utf-8")
    music = {n: e for n, e in entries.items() if not is_classifier(n)}
    for (start, end), table in ((TABLE_MARKERS, zoo_table_markdown(music)),
                                (SPEECH_TABLE_MARKERS, classifier_table_markdown(entries))):
        if start not in text or end not in text:
            continue
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + start + "\n" + table + "\n" + end + tail
    atomic_write_text(README, text)


def rebuild_entry(name: str, *, train: bool) -> None:
    """Re-evaluate (with ``train``: first rebuild) one manifest entry, then write registry and cards."""
    manifest = read_manifest()
    entries = {e["name"]: e for e in manifest["entry"]}
    if name not in entries:
        raise SystemExit(f"{name}: not in {MANIFEST} (entries: {', '.join(entries)})")
    if is_classifier(name):  # evaluated on its own corpus's held-out voices
        corpus = _ensure_corpus(manifest, entries[name]["corpus"], run=True)
        _ensure_model(manifest, entries, name, train=train)
        results, _ = read_shipped(replacing=name)
        results.setdefault("classifiers", {})[name] = evaluate_classifier(name, entries[name], corpus, ROOT, ZOO)
        write_results_and_cards(results)
        return
    eval_corpus = _ensure_corpus(manifest, manifest["eval_corpus"], run=True)
    _ensure_model(manifest, entries, name, train=train)
    m = entries[name]
    if m.get("family"):
        print(f"{name} belongs to a family run: re-evaluated with the whole family "
              f"(--family {Path(m['model_dir']).parent.parent})")
    add_entry(name, ROOT / m["model_dir"], eval_corpus, " ".join(m["description"].split()),
              ROOT / m["cache_dir"] if m.get("cache_dir") else None)


def _run(command: str) -> None:
    print(f"$ {command}", flush=True)
    subprocess.run(shlex.split(command), cwd=ROOT, check=True)


def _ensure_corpus(manifest: dict, key: str, *, run: bool) -> Path:
    recipe = manifest["corpus"][key]
    path = ROOT / recipe["path"]
    if (path / recipe.get("marker", "corpus.json")).is_file():  # what a finished build writes last
        return path
    if not run:
        raise SystemExit(f"{path}: missing; build it with: " + " && ".join(recipe["build"]))
    if "needs" in recipe:
        _ensure_corpus(manifest, recipe["needs"], run=True)
    for command in recipe["build"]:
        if command.startswith("cp ") and path.exists():
            continue  # a resumed build: the copy was made before
        _run(command)
    return path


def _ensure_model(manifest: dict, entries: dict, name: str, *, train: bool) -> None:
    m = entries[name]
    if (ROOT / m["model_dir"] / "config.json").is_file():
        return
    if not train:
        raise SystemExit(f"{ROOT / m['model_dir']}: missing; pass --train to run: " + " && ".join(m["train"]))
    if m.get("init_from"):
        _ensure_model(manifest, entries, m["init_from"], train=True)
    _ensure_corpus(manifest, m["corpus"], run=True)
    for command in m["train"]:
        _run(" ".join(command.split()))  # re-running `midlevel train` resumes from its checkpoints


def requote_shap_benchmark(path: Path) -> None:
    """Replace the SHAP numbers of the shipped zoo's results with a new benchmark run on the same weights."""
    results, registry = read_shipped()
    pinned = {m["name"]: m["sha256"] for m in registry["models"] if m.get("shipped", True)}
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
            "runs": bench.get("runs", []), "dropped": bench.get("dropped", {}),
            "ratios": bench["cost"]["ratios"], "seconds": bench["cost"]["seconds"],
            **{k: bench["cost"][k] for k in ("additivity_tolerance", "cheapest_black_box_shap",
                                             "cheapest_any_black_box_shap", "gradient_budget")}}
    for name in zoo_names:
        if name in bench["models"]:
            keep["models"][name] = bench["models"][name]
    return keep


def real_recordings_summary(bench: dict, results: dict, path: Path) -> dict:
    """The real-recordings benchmark's rows for zoo entries, refused when measured on other weights than the
    results record (a retrained entry must be measured again); the settings and peers' own agreement kept."""
    rows = {}
    for name, row in bench["models"].items():
        entry = results["zoo"].get(name)
        if entry is None:
            continue  # a candidate measured beside the zoo (--model LABEL=DIR)
        if row["weights_sha256"] != entry["sha256"]:
            raise SystemExit(f"{path}: measured {name} on other weights ({row['weights_sha256'][:12]}); run "
                             f"benchmarks/real_recordings.py --models {name} --merge again")
        rows[name] = {k: row[k] for k in ("weights_sha256", "black_box", "gain", "codec", "reverb", "targets",
                                          "transpose", "stretch", "clash", "agreement") if k in row}
    settings = bench["settings"]
    return {"file": "benchmarks/results/real_recordings.md", "n": settings["n"], "packages": bench["packages_found"],
            "n_tracks": bench["n_tracks"], "mp3_kbps": settings["mp3_kbps"], "reverb": settings["reverb"],
            "gain_db": settings["gain_db"], "shift_semitones": settings["shift_semitones"],
            "peers_on_controlled": bench["peers_on_controlled"], "models": rows}


def family_corpus(family_dir: Path) -> str:
    config, _ = read_config(family_dir / "models" / "a2mid")
    return config.metadata["corpus"]


def trained_corpus(model: AudioModel) -> dict:
    """The summary of the corpus a model's config says it was trained on."""
    return summarise_corpus(json.loads((Path(model.config.metadata["corpus"]) / "corpus.json").read_text()), None)


def summarise_corpus(info: dict, n_test: int | None) -> dict:
    keep = {k: info["settings"][k] for k in ("seed", "seconds", "only_split", "music21")}
    if info["settings"].get("conditions", "dry") != "dry":  # dry corpora keep the summary they always had
        keep["conditions"] = info["settings"]["conditions"]
    keep.update({k: info[k] for k in ("n", "clips_per_split", "pieces_per_split")})
    if n_test is not None:
        keep["n_test"] = n_test
    return keep


if __name__ == "__main__":
    torch.set_num_threads(2)
    np.set_printoptions(precision=3)
    main()
