"""The zoo's classifiers (speech, issue 33; heart sounds, issue 34): named by the rule, scored from the results
file, loaded offline and checked against their sha256, one default per task chosen from the numbers; and the
shipped digit model explains a "seven" said by a voice it never heard through its sibilant, /v/ and nasal,
hissing first."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from midlevel.audio import load_audio
from midlevel.model import BlackBoxModel, TwoStageModel
from midlevel.zoo import DEFAULTS, REGISTRY, card, list_models, load
from midlevel.zoo.classifier_cards import render_classifier_card
from midlevel.zoo.registry import default_name, parse_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS = json.loads((ROOT / "model_cards" / "results.json").read_text())
CLASSIFIERS = sorted(RESULTS.get("classifiers", {}))
SPEECH = [n for n in CLASSIFIERS if RESULTS["classifiers"][n]["task"] in ("spoken-digit", "speaker-sex")]
pytestmark = pytest.mark.skipif(not CLASSIFIERS, reason="no classifier entries in the zoo yet")


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_each_classifier_entry_is_named_scored_and_loaded_as_its_results_say(name):
    entry, info, parsed = REGISTRY[name], RESULTS["classifiers"][name], parse_name(name)
    assert parsed["task"] == entry.task == info["task"] and parsed["backbone"] == entry.backbone
    assert parsed["n_concepts"] == len(entry.concept_names) and (parsed["head"] == "a2c") == (not entry.explainable)
    assert entry.metrics["accuracy"] == info["heldout_test"]["accuracy"]
    model = load(name)
    assert isinstance(model, TwoStageModel if entry.explainable else BlackBoxModel)
    assert model.config.task == "classification" and list(model.config.target_names) == list(entry.target_names)
    front = card(name).split("---")[1]
    assert f"value: {round(info['heldout_test']['accuracy'], 4)}" in front
    assert card(name) == render_classifier_card(name, RESULTS)  # the shipped card is the results' rendering


def test_each_task_has_its_own_default_the_best_current_explainable_entry_by_accuracy():
    for task in ("spoken-digit", "speaker-sex", "heart-sound"):
        mine = {n: e for n, e in REGISTRY.items() if e.task == task}
        if not mine:
            continue
        best = max((e for e in mine.values() if e.explainable and e.status == "current" and e.shipped),
                   key=lambda e: e.metrics["accuracy"])
        assert DEFAULTS[task] == best.name
        # a black box scoring higher never becomes the default, nor does a better entry of another task
        boosted = {**REGISTRY, **{n: replace(e, metrics={**e.metrics, "accuracy": 2.0})
                                  for n, e in mine.items() if not e.explainable}}
        assert default_name(boosted, task) == best.name
    assert DEFAULTS["music-emotion"] == default_name(REGISTRY) and REGISTRY[DEFAULTS["music-emotion"]].task == "music-emotion"
    names = list_models()
    music = [n for n in names if REGISTRY[n].task == "music-emotion"]
    assert names[:len(music)] == music and names[0] == DEFAULTS["music-emotion"]


def test_explainable_speech_entries_are_accurate_on_held_out_voices_and_close_to_their_black_boxes():
    """Issue 33's bar on the recorded numbers: >= 95% on held-out voices, within 2 points of each twin (the heart
    entries' bars are issue 34's, checked below)."""
    for black_box in SPEECH:
        explainable = REGISTRY[black_box].twin
        if explainable is None:
            continue
        ours = RESULTS["classifiers"][explainable]["heldout_test"]["accuracy"]
        theirs = RESULTS["classifiers"][black_box]["heldout_test"]["accuracy"]
        assert ours >= 0.95 and ours >= theirs - 0.02, (explainable, ours, black_box, theirs)


def test_the_current_heart_entry_meets_issue_34s_bars_on_its_recorded_numbers():
    """Issue 34's bars on the held-out corpus (another seed): heart rate within 5 bpm on >= 95% of the
    clean-to-moderately-noisy recordings, each murmur detected with AUC >= 0.95 at every scored grade, and
    accuracy within 2 points of its black-box twin (met since the twelve concepts: the ten could not express
    frequent ectopy or a holosystolic murmur)."""
    name = DEFAULTS.get("heart-sound")
    if name is None:
        pytest.skip("no heart-sound entry in the zoo")
    concepts = RESULTS["classifiers"][name]["heldout_test"]["concepts"]
    hr = concepts["heart_rate_bpm"]
    assert hr["n_clean_to_moderate"] >= 400 and hr["within_5_bpm_clean_to_moderate"] >= 0.95, hr
    for murmur in ("systolic_murmur", "diastolic_murmur"):
        aucs = {k: v["auc"] for k, v in concepts[murmur]["detection"].items()}
        assert len(aucs) == 3 and min(aucs.values()) >= 0.95, (murmur, aucs)
    twins = [n for n, e in REGISTRY.items() if e.twin == name and not e.explainable]
    assert len(twins) == 1, twins
    ours = RESULTS["classifiers"][name]["heldout_test"]["accuracy"]
    theirs = RESULTS["classifiers"][twins[0]]["heldout_test"]["accuracy"]
    assert ours >= theirs - 0.02, (name, ours, twins[0], theirs)


@pytest.fixture(scope="module")
def unseen_sevens(tmp_path_factory):
    """Every digit said once, dry, by the held-out espeak-ng voices of the digit entry's corpus."""
    pytest.importorskip("parselmouth")
    pytest.importorskip("librosa")
    if not shutil.which("espeak-ng") or not shutil.which("festival"):
        pytest.skip("speech synthesisers missing (scripts/install-system-deps.sh)")
    from midlevel.datasets.spoken_digits import build_spoken_digits
    from midlevel.datasets.spoken_digits.voices import available_voices

    name = DEFAULTS["spoken-digit"]
    held = set(RESULTS["classifiers"][name]["heldout_voices"])
    voices = [v for v in available_voices() if v.speaker in held and v.engine == "espeak-ng"][:3]
    out = tmp_path_factory.mktemp("unseen") / "corpus"
    build_spoken_digits(out, reps=1, seed=7, conditions="dry", voices=voices, progress=False)
    labels = pd.read_csv(out / "labels.csv")
    return load(name), out, labels[labels["word"] == "seven"]


def test_a_seven_from_an_unseen_voice_is_explained_by_its_sibilant_v_and_nasal_and_the_hiss_comes_first(unseen_sevens):
    from midlevel.explain.timeline import timeline

    model, out, sevens = unseen_sevens
    assert len(sevens) >= 2
    window = model.config.metadata["timeline_window_seconds"]
    for _, row in sevens.iterrows():
        audio = load_audio(str(out / row["file"]), model.config.sample_rate)
        e = model.explain(audio)
        np.testing.assert_allclose(e.intercept + e.contributions.sum(axis=1), e.targets, atol=1e-9)
        assert e.predicted_class == "seven", (row["speaker"], e.probabilities.round(3))
        terms = e.contributions[e.target_names.index("seven")]
        top = [e.concept_names[k] for k in np.argsort(-terms)[:5]]  # of nine: "two syllables" leads
        assert {"sibilant", "fricative", "nasal"} <= set(top), (row["speaker"], top)
        assert all(terms[e.concept_names.index(c)] > 0 for c in ("sibilant", "fricative", "nasal"))
        line = timeline(model, audio, window_seconds=window, hop_seconds=0.01)
        k = line.concept_names.index("sibilant")
        hiss = float(line.centres[int(np.argmax(line.concepts[:, k]))])
        when = (hiss - row["offset_s"]) / row["word_s"]
        assert -0.1 <= when <= 0.25, (row["speaker"], when)  # a window's centre may precede the word it covers
