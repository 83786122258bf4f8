"""Cards and the README table of the zoo's classifiers (spoken digit, speaker sex, heart sounds), from measured
results.

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
    "heart_rate_bpm": "heart rate, 30-180 beats/min",
    "hrv_sdnn_ms": "heart-rate variability (SDNN), log scale 5-400 ms",
    "s1_intensity_db": "loudness of S1, -22 to -4 dBFS",
    "s2_intensity_db": "loudness of S2, -22 to -4 dBFS",
    "s2_split_ms": "split of S2 (A2 to P2), 0-80 ms",
    "systolic_murmur": "systolic murmur, grade / 5",
    "diastolic_murmur": "diastolic murmur, grade / 5",
    "s3": "third heart sound, 0-0.5 of S1's peak",
    "s4": "fourth heart sound, 0-0.5 of S1's peak",
    "noise_level": "recording noise, 0-1",
    "ectopic_fraction": "share of ectopic (dropped or extra) beats, 0-0.4",
    "holosystolic_murmur": "a systolic murmur lasting the whole of systole, 0 (no) to 1 (yes)",
}
TASK_TEXT = {"spoken-digit": "spoken-digit recognition", "speaker-sex": "speaker-sex recognition",
             "heart-sound": "normal vs abnormal phonocardiograms"}
SPEECH_TASKS = ("spoken-digit", "speaker-sex")
BACKBONE_TEXT = {
    "compact": "the compact CNN (four conv/BN/ReLU blocks, global average pooling) on a 16 kHz log-frequency "
               "spectrogram (12 bands per octave, 50 Hz-8 kHz, 25 ms frames, 10 ms hop)",
    "raw_waveform": "a 1-D CNN on the waveform itself (a strided 9-tap conv, five 3-tap conv/BN/ReLU/max-pool blocks, "
                    "global average pooling), after Becker et al.'s AudioNet",
    "compact_pcg": "the compact CNN on a 2 kHz log-frequency spectrogram (12 bands per octave, 20 Hz-1 kHz, 10 ms hop) "
                   "beside a parameter-free envelope autocorrelation that measures the beat period "
                   "(`midlevel.pcg_features`)",
    "compact_pcg_beats": "the compact CNN on a 2 kHz log-frequency spectrogram (12 bands per octave, 20 Hz-1 kHz, 10 ms "
                         "hop) beside a parameter-free envelope autocorrelation that measures the beat period and the "
                         "heart rate counted from the S1 onsets of a learned cardiac-cycle segmenter (frozen, inside "
                         "the backbone: `midlevel.pcg_features.BeatIntervals`)",
}
CITATION = """@article{becker2018audiomnist,
  title   = {Interpreting and Explaining Deep Neural Networks for Classification of Audio Signals},
  author  = {Becker, S{\\"o}ren and Ackermann, Marcel and Lapuschkin, Sebastian and M{\\"u}ller, Klaus-Robert and Samek, Wojciech},
  journal = {arXiv preprint arXiv:1807.03418},
  year    = {2018}
}"""
HEART_CITATION = """@article{dissanayake2020heart,
  title   = {Understanding the Importance of Heart Sound Segmentation for Heart Anomaly Detection},
  author  = {Dissanayake, Theekshana and Fernando, Tharindu and Denman, Simon and Sridharan, Sridha and Ghaemmaghami, Houman and Fookes, Clinton},
  journal = {arXiv preprint arXiv:2005.10480},
  year    = {2020}
}"""


def _front_matter(name: str, info: dict[str, Any]) -> dict[str, Any]:
    held = info["heldout_test"]
    speech = info["task"] in SPEECH_TASKS
    where = "held-out voices" if speech else "held-out recordings"
    metrics = [{"type": "accuracy", "name": f"accuracy ({where})", "value": round(held["accuracy"], 4)}]
    if "concepts" in held:
        metrics.append({"type": "pearsonr", "name": "mean concept r", "value": round(held["concept_r"], 4)})
        metrics += [{"type": "pearsonr", "name": f"{c} r", "value": round(v["r"], 4)} for c, v in held["concepts"].items()]
    return {
        "license": "mit", "library_name": "midlevel",
        "tags": ["audio", "speech" if speech else "phonocardiogram", info["task"], "explainable-ai",
                 "interpretable-by-construction" if info["explainable"] else "baseline"],
        "datasets": ["midlevel spoken-digit corpus (espeak-ng, flite and festival voices; no human recordings)" if speech
                     else "midlevel PCG corpus (simulated phonocardiograms in the PhysioNet 2016 layout; no patients)"],
        "metrics": ["accuracy"] + (["pearsonr"] if info["explainable"] else []),
        "model-index": [{"name": name, "results": [{
            "task": {"type": "audio-classification", "name": TASK_TEXT[info["task"]]},
            "dataset": ({"name": "midlevel spoken-digit corpus", "type": "midlevel-spoken-digits", "split": "test",
                         "args": {"seed": info["corpus"]["seed"], "voices": held["voices"]}} if speech else
                        {"name": "midlevel PCG corpus", "type": "midlevel-pcg", "split": "held-out corpus",
                         "args": {"seed": info["corpus"].get("seed"), "recordings": held["n"]}}),
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


def _heart_concept_rows(info: dict[str, Any]) -> list[str]:
    held, val = info["heldout_test"], info["validation"]
    out = ["| concept | what it is | r (held-out corpus) | MAE (its unit) | r (test split) |", "|---|---|---|---|---|"]
    for c, v in held["concepts"].items():
        out.append(f"| `{c}` | {CONCEPT_TEXT.get(c, '')} | {v['r']:.3f} | {v['mae']:.3g} | {val['concepts'][c]['r']:.3f} |")
    hr = held["concepts"]["heart_rate_bpm"]
    out += ["", f"- Heart rate within 5 beats/min: {hr['within_5_bpm_clean_to_moderate']:.3f} of the "
                f"{hr['n_clean_to_moderate']} clean-to-moderately-noisy held-out recordings (issue 34 asks >= 0.95), "
                f"{hr['within_5_bpm']:.3f} of all."]
    for name in ("systolic_murmur", "diastolic_murmur"):
        aucs = held["concepts"][name].get("detection", {})
        if aucs:
            out.append(f"- {name.replace('_', ' ').capitalize()} detection (the concept as the score, murmur of at least "
                       "the grade vs none), AUC: " + ", ".join(
                           f"grade >= {k.split('_')[1]}: {v['auc']:.3f}" for k, v in aucs.items()) + ".")
    return out


def _gam_rows(info: dict[str, Any]) -> list[str]:
    """Each concept's term of the last class's logit at five points of its 0-1 scale (the shape functions)."""
    cls = info["target_names"][-1]
    grid, terms = info["head"]["grid"], info["head"]["terms"][cls]
    out = [f"Each concept's term of the `{cls}` logit (intercept {info['head']['intercept'][cls]:+.2f}) where the "
           "concept reads:", "", "| concept | " + " | ".join(f"{g:g}" for g in grid) + " |",
           "|---|" + "---|" * len(grid)]
    out += [f"| `{c}` | " + " | ".join(f"{t:+.2f}" for t in row) + " |" for c, row in terms.items()]
    return out


def _head_rows(info: dict[str, Any]) -> list[str]:
    if "coef" not in info["head"]:
        return _gam_rows(info)
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
    held, val = ("held-out voices", "validation voices") if me["task"] in SPEECH_TASKS else \
        ("held-out corpus", "test split of the training corpus")
    out = [f"| entry | kind | accuracy ({held}) | accuracy ({val}) |", "|---|---|---|---|"]
    for other, info in results["classifiers"].items():
        if info["task"] != me["task"]:
            continue
        kind = "explainable" if info["explainable"] else f"black box ({info['backbone'].replace('_', ' ')})"
        label = f"**`{other}`** (this card)" if other == name else f"[`{other}`]({other}.md)"
        out.append(f"| {label} | {kind} | {info['heldout_test']['accuracy']:.3f} | {info['validation']['accuracy']:.3f} |")
    return out


def _speech_sections(name: str, info: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(evaluation text, training data and limitations, how-to-use file) of a speech entry."""
    held, corpus, train = info["heldout_test"], info["corpus"], info["training"]
    evaluation = [f"Held-out voices: {held['voices']} voices ({held['n']} clips) of the spoken-digit corpus that no "
                  "training or validation clip came from (a voice is a synthesiser + variant; speaker-disjoint splits, "
                  f"stratified by synthesiser and sex). Validation: {info['validation']['voices']} other voices. One "
                  f"training run (seed {train['seed']}).", ""]
    data = ["## Training data", "",
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
            "AudioMNIST where you have it; fine-tune (`midlevel train-speech --corpus AudioMNIST/ --init-from "
            f"{name}`) and evaluate there before any use.",
            "- Speaker sex is read from a voice's pitch and formants as synthesisers set them, a narrower spread than "
            "people have; the card's accuracy is a ceiling of this corpus.",
            "- One word per clip, English digits only.", ""]
    return evaluation, data, ["seven.wav"]


def _heart_sections(name: str, info: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(evaluation text, training data and limitations, how-to-use file) of a heart-sound entry."""
    held, train = info["heldout_test"], info["training"]
    evaluation = [f"Held-out corpus: {held['n']} simulated recordings of another seed ({info['corpus'].get('seed')}), read "
                  "whole as a user reads files (the model's windows over each recording); the test split of the "
                  f"training corpus ({info['validation']['n']} recordings) beside it. Accuracy is against the observed "
                  f"labels, which the corpus flips for 5% of recordings; against the rules' own labels the held-out "
                  f"accuracy is {held['accuracy_rule_labels']:.3f}. One training run (seed {train['seed']}).", ""]
    data = ["## Training data", "",
            f"- `midlevel corpus heart` (seed {train['seed']}): simulated phonocardiograms at 2 kHz in the PhysioNet/CinC "
            "2016 layout, with S1/S2, split S2, S3/S4, systolic and diastolic murmurs, heart-rate variability and "
            "arrhythmia, and the challenge's noises; the normal/abnormal label follows documented rules "
            f"([the corpus](../docs/heart_sound_corpus.md)). {info['train_clips']} training recordings.",
            f"- Trained by `midlevel train-heart` (`src/midlevel/training/heart.py`) for up to {train['epochs']} "
            f"epochs; kept the best validation epoch ({info['best_epoch']}); {info['seconds'] / 60:.0f} min on a shared "
            "CPU core.", "", "## Limitations", "",
            "- **Simulated recordings only.** No patient recording could be downloaded where this was trained; the "
            "simulator follows the physiology in timing, band and shape, not real stethoscopes and patients. "
            "`midlevel.datasets.load_physionet2016` reads the PhysioNet 2016 set where you have it: evaluate there "
            "before any use. Not a medical device.",
            "- No level normalisation in the front-end (the timeline reads 0.3 s windows, and a per-window "
            "normalisation would lift a quiet diastole to a loud systole's level): the recording's gain reaches the "
            "S1/S2 intensity concepts.", ""]
    return evaluation, data, ["recording.wav"]


def render_classifier_card(name: str, results: dict[str, Any]) -> str:
    """The card of classifier entry ``name`` (``results["classifiers"][name]``)."""
    info = results["classifiers"][name]
    speech = info["task"] in SPEECH_TASKS
    evaluation, data, (example,) = (_speech_sections if speech else _heart_sections)(name, info)
    level = ("level-normalised inside the network (the file's gain is not heard)" if info.get("level_normalized", True)
             else "not level-normalised")
    out = ["---", yaml.safe_dump(_front_matter(name, info), sort_keys=False).strip(), "---", "", f"# {name}", "",
           info["description"] + ".", ""]
    out += _status_section(name, info)
    out += ["## Model details", "",
            f"- Task: {TASK_TEXT[info['task']]}; classes: {', '.join(info['target_names'])}.",
            f"- Input: mono audio at {info['sample_rate']} Hz, {level}; {info['window_seconds']:g} s windows, a longer "
            "file is read as the mean of its windows.",
            f"- Backbone `{info['backbone']}`: {BACKBONE_TEXT.get(info['backbone'], '')}.",
            f"- Parameters: {info['parameters']:,}; weights `model.safetensors` ({info['size_bytes']:,} bytes), "
            f"sha256 `{info['sha256']}` (checked on load).", ""]
    if info["explainable"]:
        head = ("a sparse logistic head (elastic net, scikit-learn's saga solver)" if "coef" in info["head"] else
                "a GAM logistic head (one P-spline per concept on the logit)")
        out += [f"- Two stages: the network predicts the concepts below (each on 0-1), then {head} maps them to one "
                "logit per class. Every logit is exactly the intercept plus one contribution per concept "
                "(`model.explain(audio).contributions`).", ""]
        if info.get("timeline_window_seconds"):
            out += [f"- The phonetic concepts were trained on {info['timeline_window_seconds']:g} s crops labelled by "
                    "whether the crop overlaps where the sound was said, so `midlevel.explain.timeline` with that window "
                    "says *when* each sound was heard.", ""]
    out += ["## Evaluation", "", *evaluation, *_siblings(name, results), ""]
    if info["explainable"]:
        out += ["### Concepts", "", *(_concept_rows(info) if speech else _heart_concept_rows(info)), "",
                "### The head (logit per class = intercept + the concepts' terms)", "", *_head_rows(info), ""]
    else:
        out += ["This is a black box: it has no concepts. It is the like-for-like baseline of the explainable "
                "entry of its task and the model post-hoc methods (LRP, SHAP, occlusion) explain.", ""]
    if info["task"] == "spoken-digit":
        out += ["## Explanations", "",
                "`model.explain` gives each concept's exact term in each logit, `midlevel.explain.timeline` when it was "
                "heard. The black boxes of this task are explained post hoc with LRP (`midlevel.explain.lrp`: relevance "
                "over time and frequency, or over the samples) and SHAP; their cost as a multiple of the intrinsic "
                "explanation, deletion faithfulness and where each places a spoken \"seven\" are measured in "
                "[the speech explanations benchmark](../benchmarks/results/speech_explanations.md).", ""]
    elif info["task"] == "heart-sound":
        segmenter = ("from the learned segmenter inside the backbone, which ships with these weights "
                     f'(`cardiac_cycle(midlevel.load("{name}"), audio)`; `load_segmenter("{name}")`)'
                     if info["backbone"] == "compact_pcg_beats" else
                     "from the learned segmenter `midlevel train-heart` writes beside the models (not in this entry)")
        out += ["## Explanations", "",
                "`model.explain` gives each concept's exact term in the logit; `midlevel.explain.cardiac_cycle` draws the "
                "terms over time (0.3 s windows) under the states S1 / systole / S2 / diastole, from a recording's "
                f"segment table or {segmenter} ([the study](../docs/studies/heart_first_model.md)). The black box is explained post hoc "
                "with occlusion and SHAP over time as Dissanayake et al. did; which cardiac state each method credits "
                "(against the corpus's known segments) and their cost as a multiple of the intrinsic explanation are in "
                "[the heart explanations benchmark](../benchmarks/results/heart_explanations"
                f"{'_compact_pcg' if info['backbone'] == 'compact_pcg' else ''}.md).", ""]
    out += data
    out += ["## How to use", "", "```python", "import midlevel", f'model = midlevel.load("{name}")',
            f'prediction = model.predict("{example}")' + ("   # probabilities, predicted_class"
                                                         if not info["explainable"] else "")]
    if info["explainable"]:
        out += [f'explanation = model.explain("{example}")   # concepts and their contributions per class',
                "print(explanation.predicted_class, explanation.contributions)"]
    out += ["```", "", "## Reproduce", "", "```bash", *info["recipe"], "```", "", "## Citation", "",
            "The task and its post-hoc explanations follow:", "", "```bibtex", CITATION if speech else HEART_CITATION,
            "```", ""]
    return "\n".join(out)


def classifier_table_markdown(entries: dict[str, Any]) -> str:
    """The README's table of the classifiers (speech, heart sounds): per task its default first, then the others by
    score."""
    shown = sorted((e for e in entries.values() if e.shipped and e.task in TASK_TEXT),
                   key=lambda e: (list(TASK_TEXT).index(e.task), e.name != default_name(entries, e.task),
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
    lines += ["", "Accuracy on held-out synthetic voices of the spoken-digit corpus (not human speech), and on a held-out "
                  "simulated phonocardiogram corpus of another seed (not patients)."]
    return "\n".join(lines)


__all__ = ["classifier_table_markdown", "render_classifier_card"]
