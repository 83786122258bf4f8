"""Cards and the README table of the zoo's classifiers (spoken digit, speaker sex), from measured results.

Like ``cards`` for music, every number comes from ``model_cards/results.json`` (its ``classifiers``
section, written by ``scripts/build_zoo.py --entry NAME``); nothing here is typed by hand but the words.
"""

from __future__ import annotations

from typing import Any

import yaml

from .cards import _status_section
from .registry import TASK_SCORES, default_name, task_score

#: what each concept is, in a listener's words (docs/spoken_digit_corpus.md has how each label is computed)
CONCEPT_TEXT = {
    "sibilant": "a hiss: s z sh zh ch jh",
    "fricative": "another fricative: f v th dh hh",
    "nasal": "a nasal: m n ng",
    "plosive": "a plosive: p b t d k g",
    "liquid_glide": "a liquid or glide: l r w y",
    "vowel_front": "a front vowel: iy ih eh ey ae",
    "vowel_back": "a back vowel: uw uh ow ao oy",
    "vowel_open": "an open vowel: aa ay aw ah ax er",
    "two_syllables": "two syllables (zero, seven) rather than one",
    "pitch": "median F0 (Praat), log scale 60-400 Hz",
    "pitch_range": "F0 range, 5th-95th percentile, 0-12 semitones",
    "formant_1": "mean F1 (Praat, Burg), 250-1000 Hz",
    "formant_2": "mean F2, 800-2800 Hz",
    "formant_3": "mean F3, 2000-4000 Hz",
    "harmonicity": "harmonics-to-noise ratio (Praat, cc), 0-30 dB",
}
TASK_TEXT = {"spoken-digit": "spoken-digit recognition", "speaker-sex": "speaker-sex recognition"}
BACKBONE_TEXT = {
    "compact": "the compact CNN (four conv/BN/ReLU blocks, global average pooling) on a 16 kHz log-frequency "
               "spectrogram (12 bands per octave, 50 Hz-8 kHz, 25 ms frames, 10 ms hop)",
    "raw_waveform": "a 1-D CNN on the waveform itself (a strided 9-tap conv, five 3-tap conv/BN/ReLU/max-pool blocks, "
                    "global average pooling), after Becker et al.'s AudioNet",
}
CITATION = """@article{becker2018audiomnist,
  title   = {Interpreting and Explaining Deep Neural Networks for Classification of Audio Signals},
  author  = {Becker, S{\\"o}ren and Ackermann, Marcel and Lapuschkin, Sebastian and M{\\"u}ller, Klaus-Robert and Samek, Wojciech},
  journal = {arXiv preprint arXiv:1807.03418},
  year    = {2018}
}"""


def _front_matter(name: str, info: dict[str, Any]) -> dict[str, Any]:
    held = info["heldout_test"]
    metrics = [{"type": "accuracy", "name": "accuracy (held-out voices)", "value": round(held["accuracy"], 4)}]
    if "concepts" in held:
        metrics.append({"type": "pearsonr", "name": "mean concept r", "value": round(held["concept_r"], 4)})
        metrics += [{"type": "pearsonr", "name": f"{c} r", "value": round(v["r"], 4)} for c, v in held["concepts"].items()]
    return {
        "license": "mit", "library_name": "midlevel",
        "tags": ["audio", "speech", info["task"], "explainable-ai",
                 "interpretable-by-construction" if info["explainable"] else "baseline"],
        "datasets": ["midlevel spoken-digit corpus (espeak-ng, flite and festival voices; no human recordings)"],
        "metrics": ["accuracy"] + (["pearsonr"] if info["explainable"] else []),
        "model-index": [{"name": name, "results": [{
            "task": {"type": "audio-classification", "name": TASK_TEXT[info["task"]]},
            "dataset": {"name": "midlevel spoken-digit corpus", "type": "midlevel-spoken-digits", "split": "test",
                        "args": {"seed": info["corpus"]["seed"], "voices": held["voices"]}},
            "metrics": metrics}]}],
    }


def _concept_rows(info: dict[str, Any]) -> list[str]:
    held, val = info["heldout_test"], info["validation"]
    timed = any("heard_accuracy" in v for v in held["concepts"].values())
    out = ["| concept | what it is | r (held-out voices) | present/absent right (whole clip > 0.5) |"
           + (" heard in the timeline (max > 0.5) right |" if timed else "") + " r (validation voices) |",
           "|---|---|---|---|" + ("---|" if timed else "") + "---|"]
    for c, v in held["concepts"].items():
        right = f"{v['accuracy']:.3f}" if "accuracy" in v else "-"
        heard = (f" {v['heard_accuracy']:.3f} |" if "heard_accuracy" in v else " - |") if timed else ""
        out.append(f"| `{c}` | {CONCEPT_TEXT.get(c, '')} | {v['r']:.3f} | {right} |{heard} {val['concepts'][c]['r']:.3f} |")
    if timed:
        out += ["", f"The phone classes were trained on {info['timeline_window_seconds']:g} s crops: read on the whole "
                "1.2 s clip a sound fills only part of the window and its concept reads lower, so a 0.5 threshold on "
                "the whole clip misses many; the timeline's maximum (windows of the crop length, 50 ms hop) is where "
                "the model says it heard it."]
    return out


def _head_rows(info: dict[str, Any]) -> list[str]:
    coef, intercept = info["head"]["coef"], info["head"]["intercept"]
    concepts = list(next(iter(coef.values())))
    out = ["| class | intercept | " + " | ".join(f"`{c}`" for c in concepts) + " |",
           "|---|---|" + "---|" * len(concepts)]
    for cls, row in coef.items():
        out.append(f"| {cls} | {intercept[cls]:+.2f} | " + " | ".join(f"{row[c]:+.2f}" if row[c] else "0"
                                                                     for c in concepts) + " |")
    return out


def _siblings(name: str, results: dict[str, Any]) -> list[str]:
    """The same task's other entries, with their held-out accuracy: the comparison a user chooses by."""
    me = results["classifiers"][name]
    out = ["| entry | kind | accuracy (held-out voices) | accuracy (validation voices) |", "|---|---|---|---|"]
    for other, info in results["classifiers"].items():
        if info["task"] != me["task"]:
            continue
        kind = "explainable" if info["explainable"] else f"black box ({info['backbone'].replace('_', ' ')})"
        label = f"**`{other}`** (this card)" if other == name else f"[`{other}`]({other}.md)"
        out.append(f"| {label} | {kind} | {info['heldout_test']['accuracy']:.3f} | {info['validation']['accuracy']:.3f} |")
    return out


def render_classifier_card(name: str, results: dict[str, Any]) -> str:
    """The card of classifier entry ``name`` (``results["classifiers"][name]``)."""
    info = results["classifiers"][name]
    held, corpus, train = info["heldout_test"], info["corpus"], info["training"]
    out = ["---", yaml.safe_dump(_front_matter(name, info), sort_keys=False).strip(), "---", "", f"# {name}", "",
           info["description"] + ".", ""]
    out += _status_section(name, info)
    out += ["## Model details", "",
            f"- Task: {TASK_TEXT[info['task']]}; classes: {', '.join(info['target_names'])}.",
            f"- Input: mono audio at {info['sample_rate']} Hz, level-normalised inside the network (the file's gain "
            f"is not heard); {info['window_seconds']:g} s windows, a longer file is read as the mean of its windows.",
            f"- Backbone `{info['backbone']}`: {BACKBONE_TEXT.get(info['backbone'], '')}.",
            f"- Parameters: {info['parameters']:,}; weights `model.safetensors` ({info['size_bytes']:,} bytes), "
            f"sha256 `{info['sha256']}` (checked on load).", ""]
    if info["explainable"]:
        out += ["- Two stages: the network predicts the concepts below (each on 0-1), then a sparse logistic head "
                "(elastic net, scikit-learn's saga solver) maps them to one logit per class. Every logit is exactly "
                "the intercept plus one contribution per concept (`model.explain(audio).contributions`).", ""]
        if info.get("timeline_window_seconds"):
            out += [f"- The phonetic concepts were trained on {info['timeline_window_seconds']:g} s crops labelled by "
                    "whether the crop overlaps where the sound was said, so `midlevel.explain.timeline` with that window "
                    "says *when* each sound was heard.", ""]
    out += ["## Evaluation", "",
            f"Held-out voices: {held['voices']} voices ({held['n']} clips) of the spoken-digit corpus that no training "
            f"or validation clip came from (a voice is a synthesiser + variant; speaker-disjoint splits, stratified by "
            f"synthesiser and sex). Validation: {info['validation']['voices']} other voices. One training run "
            f"(seed {train['seed']}).", ""]
    out += _siblings(name, results) + [""]
    if info["explainable"]:
        out += ["### Concepts", "", *_concept_rows(info), "",
                "### The head (logit per class = intercept + sum of weight x concept)", "", *_head_rows(info), ""]
    else:
        out += ["This is a black box: it has no concepts. It is the like-for-like baseline of the explainable "
                "entry of its task and the model post-hoc methods (LRP, SHAP) explain.", ""]
    if info["task"] == "spoken-digit":
        out += ["## Explanations", "",
                "`model.explain` gives each concept's exact term in each logit, `midlevel.explain.timeline` when it was "
                "heard. The black boxes of this task are explained post hoc with LRP (`midlevel.explain.lrp`: relevance "
                "over time and frequency, or over the samples) and SHAP; their cost as a multiple of the intrinsic "
                "explanation, deletion faithfulness and where each places a spoken \"seven\" are measured in "
                "[the speech explanations benchmark](../benchmarks/results/speech_explanations.md).", ""]
    out += ["## Training data", "",
            f"- `midlevel corpus speech --reps {corpus['reps']} --seed {corpus['seed']} --conditions "
            f"{corpus['conditions']}`: {corpus['speakers']} synthetic voices (espeak-ng accents x variants, flite, "
            f"festival), each saying every digit {corpus['reps']} times with a drawn rate and pitch, then the music "
            "corpus's randomised recording conditions (room, EQ tilt, compression, level, noise, codec). "
            f"{info['train_clips']} training clips from {train['voices']['train']} voices.",
            f"- Trained by `midlevel train-speech` (`src/midlevel/training/speech.py`) for up to {train['epochs']} "
            f"epochs; kept the best validation epoch ({info['best_epoch']}); {info['seconds'] / 60:.0f} min on 2 CPU cores.",
            "", "## Limitations", "",
            "- **Synthetic voices only.** No human speech could be downloaded where this was trained: accuracy on "
            "held-out *synthetic* voices says little about human speakers. `midlevel.datasets.load_audiomnist` reads "
            "AudioMNIST where you have it; fine-tune and evaluate there before any use.",
            "- Speaker sex is read from a voice's pitch and formants as synthesisers set them, a narrower spread than "
            "people have; the card's accuracy is a ceiling of this corpus.",
            "- One word per clip, English digits only.", "",
            "## How to use", "", "```python", "import midlevel", f'model = midlevel.load("{name}")',
            'prediction = model.predict("seven.wav")' + ("               # probabilities, predicted_class"
                                                         if not info["explainable"] else ""),
            ]
    if info["explainable"]:
        out += ['explanation = model.explain("seven.wav")          # concepts and their contributions per class',
                "print(explanation.predicted_class, explanation.contributions)"]
    out += ["```", "", "## Reproduce", "", "```bash", *info["recipe"], "```", "", "## Citation", "",
            "The task and its post-hoc explanations follow:", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(out)


def classifier_table_markdown(entries: dict[str, Any]) -> str:
    """The README's table of the speech entries: per task its default first, then the others by score."""
    shown = sorted((e for e in entries.values() if e.shipped and e.task in TASK_TEXT),
                   key=lambda e: (e.task != "spoken-digit", e.name != default_name(entries, e.task),
                                  e.status != "current", -task_score(e), e.name))
    if not shown:
        return ""
    lines = ["| model | task | status | concepts | concept r | accuracy | weights | card |",
             "|---|---|---|---|---|---|---|---|"]
    for e in shown:
        default = " (default)" if e.name == default_name(entries, e.task) else ""
        concept_r = f"{e.metrics['concept_r']:.3f}" if "concept_r" in e.metrics else "-"
        lines.append(f"| `{e.name}`{default} | {e.task} | {e.status} | {len(e.concept_names) or '-'} | {concept_r} | "
                     f"{e.metrics[TASK_SCORES[e.task]]:.3f} | {e.size_bytes / 1e6:.1f} MB | [card](model_cards/{e.card}) |")
    lines += ["", "Accuracy on held-out synthetic voices of the spoken-digit corpus (not human speech)."]
    return "\n".join(lines)


__all__ = ["classifier_table_markdown", "render_classifier_card"]
