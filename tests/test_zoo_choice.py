"""Choosing from the zoo: typed metadata, one naming rule, aliases, the default from the numbers, names
that never shadow paths, and one contract (predict for every entry; explain refused by black boxes)."""

import json
import re
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import midlevel
from midlevel.checkpoint import ModelLoadError
from midlevel.cli import main
from midlevel.model import BlackBoxModel, NoConceptsError, TwoStageModel
from midlevel.zoo import (ALIASES, DEFAULT_MODEL, DEFAULTS, REGISTRY, ZooNameWarning, card, installed_entry, list_models, load,
                          resolve)
from midlevel.zoo.registry import default_name, parse_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS = json.loads((ROOT / "model_cards" / "results.json").read_text())
RANDOMISED = json.loads((ROOT / "studies" / "results" / "heldout_randomised.json").read_text())
#: the music-emotion entries (the speech classifiers have their own checks: test_zoo_speech.py)
MUSIC = {n: e for n, e in REGISTRY.items() if e.task == "music-emotion"}


@pytest.mark.parametrize("name", sorted(MUSIC))
def test_every_name_follows_the_rule_and_says_what_the_entry_is(name):
    entry, parsed = REGISTRY[name], parse_name(name)
    assert parsed["task"] == entry.task and parsed["backbone"] == entry.backbone
    # the name says thousands of clips, rounded (the 1200-clip continuation corpus of the default is rand1k)
    assert parsed["n_concepts"] == len(entry.concept_names) and parsed["train_clips"] == round(entry.train_clips, -3)
    assert (parsed["head"] == "a2e") == (not entry.explainable)
    assert parsed["sequential"] == (entry.setup == "A2Mid2E")
    # the metrics a user chooses by are the results file's, not typed
    held = RESULTS["family"][RESULTS["zoo"][name]["source"]]["heldout_test"]
    assert entry.metrics["emotion_r"] == held["targets"]["mean"]["r"]
    if entry.explainable:
        assert entry.metrics["concept_r"] == held["concepts"]["mean"]["r"]
    assert entry.status in ("current", "baseline", "superseded") and entry.purpose
    assert (entry.status == "superseded") == (not entry.shipped) == (entry.superseded_by is not None)
    assert card(name).startswith("---\n") and entry.purpose in " ".join(card(name).split())


@pytest.mark.parametrize("bad", ["compact-linear", "emotion-compact-linear-ctrl3k", "emotion-compact-a2e-mid7-ctrl3k",
                                 "emotion-vgg-linear-mid7-ctrl3k", "emotion-compact-linear-mid7-3k",
                                 # a version tag starts at 2 (the first weights have none) and follows everything else
                                 "emotion-compact-linear-mid7-ctrl3k-v1", "emotion-compact-linear-mid7-ctrl3k-v",
                                 "emotion-compact-linear-mid7-ctrl3k-v2-seq", "emotion-compact-linear-mid7-ctrl3k-v02"])
def test_names_off_the_rule_are_refused(bad):
    with pytest.raises(ValueError, match="does not follow|concept set"):
        parse_name(bad)


def test_a_version_tag_names_later_weights_of_an_otherwise_equal_name():
    first, later = parse_name("emotion-structural-linear-mid10-rand1k"), parse_name("emotion-structural-linear-mid10-rand1k-v2")
    assert first.pop("version") == 1 and later.pop("version") == 2 and first == later
    assert parse_name("emotion-compact-gam-mid7-ctrl3k-seq-v12")["version"] == 12


def test_the_default_is_the_best_current_explainable_entry_by_emotion_r_under_randomised_conditions():
    current = [e for e in MUSIC.values() if e.status == "current" and e.explainable and e.shipped]
    assert all("emotion_r_randomised" in e.metrics for e in current)
    assert DEFAULT_MODEL == max(current, key=lambda e: e.metrics["emotion_r_randomised"]).name
    assert load().name == DEFAULT_MODEL and list_models()[0] == DEFAULT_MODEL
    # the randomised scores are the study's, matched by the weights' sha256, not typed
    rows = {row["weights_sha256"]: row for per in RANDOMISED.values() for d, row in per.items() if d.endswith("heldout-rand")}
    for e in current:
        assert e.metrics["emotion_r_randomised"] == rows[e.sha256]["targets"]["mean"]["r"]
    # chosen from the numbers: raise another entry's score and it becomes the default; the dry score does not choose
    other = next(e for e in current if e.name != DEFAULT_MODEL)
    boosted = {**REGISTRY, other.name: replace(other, metrics={**other.metrics, "emotion_r_randomised": 0.99})}
    assert default_name(boosted) == other.name
    dry = {**REGISTRY, other.name: replace(other, metrics={**other.metrics, "emotion_r": 0.99})}
    assert default_name(dry) == DEFAULT_MODEL
    # a black box or a superseded entry never is, however it scores
    for e in MUSIC.values():
        if not e.explainable or e.status == "superseded":
            worse = replace(e, metrics={**e.metrics, "emotion_r_randomised": 0.99})
            assert default_name({**REGISTRY, e.name: worse}) == DEFAULT_MODEL


def test_the_package_ships_only_the_entries_in_use():
    weights = Path(REGISTRY[DEFAULT_MODEL].weights_dir).parent
    assert sorted(p.name for p in weights.iterdir()) == sorted(n for n, e in REGISTRY.items() if e.shipped)
    assert sorted(list_models()) == sorted(n for n, e in REGISTRY.items() if e.shipped)
    assert set(list_models(all=True)) == set(REGISTRY)


def test_old_names_load_with_a_deprecation_warning_naming_the_new_one():
    shipped = next(a for a, n in ALIASES.items() if REGISTRY[n].shipped)
    with pytest.warns(ZooNameWarning, match=f"{shipped!r} is deprecated; it is now {ALIASES[shipped]!r}"):
        assert load(shipped).name == ALIASES[shipped]
    gone = next(a for a, n in ALIASES.items() if not REGISTRY[n].shipped)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load(gone)
    messages = " ".join(str(w.message) for w in caught)
    assert "deprecated" in messages and "superseded" in messages and model.name in messages
    with pytest.raises(ModelLoadError, match="superseded by .* no longer installed"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load(gone, replace_superseded=False)  # training and fine-tuning continue exactly the named weights


def test_a_folder_never_silently_shadows_a_zoo_entry(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = TwoStageModel(midlevel.ModelConfig(name="my-local-model"))
    model.save_pretrained(tmp_path / DEFAULT_MODEL)
    with pytest.raises(ModelLoadError, match=f"both a zoo entry and a folder.*./{DEFAULT_MODEL}.*zoo:{DEFAULT_MODEL}"):
        load(DEFAULT_MODEL)
    assert load(f"./{DEFAULT_MODEL}").name == "my-local-model"
    assert load(f"zoo:{DEFAULT_MODEL}").name == DEFAULT_MODEL
    model.save_pretrained(tmp_path / "mine")
    assert load("mine").name == "my-local-model"  # a bare name the zoo does not know: the folder
    assert isinstance(resolve(Path(DEFAULT_MODEL)), Path)
    with pytest.raises(ModelLoadError, match=f"did you mean {DEFAULT_MODEL[:-1]!r}|did you mean"):
        load(DEFAULT_MODEL[:-1] + "x")


def test_models_lists_scores_marks_the_default_and_hides_superseded(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"*  {DEFAULT_MODEL}" in out and "emotion r" in out and "status" in out
    superseded = [n for n, e in REGISTRY.items() if not e.shipped]
    # whole names: a superseded name can begin a current one's (``-rand1k`` and ``-rand1k-v2``)
    listed = set(re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)+", out))
    assert superseded and not listed & set(superseded) and "--all" in out
    assert f"{REGISTRY[DEFAULT_MODEL].metrics['emotion_r']:.3f}" in out
    assert main(["models", "--all"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in superseded)
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list_models()
    assert {r["name"] for r in rows if r["default"]} == {n for n in DEFAULTS.values() if n} and DEFAULT_MODEL in DEFAULTS.values()
    assert {"task", "metrics", "status", "size_bytes", "concept_names", "superseded_by"} <= set(rows[0])


@pytest.mark.parametrize("name", sorted(MUSIC) + sorted(ALIASES)[:2])
def test_every_entry_predicts_and_explain_ends_in_a_result_or_one_line(name, capsys):
    """Superseded entries and old names included (they load their successor, with a warning line)."""
    assert main(["predict", "--json", "--model", name]) == 0
    predicted = capsys.readouterr()
    record = json.loads(predicted.out)
    assert len(record["targets"]) == 8
    assert all(line.startswith("midlevel: warning: ") for line in predicted.err.splitlines())
    code = main(["explain", "--model", name])
    explained = capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        entry = installed_entry(REGISTRY.get(name) or REGISTRY[ALIASES[name]])
    if entry.explainable:
        assert code == 0 and "contributions" in explained.out
    else:
        assert code == 2 and record["concepts"] == {}
        lines = [line for line in explained.err.splitlines() if not line.startswith("midlevel: warning: ")]
        assert len(lines) == 1 and lines[0].startswith("midlevel: error: ") and "no concepts" in lines[0]
        assert entry.twin in lines[0]


def test_the_console_script_prints_no_traceback_for_a_black_box():
    box = next(n for n, e in MUSIC.items() if e.shipped and not e.explainable)
    done = subprocess.run([sys.executable, "-m", "midlevel.cli", "explain", "--model", box],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_a_black_box_predicts_targets_and_refuses_to_explain():
    box = next(n for n, e in MUSIC.items() if e.shipped and not e.explainable)
    model = load(box)
    assert isinstance(model, BlackBoxModel)
    pred = model.predict(midlevel.example_clip())
    assert pred.concept_names == [] and pred.targets.shape == (8,) and pred.window_concepts.shape == (2, 0)
    np.testing.assert_array_equal(pred.targets, model.predict_targets(midlevel.example_clip()))
    with pytest.raises(NoConceptsError, match=f"no concepts.*{REGISTRY[box].twin}"):
        model.explain(midlevel.example_clip())


@pytest.mark.parametrize("seconds", [3.0, 10.0, 23.7])
def test_one_track_algorithm_chunked_or_not(seconds):
    """explain/predict run the windows a few at a time, the ONNX graph all at once: the same function
    (``track_outputs``) with the same windows and the same numbers."""
    torch.manual_seed(0)
    model = TwoStageModel(midlevel.ModelConfig(backbone="compact", head="gam")).eval()
    wave = torch.randn(2, int(seconds * model.config.sample_rate)) * 0.1
    with torch.no_grad():
        whole = model.track_outputs(wave)
        chunked = model.track_outputs(wave, chunk=1)
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    expl = model.explain(wave[0].numpy(), sample_rate=model.config.sample_rate)
    np.testing.assert_allclose(expl.concepts, whole[0][0].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(expl.targets, whole[1][0].numpy(), rtol=1e-5, atol=1e-5)
    assert np.abs(expl.contributions.sum(1) + expl.intercept - expl.targets).max() <= 1e-9
