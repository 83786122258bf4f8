"""Model cards generated from measured results (``scripts/build_zoo.py``), never typed by hand.

A card is Markdown with YAML front matter (license, library, datasets, metrics in a
model-index style, as on the Hugging Face hub) above readable sections. Every number in it
is read from the results file the evaluation script wrote.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from ..backbones import trained_network
from ..concepts import EMOTIONS, OUTSIDE_CONCEPTS
from .registry import default_name

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


BACKBONE_TEXT = {
    "compact": "a 4-layer CNN (16-128 channels) with global average pooling.",
    "compact_music": "the compact 4-layer CNN beside differentiable music descriptors computed in the network "
                     "(`midlevel.music_features`): transposition-invariant pitch-class statistics (interval "
                     "profiles, key and chord template fits, key consistency over the window), pitch motion "
                     "between frames (which keeps octaves), and onset-envelope autocorrelation; one hidden layer "
                     "mixes them.",
    "compact_transcribe": "the `compact_music` network plus a small note transcriber (`PitchSalience`: per-frame "
                          "logits of which of 84 pitches sound and which is the melody's), whose note probabilities "
                          "feed a second set of pitch-class statistics (key, mode, chords from notes rather than "
                          "partials) and a histogram of melodic intervals (`MelodicIntervals`).",
    "compact_transcribe_context": "the `compact_transcribe` network whose note transcriber also hears about a second "
                                  "either side of each frame (`TemporalContext`: five dilated convolutions over "
                                  "time, added as a residual that starts at zero, so it can be warm-started from "
                                  "a `compact_transcribe` model).",
    "compact_transcribe_pulse": "the `compact_transcribe` network plus where the beat is and whether it drifts "
                                "(`PulseFeatures`: a tempo histogram, a soft beat period and its spread over 4 s "
                                "windows, added through a linear map that starts at zero, so it can be warm-started "
                                "from a `compact_transcribe` model).",
    "compact_transcribe_measures": "the `compact_transcribe` network plus the controlled corpus's own key and "
                                   "melody formulas applied to its transcribed notes (`NoteKeyMeasures`: key "
                                   "clarity, local key clarity, key consistency, minor vs major; "
                                   "`NoteMelodyMeasures`: singability, range and rate of the melody's notes), "
                                   "added through a linear map that starts at zero, so it can be warm-started "
                                   "from a `compact_transcribe` model.",
    "compact_transcribe_equivariant": "the `compact_transcribe_measures` network plus six measurements that move by a "
                                      "known amount under a transposition or a time stretch (`EquivariantMeasures`: "
                                      "the mean pitch of the transcribed notes and melody, the magnitude- and "
                                      "power-weighted mean log frequency, the log onset rate and the log pulse "
                                      "rate), added through a linear map that starts at zero, so it can be "
                                      "warm-started from a `compact_transcribe_measures` model.",
    "compact_transcribe_register": "the `compact_transcribe_equivariant` network plus one more output column, a pitch "
                                   "height that a transposition raises by construction (`RegisterHeight`: the "
                                   "melody's mean pitch weighted by its probability squared plus a share of the "
                                   "spectrum's magnitude-weighted mean log frequency); the `register` concept reads "
                                   "only that column, with a non-negative weight fitted by least squares "
                                   "(`midlevel.training.structural`), so it rises wherever the height does.",
    "vgg": "the 2019 paper's VGG-style CNN (about 3.9 M parameters).",
}


def metric_rows(table: dict[str, dict[str, float]]) -> str:
    lines = ["| name | Pearson r | R^2 |", "|---|---|---|"]
    lines += [f"| {k} | {v['r']:.3f} | {v['r2']:.3f} |" for k, v in table.items()]
    return "\n".join(lines)


def _warm_start(training: dict) -> str:
    """The training runs a warm-started model's weights went through, oldest last, and their total time."""
    parts, total, stage = [], training["seconds_total"], training
    while "warm_start" in stage:
        stage = stage["warm_start"]
        total += stage["seconds_total"]
        parts.append(f"{stage['epochs']} epochs (best {stage['best_epoch']}, {stage['seconds_per_epoch']:.1f} s per "
                     f"epoch, {stage['seconds_total'] / 60:.1f} min) on {stage['corpus']['n']} clips of the seed-"
                     f"{stage['corpus']['seed']} corpus")
    return (f"These epochs continued a trained model (`midlevel train --init-from`) rather than a random start; before "
            f"them the weights went through {'; before that, '.join(parts)}. Every run together: "
            f"{total / 60:.1f} min.")


def _comparison(results: dict[str, Any]) -> str:
    """The paper's A2E / A2Mid2E / A2Mid2E-Joint table on the held-out split."""
    usual = ("a2e", "a2mid2e-linear", "joint-linear", "a2mid2e-gam", "joint-gam", "independent-linear",
             "independent-gam")
    # models added later (build_zoo.py --add) come last, in the order they were added
    order = [n for n in usual if n in results["family"]] + [n for n in results["family"]
                                                             if n not in usual and n != "a2mid"]
    first = results["family"][order[0]]["heldout_test"]["targets"]
    targets = sorted((t for t in first if t != "mean"), key=lambda t: (EMOTIONS.index(t) if t in EMOTIONS else 99, t))
    lines = ["| setup | model | " + " | ".join(targets) + " | mean r |", "|---|---|" + "---|" * (len(targets) + 1)]
    # rows of entries trained on another corpus than the zoo's say so: their gains are not the model's alone
    corpus = {e["source"]: e["train_corpus"] for e in results["zoo"].values() if "train_corpus" in e}
    for name in order:
        table = results["family"][name]["heldout_test"]["targets"]
        setup = results["family"][name]["setup"]
        if name in corpus:
            setup += f", trained on {corpus[name].get('n')} clips"
        lines.append(f"| {setup} | `{name}` | "
                     + " | ".join(f"{table[t]['r']:.2f}" for t in targets) + f" | {table['mean']['r']:.3f} |")
    if corpus:
        tr = results["train_corpus"]
        lines += ["", f"Rows without a clip count were trained on the zoo's corpus (seed {tr.get('seed')}, {tr.get('n')} "
                      "clips); the others' cards say on which."]
    return "\n".join(lines)


def _weights(info: dict[str, Any]) -> str:
    concepts = list(next(iter(info["weights"].values())))
    lines = ["| target | " + " | ".join(concepts) + " | intercept |", "|---|" + "---|" * (len(concepts) + 1)]
    for target, row in info["weights"].items():
        cells = ["0" if v == 0 else f"{v:+.3f}" for v in row.values()]
        lines.append(f"| {target} | " + " | ".join(cells) + f" | {info['intercepts'][target]:.2f} |")
    return "\n".join(lines)


def _measured_in(name: str, bench: dict[str, Any]) -> str:
    """The machine (and date, where recorded) of the benchmark run that measured ``name``: a merged
    file (``intrinsic_vs_shap.py --merge``) holds several runs."""
    run = next((r for r in bench.get("runs", []) if name in r["models"]), None)
    if run is None:
        return bench["machine"]
    return (run["machine"] + (f", run finished {run['finished']}" if run.get("finished") else "")
            + (f", SHAP background: the train split of `{run['background_corpus']}`" if run.get("background_corpus") else ""))


def stretchers_drawn_said(stretchers: str, names: dict[str, str]) -> str:
    """A continuation's ``--stretchers`` (comma-separated; a tool named twice was drawn twice as often) in words:
    each tool's name from ``names``, with its share ("2 in 3") where the shares differ."""
    drawn = stretchers.split(",")
    return " or ".join(names[t] + (f" ({drawn.count(t)} in {len(drawn)})" if len(set(drawn)) < len(drawn) else "")
                       for t in dict.fromkeys(drawn))


def _average_said(w: dict) -> str:
    """'every weight 0.5', or per module: 'the weights of `backbone.salience` 1 and every other weight 0'."""
    if not w.get("by_module"):
        return f"every weight {w['alpha']:g}"
    parts = [f"the weights of `{k}` {v:g}" for k, v in w["by_module"].items()]
    return ", ".join(parts) + f" and every other weight {w['alpha']:g}"


def _versions_said(c: dict[str, Any]) -> str:
    """How a continuation's recorded versions were made, in words (absent settings: Rubber Band stretches only)."""
    said = "; versions by " + stretchers_drawn_said(c.get("stretchers", "rubberband"),
                                                    {"rubberband": "Rubber Band", "vocoder": "a plain phase vocoder"})
    if c.get("shift_versions"):
        said += f", {c['shift_versions']} per excerpt transposed, whose register moves by the definition too"
    if c.get("round_trip_versions"):
        said += f", {c['round_trip_versions']} per excerpt transposed and back (a pitch-shift round trip), held as recorded"
        if c.get("round_trip_weight"):
            said += f" (their mode-related concepts {1 + c['round_trip_weight']:g} times as hard)"
    if c.get("codec_share"):
        said += f", {c['codec_share']:.0%} of them through an MP3 round trip"
    return said


def _shap_section(name: str, info: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """Intrinsic vs post-hoc SHAP numbers for this entry, from the benchmark's JSON (if it was run)."""
    bench = results.get("shap_benchmark")
    if not bench:
        return []
    n, st = bench["n_test"], bench["settings"]
    out = ["## Intrinsic vs post-hoc (SHAP) explanations", "",
           f"From `benchmarks/intrinsic_vs_shap.py` on {n} held-out test clips"
           + (f", {st['n_stability']} of them re-explained after each perturbation" if "n_stability" in st else "")
           + f" ({_measured_in(name, bench)}); the full tables "
           f"are in `{bench['file']}`. Input-space SHAP works over {st['segments']} time x frequency segments with the "
           "clip's mean spectrum as baseline; concept-level SHAP explains an MLP head on the same predicted concepts.",
           ""]
    measured = set(bench["models"]) | set(bench["black_boxes"])
    if name in bench.get("dropped", {}):
        out += [f"This superseded model's row left the benchmark when its black-box counterpart "
                f"`{bench['dropped'][name]['counterpart']}` was timed again beside a newer model (its cost ratios were "
                f"timed against the earlier run's); its numbers are in the git history of `{bench['file']}`.", ""]
    elif name not in measured:
        # installed entries only: the benchmark loads models by name
        unmeasured = [n for n, e in results["zoo"].items() if n not in measured and e.get("shipped", True)] or [name]
        out += [f"This model was added to the zoo after that run and is not in it yet; `python "
                f"benchmarks/intrinsic_vs_shap.py --corpus {st['corpus']} --background-corpus {st['background_corpus']} "
                f"--models {','.join(unmeasured)} --n {n} --threads {st['threads']} --merge` measures the entries "
                "the run lacks on the same clips with the same settings and keeps the others' results.", ""]
    elif name in bench["models"]:
        m = bench["models"][name]
        bb = bench["black_boxes"][m["counterpart"]]
        out += ["| measure | intrinsic (this model) | MLP head + permutation SHAP | black box `" + m["counterpart"] + "` |",
                "|---|---|---|---|",
                f"| accuracy: mean r over emotions | {m['accuracy']['intrinsic']['mean']:.3f} | "
                f"{m['accuracy']['mlp_head']['mean']:.3f} | {bb['accuracy']['mean']:.3f} |",
                f"| truth: mean Spearman r with the generating weights | {m['truth']['intrinsic']['mean']:.2f} | "
                f"{m['truth']['mlp_shap']['mean']:.2f} | none (segments, not concepts) |",
                f"| faithfulness: deletion gain over random order | {m['faithfulness']['intrinsic']['gain']:+.3f} | "
                f"{m['faithfulness']['mlp_shap']['gain']:+.3f} | "
                + ", ".join(f"{k} {v['gain']:+.3f}" for k, v in bb["faithfulness"].items()) + " |",
                "| stability: cosine after 30 dB noise / 3 dB gain / 50 ms shift | "
                + " / ".join(f"{v:.3f}" for v in m["stability"]["intrinsic"].values()) + " | "
                + " / ".join(f"{v:.3f}" for v in m["stability"]["mlp_shap"].values()) + " | "
                + "; ".join(f"{k} " + " / ".join(f"{x:.3f}" for x in v.values()) for k, v in bb["stability"].items())
                + " |", ""]
        ratios = bench["ratios"][name]
        cheapest = bench["cheapest_black_box_shap"][name]
        out += ["Cost, measured in one run: one intrinsic explanation takes "
                f"{bench['seconds'][name]['intrinsic']['wall'] * 1000:.1f} ms; relative to it, "
                + ", ".join(f"{k.replace('_', ' ')} {v['wall']:.0f}x" for k, v in ratios.items())
                + f". The cheapest SHAP of the black box whose values add up to its output ({cheapest['method']}; "
                f"additivity error <= {bench.get('additivity_tolerance', 0.01):g}, shap's own tolerance) is "
                f"**{cheapest['wall']:.0f}x** slower at this budget ({st['max_evals']} masked inputs per "
                "permutation/partition explanation"
                + (f", {st['gradient_samples']} expected-gradient samples" if "gradient_samples" in st else "")
                + "; the ratios grow with the budget)."]
        anyway = bench.get("cheapest_any_black_box_shap", {}).get(name)
        if anyway and anyway["method"] != cheapest["method"]:
            sweep = bench["gradient_budget"].get(m["counterpart"], {}).get("samples", {})
            out[-1] += (f" {anyway['method'].capitalize()} SHAP is cheaper ({anyway['wall']:.0f}x) but additive only in "
                        f"expectation: its values miss the output by up to {anyway['additivity_error']:.2f}"
                        + ("; measured on the timing clips: " + ", ".join(
                            f"{k} samples {v['x_intrinsic']:.0f}x (error up to {v['additivity_error_max']:.2f})"
                            for k, v in sweep.items()) if sweep else "") + ".")
        out.append("")
    elif not info["explainable"]:
        mine = bench["black_boxes"].get(name)  # the benchmark names the black box by its zoo name
        if mine:
            out += ["| SHAP variant | deletion gain | stability (noise / gain / shift) | additivity error |",
                    "|---|---|---|---|"]
            out += [f"| {k} | {mine['faithfulness'][k]['gain']:+.3f} | "
                    + " / ".join(f"{x:.3f}" for x in mine["stability"][k].values())
                    + f" | {mine['additivity_error'][k]:.1e} |" for k in mine["faithfulness"]]
            out += ["", f"Accuracy of this black box on those clips: mean r {mine['accuracy']['mean']:.3f}.", ""]
    return out


def _corpus_difference(mine: dict[str, Any], zoo: dict[str, Any]) -> str:
    """'seed 1, 6000 clips against seed 1, 3000; ...': how an entry's training corpus differs from the zoo's."""
    def conditions(corpus: dict[str, Any]) -> str:
        return f", {corpus.get('conditions', 'dry')} conditions" if mine.get("conditions") != zoo.get("conditions") else ""

    text = (f"seed {mine.get('seed')}, {mine.get('n')} clips{conditions(mine)} against seed {zoo.get('seed')}, "
            f"{zoo.get('n')}{conditions(zoo)}")
    if mine.get("seed") == zoo.get("seed") and mine.get("n", 0) > zoo.get("n", 0):
        text += "; the same seed, so its clips include all of theirs"  # clip i depends on the seed and i only
    return text


def _train_corpus(entry: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """The corpus a zoo entry was trained on: its own (``build_zoo.py --add`` records it) or the zoo's."""
    return entry.get("train_corpus", results["train_corpus"])


def _recipe(entry: dict[str, Any], results: dict[str, Any]) -> tuple:
    """What a zoo entry was trained with, bottleneck aside: backbone, training corpus, note-roll loss weight."""
    return trained_network(entry.get("backbone", "compact_music")), _train_corpus(entry, results), entry.get("roll_weight", 0.0)


def _black_boxes_sharing(name: str, results: dict[str, Any], part) -> list[dict[str, Any]]:
    """The zoo's A2E entries whose ``part(_recipe(...))`` equals entry ``name``'s, in registry order."""
    mine = part(_recipe(results["zoo"][name], results))
    return [e for e in results["zoo"].values() if not e["explainable"] and part(_recipe(e, results)) == mine]


def matched_black_box(name: str, results: dict[str, Any]) -> str | None:
    """The family row of the zoo's A2E trained as entry ``name`` was (same backbone, corpus and note-roll loss),
    so that its cost of interpretability measures the bottleneck and nothing else; None if the zoo has none."""
    boxes = _black_boxes_sharing(name, results, lambda recipe: recipe)
    return boxes[0]["source"] if boxes else None


def same_backbone_black_box(name: str, results: dict[str, Any]) -> str | None:
    """The family row of the zoo's A2E with entry ``name``'s backbone and note-roll loss but another training
    corpus (the next best comparison where ``matched_black_box`` finds none), the one trained on the number of
    clips nearest to this entry's (by ratio, so 24000 is nearer 48000 than 12000 is); None if the zoo has none."""
    clips = _train_corpus(results["zoo"][name], results)["n"]
    boxes = _black_boxes_sharing(name, results, lambda recipe: (recipe[0], recipe[2]))
    if not boxes:
        return None
    return min(boxes, key=lambda e: abs(math.log(_train_corpus(e, results)["n"] / clips)))["source"]


def _entry_of(source: str, results: dict[str, Any]) -> str:
    """The zoo name of the entry that reports family row ``source``."""
    return next(n for n, e in results["zoo"].items() if e["source"] == source)


def _explainable_twins(name: str, results: dict[str, Any]) -> list[str]:
    """The explainable zoo entries whose matched black box is entry ``name``."""
    source = results["zoo"][name]["source"]
    return [n for n, e in results["zoo"].items() if e["explainable"] and matched_black_box(n, results) == source]


def _finetune_section(name: str, info: dict[str, Any], results: dict[str, Any], outside: list[str]) -> list[str]:
    """How to adapt the entry to the real Mid-level dataset. ``midlevel finetune`` refuses a black box (it
    re-fits a concept layer the black box does not have), so a black box's card points to its explainable
    twin and to training the black box anew on real emotion ratings instead of a command that would fail."""
    command = ("midlevel finetune --base {} --annotations mid_level/metadata_annotations/annotations.csv "
               "--audio-dir mid_level/audio --out my-model")
    out = ["## Fine-tuning on the real Mid-level dataset", ""]
    if not info["explainable"]:
        # a twin the user has installed: the one trained as this black box was, else the manifest's choice
        twins = [n for n in _explainable_twins(name, results) if results["zoo"][n].get("shipped", True)]
        twins = twins or ([info["twin"]] if info.get("twin") else [])
        out += ["`midlevel finetune` adapts a two-stage model's concept layer to new mid-level ratings, so it refuses "
                "this black box, which has none. "
                + (f"Fine-tune its explainable twin `{twins[0]}` instead: download the "
                   "Mid-level Perceptual Features dataset (osf.io/5aupt) and run:" if twins else
                   "Fine-tune an explainable entry instead (`midlevel models` lists them)."), ""]
        if twins:
            out += ["```bash", command.format(twins[0]), "```", ""]
        return out + [f"To compare it with a black box on real emotion ratings, train one anew: `midlevel train --corpus "
                      f"DIR --backbone {_recipe(info, results)[0]} --heads \"\" --joint-heads \"\" --out my-a2e`, "
                      "where DIR is a Mid-level-layout folder whose `mean_ratings_set1.csv` rates every clip's "
                      "emotions (the Soundtracks subset; `docs/datasets.md`).", ""]
    return out + [("The real dataset rates the seven mid-level concepts only: fine-tuned on it, this model gets a "
                   "seven-concept layer (started as a ridge probe on its backbone). To keep all "
                   f"{len(info.get('concepts', []))}, add columns for {', '.join(outside)} (1-10) to the annotations "
                   "CSV. " if outside else "")
                  + "Download the Mid-level Perceptual Features dataset (osf.io/5aupt) and run:", "",
                  "```bash", command.format(name), "```", ""]


def _cost_line(name: str, results: dict[str, Any]) -> str:
    """The cost of interpretability against the matched A2E, or with a warning against the A2E of the same
    backbone trained on another corpus, or else the family's `a2e`."""
    info = results["zoo"][name]
    own = results["family"][info["source"]]["heldout_test"]
    if not info["explainable"]:
        users = _explainable_twins(name, results)
        return ("This black box is the A2E that the explainable entries trained as it was (same backbone, corpus "
                "and note-roll loss) measure their cost of interpretability against: "
                + (", ".join(f"`{n}`" for n in users) if users else "none in the zoo today") + ".")
    matched = matched_black_box(name, results)
    near = None if matched else same_backbone_black_box(name, results)
    box = matched or near or "a2e"
    cost = results["family"][box]["heldout_test"]["targets"]["mean"]["r"] - own["targets"]["mean"]["r"]
    text = (f"Cost of interpretability (mean r of `{box}` minus this model's): **{cost:+.3f}** "
            "(the 2019 paper: 0.05 separate, 0.01 joint).")
    if matched:
        return text + (f" `{box}` (zoo entry `{_entry_of(box, results)}`) is the A2E trained as this model was (backbone "
                       f"`{_recipe(info, results)[0]}`, same corpus"
                       + (", same note-roll loss" if info.get("roll_weight") else "") + ").")
    if near:
        entry = _entry_of(box, results)
        clips = [_train_corpus(e, results)["n"] for e in (results["zoo"][entry], info)]
        return text + (f" **Not like for like**: `{box}` (zoo entry `{entry}`) has this model's backbone "
                       f"(`{_recipe(info, results)[0]}`) but was trained on {clips[0]} clips, this model on "
                       f"{clips[1]}, so this number mixes the cost of the bottleneck with the effect of the data.")
    return text + (" **Not like for like**: the zoo has no A2E trained with this model's backbone, corpus and "
                   "note-roll loss, and `a2e` differs in at least one of them, so this number mixes the cost of the "
                   "bottleneck with the effect of the rest.")


def _seven_concept_mean(concepts: dict[str, dict[str, float]], outside: list[str]) -> str:
    """The mean over the seven mid-level concepts alone, beside the table's mean over all of the model's
    concepts: the outside ones (loudness above all) are easier to hear, so they lift the overall mean."""
    seven = [v for k, v in concepts.items() if k != "mean" and k not in outside]
    r, r2 = (sum(v[key] for v in seven) / len(seven) for key in ("r", "r2"))
    return (f"Mean over the {len(seven)} mid-level concepts alone (without {', '.join(outside)}): "
            f"r **{r:.3f}**, R^2 {r2:.3f}; the mean row above covers all {len(concepts) - 1}.")


def _real_recordings_section(name: str, results: dict[str, Any]) -> list[str]:
    """How the entry behaves on recorded music (benchmarks/real_recordings.py), beside the other installed
    entries, so the card answers the question the controlled numbers cannot."""
    bench = results.get("real_recordings")
    if not bench:
        return []
    out = ["## On recorded music", "",
           f"From `benchmarks/real_recordings.py` on {bench['n']} excerpts of 10 s from {bench['n_tracks']} recorded "
           f"tracks (Debian packages {', '.join(bench['packages'])}); the full tables are in `{bench['file']}`. "
           "Invariance rows are the mean change of the concepts in standard deviations of each concept over the "
           "excerpts (0 is ideal): the recording changed, the music did not."]
    row = bench["models"].get(name)
    if row is None and not results["zoo"][name].get("shipped", True):
        return out + ["", "This entry was superseded before the benchmark existed and is not measured; the "
                      "installed entries are.", ""]
    if row is None:
        return out + ["", "This entry has not been measured yet: `python benchmarks/real_recordings.py --models "
                      f"{name} --merge` adds it.", ""]
    if row.get("black_box"):
        t = row["targets"]
        return out + ["", f"A black box has no concepts; its emotions move by {t['gain']['mean']:.2f} sd with a "
                      f"{bench['gain_db']:+.0f} dB gain, {t['codec']['mean']:.2f} with a {bench['mp3_kbps']:.0f} kb/s MP3 "
                      f"round trip and {t['reverb']['mean']:.2f} with a mild reverb.", ""]
    tr, st, cl = row["transpose"], row.get("stretch") or {}, row["clash"]
    lines = ["", "| measure | this model | ideal |", "|---|---|---|",
             f"| concepts moved by a {bench['gain_db']:+.0f} dB gain (sd) | {row['gain']['mean']:.2f} | 0 |",
             f"| ... by a {bench['mp3_kbps']:.0f} kb/s mono MP3 round trip (sd) | {row['codec']['mean']:.2f} | 0 |",
             f"| ... by a mild reverb (sd) | {row['reverb']['mean']:.2f} | 0 |",
             f"| mode concepts moved by +{bench['shift_semitones']} semitones minus the shift-and-back control (sd) | "
             f"{tr['shift']['mean'] - tr['round_trip']['mean']:+.2f} | <= 0 |"]
    if tr.get("register_up") is not None:
        lines.append(f"| register rises after +{bench['shift_semitones']} semitones | {tr['register_up']:.0%} | 100% |")
    if st.get("tempo_spearman") is not None:
        lines.append(f"| tempo concept vs time-stretch factor (Spearman per excerpt) | {st['tempo_spearman']:.2f} | 1 |")
    lines.append(f"| a semitone clash raises dissonance more than an octave | {cl['dissonance_up']:.0%} | 100% |")
    peers = bench["peers_on_controlled"]["per_concept"]
    agree = [f"{c} {v['r_real']:+.2f} ({v['peer']}; that peer follows the true rating at "
             f"{peers[c]['r']:+.2f} on the controlled corpus)" for c, v in row["agreement"].items()]
    return out + lines + ["", "Agreement (Spearman) with independent measurements on the same excerpts: "
                          + "; ".join(agree) + ".", ""]


def _status_section(name: str, info: dict[str, Any]) -> list[str]:
    """What the entry is for, its status, and where it is (the manifest's words; see scripts/zoo_manifest.toml)."""
    if "status" not in info:
        return []
    status = {"current": "current", "baseline": "baseline (a black box kept for comparisons)",
              "superseded": f"superseded by `{info.get('superseded_by')}`"}[info["status"]]
    where = ("installed with the package: `midlevel.load(\"" + name + "\")`" if info.get("shipped") else
             "**not installed** with the package (its weights left the wheel); rebuild it with "
             f"`python scripts/build_zoo.py --entry {name} --train`")
    out = ["## Status and when to pick it", "", f"- Status: **{status}**; {where}."]
    if info.get("aliases"):
        out.append("- Former name" + ("s" if len(info["aliases"]) > 1 else "") + ": "
                   + ", ".join(f"`{a}`" for a in info["aliases"]) + " (still loads, with a deprecation warning).")
    out += [f"- {info['purpose']}", ""]
    return out


def zoo_table_markdown(entries: dict[str, Any]) -> str:
    """The README's zoo table: installed entries, best first, the default marked (``entries``: name ->
    ``ModelEntry``; the default is chosen from their recorded scores, not here)."""
    default = default_name(entries)
    shown = sorted((e for e in entries.values() if e.shipped),
                   key=lambda e: (e.name != default, e.status != "current", -e.metrics.get("emotion_r_randomised", 0),
                                  e.name))
    lines = ["| model | status | concepts | concept r | emotion r | concept r / emotion r, randomised | weights | card |",
             "|---|---|---|---|---|---|---|---|"]
    for e in shown:
        concept_r = (f"{e.metrics['concept_r']:.3f}" + (f" ({e.metrics['concept_r_mid7']:.3f} over 7)"
                                                        if len(e.concept_names) > 7 else "")
                     if "concept_r" in e.metrics else "-")
        randomised = " / ".join(f"{e.metrics[k]:.3f}" if k in e.metrics else "-"
                                for k in ("concept_r_randomised", "emotion_r_randomised"))
        lines.append(f"| `{e.name}`{' (default)' if e.name == default else ''} | {e.status} | "
                     f"{len(e.concept_names) or '-'} | {concept_r} | {e.metrics['emotion_r']:.3f} | {randomised} | "
                     f"{e.size_bytes / 1e6:.1f} MB | [card](model_cards/{e.card}) |")
    superseded = sum(not e.shipped for e in entries.values())
    lines += ["", f"Held-out controlled corpus (seed 2, {next(iter(entries.values())).metrics.get('n_eval', 300)} "
                  "clips of unseen pieces), rendered dry, and the same clips under randomised recording conditions "
                  "(soundfont, room, EQ, compression, level, noise, codec), which the default is chosen by; "
                  f"{superseded} superseded entries are listed by `midlevel models --all`."]
    return "\n".join(lines)


def _randomised_lines(name: str, results: dict[str, Any]) -> list[str]:
    """The entry's held-out scores under randomised recording conditions (``build_zoo.py --randomised``)."""
    row = results.get("heldout_randomised", {}).get(name)
    if row is None:
        return []
    concept = f"mean concept r **{row['concept_r']:.3f}**, " if "concept_r" in row else ""
    return ["### Under randomised recording conditions", "",
            f"The same {row['n']} held-out clips rendered with other soundfonts, rooms, EQ, compression, level, noise "
            f"and codecs (`{row['corpus']}`, `studies/heldout_randomised.py`): {concept}mean emotion r "
            f"**{row['emotion_r']:.3f}**. The music task's default is chosen by this emotion r.", ""]


def render_card(name: str, results: dict[str, Any]) -> str:
    """The whole card for zoo entry ``name`` from ``results`` (model_cards/results.json)."""
    info = results["zoo"][name]
    fam = results["family"][info["source"]]
    held = fam["heldout_test"]
    ev, tr = results["eval_corpus"], _train_corpus(info, results)
    concepts = info.get("concepts", [])
    outside = [c for c in concepts if c in OUTSIDE_CONCEPTS]  # extra concepts beyond the seven
    meta = front_matter(name, {"explainable": info["explainable"], "eval_seed": ev.get("seed")}, held)
    out = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "", f"# {name}", "", info["description"] + ".", ""]
    out += _status_section(name, info)
    out += ["## Model details", "",
            f"- Setup: **{info['setup']}** (Chowdhury et al. 2019 naming); trained as `{info.get('trained_as', info['source'])}` by "
            "`midlevel train` (`src/midlevel/training/recipes.py`).",
            "- Input: mono waveform at 22050 Hz; front-end inside the network (149-band log-frequency "
            "spectrogram, frame 2048, hop 704); 10 s windows with a 5 s hop for longer tracks.",
            f"- Backbone `{info.get('backbone', 'compact')}`: {BACKBONE_TEXT.get(info.get('backbone', 'compact'), '')}",
            f"- Parameters: {info['parameters']:,}; weights `model.safetensors` ({info['size_bytes']:,} bytes), "
            f"sha256 `{info['sha256']}` (checked on load).", ""]
    if info["explainable"]:
        out += [f"- Output: {len(concepts) or 7} {'concepts' if outside else 'mid-level concepts'} (1-10) and 8 emotions (1-9); every emotion is exactly the "
                "intercept plus one contribution per concept (`model.explain(audio)`)."
                + (f" Beside the seven mid-level concepts it names {', '.join(outside)} as concepts "
                   "(`midlevel train --outside-concepts`): the corpus's emotions depend on them too, and a bottleneck "
                   "without them cannot carry that part (see the ceilings in "
                   "`benchmarks/results/cost_of_interpretability.md`)." if outside else ""), ""]
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
            "loudness, tempo and register terms and noise (docs/controlled_corpus.md). Splits are by source piece."
            + (" The loudness, tempo and register ratings this model also learns are fixed affine maps of the sampled "
               "note velocity, log tempo and transposition onto 1-10 (`outside_ratings`, from the corpus's "
               "`factors.csv`)." if outside else "")
            + (f" Its transcriber was also trained to reproduce the clips' note rolls (which pitches sound in each "
               f"frame, and the top voice's note; `midlevel train --roll-weight {info['roll_weight']:g}`, "
               "`datasets.controlled.rolls`), an auxiliary target the rendered corpus knows exactly; the model still "
               "hears audio only, and fine-tuning on data without rolls uses the concept loss alone."
               if info.get("roll_weight") else "")
            + (" **Its last training corpus had randomised recording conditions** (`--conditions randomised`: "
               "four General MIDI soundfonts, a mild room, EQ tilt, compression, the file's level drawn over 36 dB, "
               "background noise and MP3/Vorbis codecs drawn per clip, with the dry build's clips and labels; "
               "docs/recording_conditions.md)." if tr.get("conditions", "dry") != "dry" else "")
            + (f" **It was trained on another corpus than the zoo's other entries** ({_corpus_difference(tr, results['train_corpus'])}): "
               "comparisons with them mix the effect of the model with that of the data." if "train_corpus" in info else ""), "",
            "## Evaluation", "",
            f"Held-out test split of a corpus built with seed {ev.get('seed')} (not used in training), "
            f"{ev.get('n_test')} clips from pieces never seen in training. Numbers from `scripts/build_zoo.py`, "
            "stored in `model_cards/results.json`.", ""]
    if "concepts" in held:
        out += ["### Concepts", "", metric_rows(held["concepts"]), ""]
        if outside:
            out += [_seven_concept_mean(held["concepts"], outside), ""]
    if "transcription" in fam:
        out += ["### Note transcription (the backbone's auxiliary output)", "",
                "Frame-level scores of its note probabilities above 0.5 against the held-out clips' note rolls "
                "(scikit-learn `precision_recall_fscore_support`): how well the layer that feeds the tonal and "
                "melodic descriptors hears the notes.", "",
                "| roll | precision | recall | F1 |", "|---|---|---|---|"]
        out += [f"| {channel} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} |"
                for channel, v in fam["transcription"].items()]
        out += [""]
    out += ["### Emotions", "", metric_rows(held["targets"]), ""]
    out += _randomised_lines(name, results)
    out += ["### A2E vs A2Mid2E vs A2Mid2E-Joint (Pearson r per emotion, held-out test)", "", _comparison(results), "",
            _cost_line(name, results), ""]
    t = fam["training"]
    out += ["### Training cost (CPU, 2 cores)", ""]
    if "fit" in t:
        f = t["fit"]
        out += [f"No gradient epochs of its own: the model it continued got a `RegisterHeight` column (spectral share "
                f"{f['spectral_share']:g}), its register row became `{f['register_bias']:.3f} + {f['register_weight']:.3f} "
                f"x height` (least squares with a non-negative weight) and its head was refitted, in closed form on the "
                f"training clips, in {t['seconds_total'] / 60:.1f} min (`scripts/fit_structural_register.py`).", ""]
    elif "continued" in t:
        c = t["continued"]
        w = t.get("weight_average")
        out += [(f"**Its weights are an average**: {_average_said(w)} of the way from `{w['base']}` to a "
                 f"continuation of it (`studies/weight_interpolation.py`; WiSE-FT, Wortsman et al. 2022), which keeps "
                 "part of what the continuation gained on recorded music at part of what it cost on the held-out "
                 "corpus. The continuation had " if w else "") +
                f"{'n' if w else 'N'}o epochs of its own: {c['steps']} steps (batch {c['batch']}, lr {c['lr']:g}) of the study that made it "
                f"(`{c['script']}`), in {t['seconds_total'] / 60:.1f} min: its supervised joint loss on the corpus's "
                f"clips, a tempo that a time stretch of {c['recorded_excerpts']} unlabelled recorded excerpts moves by "
                f"the corpus's definition (weight {c['weight']:g}{_versions_said(c)}), "
                + (f"those excerpts' concepts kept where `{c['reading_of']['model']}` put them and the corpus clips' "
                   f"(weight {c['corpus_anchor']:g}) where the model it continued put them" if c.get("reading_of") else
                   f"those excerpts' concepts and the corpus clips' (weight {c['corpus_anchor']:g}) kept where the model "
                   "it continued put them")
                + (f"; every other concept of every version kept at the recording's (weight {c['invariance']:g})"
                   if c.get("invariance") else "")
                + (f"; the excerpts mixed with a copy a semitone up, and an octave up, kept at its readings (weight "
                   f"{c['overlay_anchor']:g})" if c.get("overlay_anchor") else "")
                + (f"; the semitone-clash mix asked to read at least {c.get('clash_margin_sd', 1.0):g} sd more dissonant "
                   f"than the octave mix (weight {c['clash_margin']:g})" if c.get("clash_margin") else "")
                + (f"; its note transcriber's notes on the round trips kept where the model it continued heard the "
                   f"recording, and on the recordings and the corpus clips where it heard them (weight "
                   f"{c['note_weight']:g})" if c.get("note_weight") else "")
                + (f"; a copy of each recording with its spectrogram's bands moved by 1 to {c.get('max_shift', 4)} semitones (no vocoder), its "
                   f"concepts kept but register, which rises by the definition (weight {c['band_shift']:g})"
                   + (", and its notes those of the recording moved as far" if c.get("note_weight") else "")
                   if c.get("band_shift") else "") + ".", ""]
    else:
        out += [f"{t['epochs']} epochs (best {t['best_epoch']}), {t['seconds_per_epoch']:.1f} s per epoch on average "
                f"(fastest {t['seconds_fastest_epoch']:.1f} s), {t['seconds_total'] / 60:.1f} min in all"
                + (" (the concept model's training; the head is then fitted in seconds)"
                   if info["source"].startswith(("a2mid2e", "independent")) else "") + ".", ""]
    if t.get("trainable"):
        out += ["Only the parameters under " + ", ".join(f"`{m}`" for m in t["trainable"]) + " were trained in these "
                "epochs (`midlevel train --trainable`); the rest of the network was frozen in eval mode, so it computes "
                "what the model it continued computed.", ""]
    if "warm_start" in t:
        out += [_warm_start(t), ""]
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
    out += _shap_section(name, info, results)
    out += _real_recordings_section(name, results)
    out += ["## Limitations", "",
            "- Rendered music is not recorded music: General MIDI timbres, no room, no mixing, no vocals. Expect a "
            "domain gap on real recordings.",
            "- The concept labels are formulas standing in for human judgements; they share the corpus's assumptions "
            "about what makes music sound minor, dissonant or melodious.",
            "- The emotion labels are synthetic by design (the corpus knows their true drivers); scores here say how "
            "well the model recovers that construction, not how people feel.",
            ("- Intrinsic explanations are exact for the head; they explain the concepts' effect, not how the network "
             "arrived at the concept values (see the attribution views for that)." if info["explainable"] else
             "- A black box: any explanation of it is post-hoc (SHAP), an estimate whose faithfulness and cost are "
             "measured against the intrinsic explanations in `benchmarks/results/intrinsic_vs_shap.md`."), ""]
    out += _finetune_section(name, info, results, outside)
    out += ["## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(out)


def render_recipe_card(name: str, recipe: dict[str, Any], results: dict[str, Any]) -> str:
    """A card for a recipe the zoo does not ship weights for, with its measured training cost."""
    tr = results["train_corpus"]
    meta = {"license": "mit", "library_name": "midlevel",
            "tags": ["audio", "music-emotion-recognition", "explainable-ai", "concept-bottleneck", "recipe-only"],
            "datasets": ["midlevel-controlled-corpus (synthetic renderings of music21 scores; no human ratings)"]}
    est_epoch = recipe["seconds_per_batch"] * recipe["batches_per_epoch"]
    out = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "", f"# {name} (recipe only: no weights shipped)",
           "", recipe["description"] + ".", "",
           "## Model details", "",
           f"- Backbone `{recipe['backbone']}`: {BACKBONE_TEXT.get(recipe['backbone'], '')} "
           f"{recipe['parameters']:,} parameters with the concept layer and head.",
           "- Head: sparse linear (elastic net), trained jointly with the concepts (A2Mid2E-Joint), as the 2019 paper's "
           "main explainable model.", "",
           "## Why there are no weights", "",
           f"Measured by `scripts/build_zoo.py` on this project's CPU machine (2 cores, {recipe['threads']} threads): one "
           f"training step on a batch of {recipe['batch_size']} ten-second clips takes {recipe['seconds_per_batch']:.2f} s, "
           f"so one epoch over the {recipe['train_clips']} training clips of the controlled corpus ({recipe['batches_per_epoch']} "
           f"batches) takes about {est_epoch / 60:.0f} min, against {recipe['compact_seconds_per_epoch']:.0f} s for the shipped "
           f"compact backbone. The paper's recipe runs for tens of epochs per setup, and the zoo needs three setups "
           f"(concept model, joint model, A2E baseline): about {3 * 30 * est_epoch / 3600:.0f} hours at 30 epochs each, "
           "beyond this project's CPU sessions. The recipe is shipped and tested (the backbone is built, trained for "
           "steps in `tests/test_model.py` and `tests/test_training.py`); run it where a GPU is available:", "",
           "```bash",
           "midlevel train --corpus corpora/train --out runs/vgg --backbone vgg --joint-heads linear --epochs 30 "
           "--patience 6 --lr-schedule cosine",
           "python scripts/build_zoo.py --family runs/vgg --eval-corpus corpora/heldout",
           "```", "",
           "## Training data", "",
           f"As for the shipped models: the controlled corpus (seed {tr.get('seed')}, {tr.get('n')} clips); "
           "**no human ratings were used** (see `docs/controlled_corpus.md`).", "",
           "## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(out)
