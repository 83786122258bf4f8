"""Model cards generated from measured results (``scripts/build_zoo.py``), never typed by hand.

A card is Markdown with YAML front matter (license, library, datasets, metrics in a
model-index style, as on the Hugging Face hub) above readable sections. Every number in it
is read from the results file the evaluation script wrote.
"""

from __future__ import annotations

from typing import Any

from ..concepts import EMOTIONS

import yaml

CITATION = """@inproceedings{chowdhury2019midlevel,
  title     = {Towards Explainable Music Emotion Recognition: The Route via Mid-level Features},
  author    = {Chowdhury, Shreyan and Vall, Andreu and Haunschmid, Verena and Widmer, Gerhard},
  booktitle = {Proceedings of the 20th International Society for Music Information Retrieval Conference (ISMIR)},
  year      = {2019}
}"""


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """(YAML front matter as a dict, the Markdown body) of a card."""
    if not text.startswith("---\n"):
        raise ValueError("a model card starts with YAML front matter between '---' lines")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def front_matter(name: str, info: dict[str, Any], heldout: dict[str, Any]) -> dict[str, Any]:
    metrics = []
    if "concepts" in heldout:
        metrics.append({"type": "pearsonr", "name": "mean concept r", "value": round(heldout["concepts"]["mean"]["r"], 4)})
        metrics += [{"type": "pearsonr", "name": f"{c} r", "value": round(v["r"], 4)}
                    for c, v in heldout["concepts"].items() if c != "mean"]
    metrics.append({"type": "pearsonr", "name": "mean target r", "value": round(heldout["targets"]["mean"]["r"], 4)})
    metrics.append({"type": "r_squared", "name": "mean target R2", "value": round(heldout["targets"]["mean"]["r2"], 4)})
    metrics += [{"type": "pearsonr", "name": f"{t} r", "value": round(v["r"], 4)}
                for t, v in heldout["targets"].items() if t != "mean"]
    return {
        "license": "mit",
        "library_name": "midlevel",
        "tags": ["audio", "music-emotion-recognition", "explainable-ai", "concept-bottleneck",
                 "baseline" if not info["explainable"] else "interpretable-by-construction"],
        "datasets": ["midlevel-controlled-corpus (synthetic renderings of music21 scores; no human ratings)"],
        "metrics": ["pearsonr", "r_squared"],
        "model-index": [{
            "name": name,
            "results": [{
                "task": {"type": "audio-regression", "name": "music emotion recognition via mid-level features"},
                "dataset": {"name": "midlevel controlled corpus", "type": "midlevel-controlled-corpus",
                            "split": "test", "args": {"seed": info["eval_seed"]}},
                "metrics": metrics,
            }],
        }],
    }


def metric_rows(table: dict[str, dict[str, float]]) -> str:
    lines = ["| name | Pearson r | R^2 |", "|---|---|---|"]
    lines += [f"| {k} | {v['r']:.3f} | {v['r2']:.3f} |" for k, v in table.items()]
    return "\n".join(lines)


def _comparison(results: dict[str, Any]) -> str:
    """The paper's A2E / A2Mid2E / A2Mid2E-Joint table on the held-out split."""
    order = [n for n in ("a2e", "a2mid2e-linear", "joint-linear", "a2mid2e-gam", "joint-gam",
                         "independent-linear", "independent-gam") if n in results["family"]]
    first = results["family"][order[0]]["heldout_test"]["targets"]
    targets = sorted((t for t in first if t != "mean"), key=lambda t: (EMOTIONS.index(t) if t in EMOTIONS else 99, t))
    lines = ["| setup | model | " + " | ".join(targets) + " | mean r |", "|---|---|" + "---|" * (len(targets) + 1)]
    for name in order:
        table = results["family"][name]["heldout_test"]["targets"]
        lines.append(f"| {results['family'][name]['setup']} | `{name}` | "
                     + " | ".join(f"{table[t]['r']:.2f}" for t in targets) + f" | {table['mean']['r']:.3f} |")
    return "\n".join(lines)


def _weights(info: dict[str, Any]) -> str:
    concepts = list(next(iter(info["weights"].values())))
    lines = ["| target | " + " | ".join(concepts) + " | intercept |", "|---|" + "---|" * (len(concepts) + 1)]
    for target, row in info["weights"].items():
        cells = ["0" if v == 0 else f"{v:+.3f}" for v in row.values()]
        lines.append(f"| {target} | " + " | ".join(cells) + f" | {info['intercepts'][target]:.2f} |")
    return "\n".join(lines)


def render_card(name: str, results: dict[str, Any]) -> str:
    """The whole card for zoo entry ``name`` from ``results`` (model_cards/results.json)."""
    info = results["zoo"][name]
    fam = results["family"][info["source"]]
    held = fam["heldout_test"]
    ev, tr = results["eval_corpus"], results["train_corpus"]
    a2e = results["family"]["a2e"]["heldout_test"]["targets"]["mean"]["r"]
    meta = front_matter(name, {"explainable": info["explainable"], "eval_seed": ev.get("seed")}, held)
    out = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "", f"# {name}", "", info["description"] + ".", ""]
    out += ["## Model details", "",
            f"- Setup: **{info['setup']}** (Chowdhury et al. 2019 naming); trained as `{info['source']}` by "
            "`midlevel train` (`src/midlevel/training/recipes.py`).",
            f"- Input: mono waveform at 22050 Hz; front-end inside the network (149-band log-frequency "
            "spectrogram, frame 2048, hop 704); 10 s windows with a 5 s hop for longer tracks.",
            f"- Parameters: {info['parameters']:,}; weights `model.safetensors` ({info['size_bytes']:,} bytes), "
            f"sha256 `{info['sha256']}` (checked on load).", ""]
    if info["explainable"]:
        out += ["- Output: 7 mid-level concepts (1-10) and 8 emotions (1-9); every emotion is exactly the intercept "
                "plus one contribution per concept (`model.explain(audio)`).", ""]
    else:
        out += ["- Output: 8 emotions (1-9) straight from the audio. **A black-box baseline, not an explainable "
                "model**: kept to measure the cost of interpretability and to be explained post hoc (SHAP).", ""]
    out += ["## Intended use", "",
            "Research and teaching on interpretable music emotion recognition: reading how perceptual concepts drive "
            "predictions, comparing intrinsic with post-hoc explanations, and as a pretrained starting point for "
            "fine-tuning on real mid-level annotations (see below).", "",
            "## Out-of-scope use", "",
            "Any decision about people or about real recordings' emotional content: the model was trained on rendered "
            "MIDI with formula-based labels and has not been validated on recorded music or against human listeners.", "",
            "## Training data", "",
            f"The midlevel **controlled corpus** (`midlevel corpus build`, seed {tr.get('seed')}, {tr.get('n')} clips of "
            f"{tr.get('seconds')} s): real compositions from music21's bundled corpus, rendered with FluidSynth and the "
            "FluidR3 General MIDI soundfont under randomly sampled performance factors (tempo, articulation, timing "
            "jitter, dynamics, instrumentation, register, mode, dissonance injection, tonal blur, percussion). "
            "**No human ratings were used**: the seven mid-level ratings are documented formulas over the score and "
            "the factors, and the eight emotions are generated from them with the 2019 paper's published weights plus "
            "loudness, tempo and register terms and noise (docs/controlled_corpus.md). Splits are by source piece.", "",
            "## Evaluation", "",
            f"Held-out test split of a corpus built with seed {ev.get('seed')} (not used in training), "
            f"{ev.get('n_test')} clips from pieces never seen in training. Numbers from `scripts/build_zoo.py`, "
            "stored in `model_cards/results.json`.", ""]
    if "concepts" in held:
        out += ["### Concepts", "", metric_rows(held["concepts"]), ""]
    out += ["### Emotions", "", metric_rows(held["targets"]), "",
            "### A2E vs A2Mid2E vs A2Mid2E-Joint (Pearson r per emotion, held-out test)", "", _comparison(results), "",
            f"Cost of interpretability (A2E mean r minus this model's): "
            f"**{a2e - held['targets']['mean']['r']:+.3f}** (the 2019 paper: 0.05 separate, 0.01 joint).", ""]
    t = fam["training"]
    out += ["### Training cost (CPU, 2 cores)", "",
            f"{t['epochs']} epochs (best {t['best_epoch']}), {t['seconds_per_epoch']:.1f} s per epoch on average "
            f"(fastest {t['seconds_fastest_epoch']:.1f} s; the machine was shared with other jobs, which slows "
            f"epochs), {t['seconds_total'] / 60:.1f} min in all"
            + (" (the concept model's training; the head is then fitted in seconds)"
               if info["source"].startswith(("a2mid2e", "independent")) else "") + ".", ""]
    if info["explainable"]:
        d = info["directions"]
        out += ["## The explanation itself", ""]
        if "weights" in info:
            out += ["Weights of the sparse linear head (emotion points per concept rating point); a zero means the "
                    "emotion does not use that concept:", "", _weights(info), ""]
        if "figure" in info:
            out += ["Shape functions of the GAM head (centred on the training data):", "",
                    f"![shape functions]({info['figure']})", ""]
        out += [f"Agreement with the corpus's generating coefficients: the direction of {d['agree']} of {d['checked']} "
                f"(concept, emotion) pairs whose true weight is at least {d['threshold']} in magnitude matches in sign"
                + ("." if not d["disagreements"] else "; mismatches: " + ", ".join(
                    f"{x['concept']}->{x['target']} (true {x['true']:+.2f})" for x in d["disagreements"]) + "."), ""]
    out += ["## Limitations", "",
            "- Rendered music is not recorded music: General MIDI timbres, no room, no mixing, no vocals. Expect a "
            "domain gap on real recordings.",
            "- The concept labels are formulas standing in for human judgements; they share the corpus's assumptions "
            "about what makes music sound minor, dissonant or melodious.",
            "- The emotion labels are synthetic by design (the corpus knows their true drivers); scores here say how "
            "well the model recovers that construction, not how people feel.",
            "- Intrinsic explanations are exact for the head; they explain the concepts' effect, not how the network "
            "arrived at the concept values (see the attribution views for that).", "",
            "## Fine-tuning on the real Mid-level dataset", "",
            "Download the Mid-level Perceptual Features dataset (osf.io/5aupt) and run:", "",
            "```bash",
            f"midlevel finetune --base {name} --annotations mid_level/metadata_annotations/annotations.csv "
            "--audio-dir mid_level/audio --out my-model",
            "```", "",
            "## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(out)
