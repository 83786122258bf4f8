"""The shipped zoo: integrity, loading by name, and cards that quote the results file exactly."""

import json
from pathlib import Path

import numpy as np
import pytest

import midlevel
from midlevel.checkpoint import ModelLoadError
from midlevel.concepts import MIDLEVEL_FEATURES
from midlevel.ioutil import sha256_file
from midlevel.model import BlackBoxModel, TwoStageModel
from midlevel.zoo import REGISTRY, card, get_entry, list_models
from midlevel.zoo.cards import (matched_black_box, render_card, render_recipe_card, same_backbone_black_box,
                                 split_front_matter)
from midlevel.zoo.explain_head import SIGN_THRESHOLD, head_slopes

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "model_cards" / "results.json"
#: the installed music-emotion entries (the speech classifiers' cards are checked in test_zoo_speech.py)
MUSIC = [n for n in list_models() if REGISTRY[n].task == "music-emotion"]


def test_the_zoo_ships_explainable_models_and_their_baselines():
    names = list_models()
    assert any(REGISTRY[n].explainable and REGISTRY[n].head == "linear" for n in names)
    assert any(REGISTRY[n].explainable and REGISTRY[n].head == "gam" for n in names)
    assert any(not REGISTRY[n].explainable for n in names)
    assert isinstance(midlevel.load(), TwoStageModel) and not midlevel.load().config.metadata.get("notes")


@pytest.mark.parametrize("name", list_models())
def test_entry_loads_by_name_with_pinned_sha256(name):
    entry = get_entry(name)
    assert sha256_file(entry.weights_dir / "model.safetensors") == entry.sha256
    assert (entry.weights_dir / "model.safetensors").stat().st_size < 5_000_000  # small enough for git
    model = midlevel.load(name)
    assert model.config.name == name and model.config.sample_rate == entry.sample_rate
    assert model.config.target_names == list(entry.target_names)
    if entry.explainable:
        assert isinstance(model, TwoStageModel) and model.config.concept_names == list(entry.concept_names)
        expl = model.explain(midlevel.example_clip())
        assert np.abs(expl.contributions.sum(1) + expl.intercept - expl.targets).max() <= 1e-5
        assert list(expl.to_frame().columns[:len(entry.concept_names)]) == list(entry.concept_names)
    else:
        assert isinstance(model, BlackBoxModel)


@pytest.mark.parametrize("name", MUSIC)
def test_card_numbers_equal_the_results_file(name):
    results = json.loads(RESULTS.read_text())
    text = card(name)
    assert text == (ROOT / "model_cards" / get_entry(name).card).read_text()
    assert text == render_card(name, results)  # regenerated from the results file: nothing typed by hand
    meta, body = split_front_matter(text)
    held = results["family"][results["zoo"][name]["source"]]["heldout_test"]
    metrics = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert metrics["mean target r"] == round(held["targets"]["mean"]["r"], 4)
    for target, row in held["targets"].items():
        if target != "mean":
            assert metrics[f"{target} r"] == round(row["r"], 4)
            assert f"| {target} | {row['r']:.3f} | {row['r2']:.3f} |" in body
    if "concepts" in held:
        assert metrics["mean concept r"] == round(held["concepts"]["mean"]["r"], 4)
        rows = {k: v for k, v in held["concepts"].items() if k != "mean"}
        assert np.isclose(held["concepts"]["mean"]["r"], np.mean([v["r"] for v in rows.values()]))
        seven = [v["r"] for k, v in rows.items() if k in MIDLEVEL_FEATURES]
        if len(seven) < len(rows):  # outside concepts lift the mean: the card also gives the seven's own
            assert f"Mean over the {len(seven)} mid-level concepts alone" in body
            assert f"r **{np.mean(seven):.3f}**" in body
    assert "No human ratings were used" in body and results["zoo"][name]["sha256"] == get_entry(name).sha256


def test_a_card_names_the_training_corpus_of_its_own_entry():
    """An entry trained on another corpus than the zoo's (build_zoo.py --add records it) says which, and
    that comparisons with the other entries mix model and data; the others describe the zoo's corpus."""
    results = json.loads(RESULTS.read_text())
    zoo_corpus = results["train_corpus"]
    name = next(n for n in MUSIC if REGISTRY[n].explainable)
    results["zoo"][name].pop("train_corpus", None)
    plain = render_card(name, results)
    assert f"seed {zoo_corpus['seed']}, {zoo_corpus['n']} clips of" in plain and "another corpus" not in plain
    results["zoo"][name]["train_corpus"] = {**zoo_corpus, "n": 2 * zoo_corpus["n"]}
    other = render_card(name, results)
    assert f"seed {zoo_corpus['seed']}, {2 * zoo_corpus['n']} clips of" in other
    assert (f"another corpus than the zoo's other entries** (seed {zoo_corpus['seed']}, {2 * zoo_corpus['n']} clips "
            f"against seed {zoo_corpus['seed']}, {zoo_corpus['n']}; the same seed, so its clips include all of theirs)") in other


def test_a_warm_started_entry_counts_every_training_run_in_its_card():
    """``midlevel train --init-from`` continues a trained model; its card must add the starting model's
    epochs and minutes to its own, so the training cost is not understated."""
    results = json.loads(RESULTS.read_text())
    name = next(n for n in MUSIC if REGISTRY[n].explainable)
    training = results["family"][results["zoo"][name]["source"]]["training"]
    training.pop("warm_start", None)
    assert "--init-from" not in render_card(name, results)
    first = {"epochs": 30, "best_epoch": 27, "seconds_per_epoch": 144.0, "seconds_fastest_epoch": 140.0,
             "seconds_total": 4320.0, "from": "joint-linear", "weights_sha256": "0" * 64,
             "corpus": {"seed": 1, "n": 6000}}
    training["warm_start"] = first
    text = render_card(name, results)
    assert ("before them the weights went through 30 epochs (best 27, 144.0 s per epoch, 72.0 min) on 6000 clips "
            "of the seed-1 corpus") in text
    assert f"Every run together: {(training['seconds_total'] + 4320.0) / 60:.1f} min." in text
    training["warm_start"] = {**first, "warm_start": {**first, "epochs": 5, "seconds_total": 600.0}}
    text = render_card(name, results)
    assert "; before that, 5 epochs" in text
    assert f"Every run together: {(training['seconds_total'] + 4920.0) / 60:.1f} min." in text


def test_a_run_started_from_a_zoo_entry_counts_that_entrys_recorded_training():
    """``--init-from NAME`` continues shipped weights whose training folders may be gone: build_zoo.py takes
    their training from the shipped results, and refuses when the zoo now ships other weights under NAME."""
    from script_loader import load_script

    build_zoo = load_script("scripts/build_zoo.py")
    results = json.loads(RESULTS.read_text())
    name = next(n for n, e in results["zoo"].items() if "warm_start" in results["family"][e["source"]]["training"])
    entry = results["zoo"][name]
    summary = build_zoo.zoo_training_summary(name, entry["sha256"])
    assert summary["from"] == name and summary["weights_sha256"] == entry["sha256"]
    assert summary["corpus"] == entry.get("train_corpus", results["train_corpus"])
    recorded = results["family"][entry["source"]]["training"]
    assert {k: summary[k] for k in recorded} == recorded  # its own warm start, too: every earlier run counts
    with pytest.raises(SystemExit, match=f"other weights under that name.*{'0' * 12}"):
        build_zoo.zoo_training_summary(name, "0" * 64)
    with pytest.raises(SystemExit, match="no such entry"):
        build_zoo.zoo_training_summary("no-such-model", entry["sha256"])


def test_a_model_added_later_never_takes_another_models_row_of_the_family_table():
    """Two entries of one setup, backbone and concept count (e.g. trained on 12000 and on 24000 clips) get
    two rows: the later one's name carries its clip count, so its numbers never overwrite the earlier's."""
    from script_loader import load_script

    build_zoo = load_script("scripts/build_zoo.py")
    ten = [f"c{k}" for k in range(10)]
    args = ("joint-linear", ten, "compact_transcribe_measures")
    assert build_zoo.family_key(*args, train_clips=24000, taken={"a2e"}) == "joint-linear-10-transcribe_measures"
    assert build_zoo.family_key(*args, train_clips=24000, taken={"joint-linear-10-transcribe_measures"}) \
        == "joint-linear-10-transcribe_measures-24000"
    assert build_zoo.family_key("a2e", None, "compact_music", train_clips=3000, taken=set()) == "a2e"
    with pytest.raises(SystemExit, match="joint-linear-10-transcribe_measures-24000"):
        build_zoo.family_key(*args, train_clips=24000, taken={"joint-linear-10-transcribe_measures",
                                                              "joint-linear-10-transcribe_measures-24000"})
    # later weights on the same corpus (a -v2 zoo name) get the version after the clip count
    both = {"joint-linear-10-transcribe_measures", "joint-linear-10-transcribe_measures-24000"}
    assert build_zoo.family_key(*args, train_clips=24000, taken=both, version=2) \
        == "joint-linear-10-transcribe_measures-24000-v2"
    results = json.loads(RESULTS.read_text())
    sources = [e["source"] for e in results["zoo"].values()]
    assert len(set(sources)) == len(sources)  # the shipped zoo: one row per entry


def test_joint_training_narrows_the_gap_to_the_black_box():
    """The paper's finding on the held-out corpus: joint training beats the sequential two-stage model.

    Issue 5 also asks for a cost of at most 0.02 against A2E; on this corpus the emotions carry
    loudness, tempo and register terms no concept holds (ratings-only R^2 0.66 vs 0.88 with them),
    so a black box that hears them pulls ahead: the measured cost is in the cards and the note.
    """
    fam = json.loads(RESULTS.read_text())["family"]
    mean_r = {name: fam[name]["heldout_test"]["targets"]["mean"]["r"] for name in ("a2e", "joint-linear", "a2mid2e-linear")}
    assert mean_r["a2mid2e-linear"] < mean_r["joint-linear"] < mean_r["a2e"]


def test_gam_directions_in_results_are_recomputable_from_the_shipped_model():
    """The card's sign-agreement claim is recomputed from the shipped model, not just read back."""
    results = json.loads(RESULTS.read_text())
    gam = next(n for n in MUSIC if REGISTRY[n].head == "gam")
    head = midlevel.load(gam).head
    claimed = results["zoo"][gam]["directions"]
    grid = np.random.default_rng(0).uniform(2, 9, size=(4000, len(head.concept_names)))
    slopes = head_slopes(head, grid)
    truth = results["ground_truth"]["W"]
    agree = sum(np.sign(slopes[t, k]) == np.sign(truth[c][tg])
                for t, tg in enumerate(head.target_names) for k, c in enumerate(head.concept_names)
                if abs(truth[c][tg]) >= SIGN_THRESHOLD)
    assert claimed["checked"] == sum(abs(w) >= SIGN_THRESHOLD for row in truth.values() for w in row.values())
    assert abs(agree - claimed["agree"]) <= 1  # a grid instead of the held-out concepts may flip a flat curve


def test_tampered_zoo_weights_are_refused(tmp_path, monkeypatch):
    name = next(n for n in MUSIC if REGISTRY[n].explainable)
    entry = get_entry(name)
    copy = tmp_path / name
    copy.mkdir()
    for f in entry.weights_dir.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="sha256"):
        TwoStageModel.from_pretrained(copy, expected_sha256=entry.sha256)


def test_recipes_without_weights_have_generated_cards_that_say_so():
    results = json.loads(RESULTS.read_text())
    assert "vgg-linear" in results["recipes"]  # the paper's backbone: recipe shipped, weights not
    for name, recipe in results["recipes"].items():
        text = (ROOT / "model_cards" / f"{name}.md").read_text()
        assert text == render_recipe_card(name, recipe, results)
        assert "no weights shipped" in text and name not in list_models()
        assert recipe["seconds_per_batch"] > 0 and recipe["batches_per_epoch"] > 0


def test_cards_quote_the_shap_benchmark_file():
    """The SHAP numbers in results.json (and so in the cards) are the benchmark's own output."""
    results = json.loads(RESULTS.read_text())
    bench = json.loads((ROOT / "benchmarks" / "results" / "intrinsic_vs_shap.json").read_text())
    quoted = results["shap_benchmark"]
    assert quoted["n_test"] == bench["n_test"] >= 200
    # measured on the very weights shipped now (a retrained zoo needs the benchmark run again)
    assert quoted["weights_sha256"] == {n: get_entry(n).sha256 for n in quoted["weights_sha256"]}
    assert all(bench["weights_sha256"][n] == get_entry(n).sha256 for n in quoted["weights_sha256"])
    # entries added after the run (build_zoo.py --add) have cards that say they are not in it
    unmeasured = [n for n in MUSIC if n not in quoted["weights_sha256"]]
    for name in unmeasured:  # ... and give the command that measures every such entry without redoing the rest
        assert "not in it yet" in card(name) and f"--n {bench['n_test']} " in card(name) and "--merge" in card(name)
        assert sorted(card(name).split("--models ")[1].split()[0].split(",")) == sorted(unmeasured)
        assert f"--corpus {bench['settings']['corpus']} " in card(name)
    assert any(REGISTRY[n].explainable for n in quoted["weights_sha256"])
    assert any(not REGISTRY[n].explainable for n in quoted["weights_sha256"])
    assert quoted["ratios"] == bench["cost"]["ratios"] and quoted["black_boxes"] == bench["black_boxes"]
    for name, entry in quoted["models"].items():
        assert entry == bench["models"][name] and name in REGISTRY
        assert f"**{quoted['cheapest_black_box_shap'][name]['wall']:.0f}x**" in card(name)


def test_a_benchmark_measured_on_other_weights_is_not_quoted(capsys):
    """build_zoo.py refuses to put SHAP numbers of other weights into the cards, naming the model."""
    from script_loader import load_script

    build_zoo = load_script("scripts/build_zoo.py")
    bench = json.loads((ROOT / "benchmarks" / "results" / "intrinsic_vs_shap.json").read_text())
    pinned = {n: get_entry(n).sha256 for n in REGISTRY if n in bench["weights_sha256"]}  # the measured ones
    kept = build_zoo.shap_benchmark_summary(bench, pinned, Path("bench.json"))
    assert kept["weights_sha256"] == pinned
    gam = next(n for n in pinned if REGISTRY[n].head == "gam")
    retrained = {**pinned, gam: "0" * 64}
    with pytest.raises(SystemExit, match=rf"other weights.*{gam}"):
        build_zoo.shap_benchmark_summary(bench, retrained, Path("bench.json"))
    # an entry the benchmark has not measured yet is named and left out (its card says so), not invented
    added = build_zoo.shap_benchmark_summary(bench, {**pinned, "compact-new": "0" * 64}, Path("bench.json"))
    assert "compact-new" not in added["weights_sha256"] and "compact-new" not in added["models"]
    assert "compact-new" in capsys.readouterr().out


def test_outside_concepts_are_checked_against_their_generating_weights():
    """An outside concept's direction is judged by its factor's B (its rating rises with the factor)."""
    from midlevel.concepts import EMOTIONS, MIDLEVEL_FEATURES, OUTSIDE_CONCEPTS
    from midlevel.datasets.controlled.emotions import ground_truth
    from midlevel.heads import SparseLinearHead
    from midlevel.zoo.explain_head import head_directions, true_weight

    truth = ground_truth()
    names = list(MIDLEVEL_FEATURES) + list(OUTSIDE_CONCEPTS)
    true = np.array([[true_weight(truth, c, t) for c in names] for t in EMOTIONS])  # (T, K)
    assert true[EMOTIONS.index("energy"), names.index("loudness")] == truth["outside_terms"]["loudness"]["B"]["energy"]
    x = np.random.default_rng(0).uniform(1, 10, size=(2000, len(names)))
    head = SparseLinearHead(len(names), len(EMOTIONS), concept_names=names, target_names=EMOTIONS, alpha=0.001)
    d = head_directions(head.fit(x, x @ true.T), x, truth)
    assert d["checked"] == int((np.abs(true) >= SIGN_THRESHOLD).sum()) and d["agree"] == d["checked"]
    flipped = true.copy()
    flipped[:, names.index("tempo")] *= -1  # a head that reads tempo backwards
    d = head_directions(head.fit(x, x @ flipped.T), x, truth)
    wrong = {(m["concept"], m["target"]) for m in d["disagreements"]}
    assert wrong == {("tempo", t) for t in EMOTIONS if abs(truth["outside_terms"]["tempo"]["B"][t]) >= SIGN_THRESHOLD}
    with pytest.raises(KeyError, match="pitch"):
        true_weight(truth, "pitch", "valence")


OUTSIDE_ENTRIES = [n for n in list_models() if {"loudness", "tempo", "register"} <= set(REGISTRY[n].concept_names)]


@pytest.mark.parametrize("name", OUTSIDE_ENTRIES)
def test_outside_concepts_follow_gain_tempo_and_transposition_of_real_audio(name):
    """The outside concepts hear what they name: faster, higher audio rates higher (bundled clip); louder audio
    rates higher where the front-end hears the file's level, and exactly the same where it normalises the level
    (its loudness follows the played dynamics, which a gain does not change)."""
    import librosa

    model = midlevel.load(name)
    audio, sr = librosa.load(midlevel.example_clip(), sr=model.config.sample_rate, mono=True)

    def rating(concept, x):
        return float(model.explain(x, sample_rate=sr).concepts[model.config.concept_names.index(concept)])

    levels = [rating("loudness", g * audio) for g in (0.1, 0.3, 1.0)]
    if model.config.frontend.level_target_dbfs is None:
        assert levels[0] < levels[1] < levels[2]
    else:
        assert np.allclose(levels, levels[0], atol=1e-4), levels
    assert rating("tempo", librosa.effects.time_stretch(audio, rate=0.7)) < rating(
        "tempo", librosa.effects.time_stretch(audio, rate=1.4))
    assert rating("register", librosa.effects.pitch_shift(audio, sr=sr, n_steps=-7)) < rating(
        "register", librosa.effects.pitch_shift(audio, sr=sr, n_steps=7))


def test_naming_the_missing_drivers_meets_the_cost_bar():
    """Issue 5's bar (joint within 0.02 of A2E), as build_zoo.py measured it on the held-out corpus: met by the
    entries whose bottleneck also names loudness, tempo and register, the drivers the seven concepts lack, each
    against the A2E trained as it was (same backbone, corpus and note-roll loss). A cost against an A2E trained
    otherwise proves nothing about the bottleneck, so such entries are left to their cards' warning."""
    results = json.loads(RESULTS.read_text())
    recorded = [n for n in REGISTRY if {"loudness", "tempo", "register"} <= set(REGISTRY[n].concept_names)]
    matched = {name: matched_black_box(name, results) for name in recorded}  # superseded entries' numbers too
    # an entry without one has its card say "Not like for like" (the next test); at least one must have one
    matched = {name: box for name, box in matched.items() if box}
    assert matched, "no outside-concept entry has an A2E trained as it was"
    for name, box in matched.items():
        a2e = results["family"][box]["heldout_test"]["targets"]["mean"]["r"]
        held = results["family"][results["zoo"][name]["source"]]["heldout_test"]
        assert a2e - held["targets"]["mean"]["r"] <= 0.02
        assert results["zoo"][name]["directions"]["agree"] == results["zoo"][name]["directions"]["checked"]


def test_a_cost_against_an_a2e_trained_otherwise_is_flagged():
    """The card's cost of interpretability names the A2E it is measured against, and says so when that A2E had
    another backbone or corpus: a black box trained on less data would flatter the bottleneck."""
    results = json.loads(RESULTS.read_text())
    name = next(n for n in MUSIC if REGISTRY[n].explainable and matched_black_box(n, results))
    box = matched_black_box(name, results)
    assert f"mean r of `{box}` minus this model's" in render_card(name, results)
    assert "Not like for like" not in render_card(name, results)
    entry = results["zoo"][name]
    clips = results["zoo"][next(n for n, e in results["zoo"].items() if e["source"] == box)].get(
        "train_corpus", results["train_corpus"])["n"]
    entry["train_corpus"] = {**entry.get("train_corpus", results["train_corpus"]), "n": 10 ** 6}
    assert matched_black_box(name, results) is None
    # the nearest comparison left: the A2E of the same backbone, with the difference in data named
    assert f"mean r of `{box}` minus this model's" in render_card(name, results)
    assert f"**Not like for like**: `{box}`" in render_card(name, results)
    assert f"trained on {clips} clips, this model on 1000000" in render_card(name, results)
    entry["backbone"] = "compact_elsewhere"
    assert "mean r of `a2e` minus this model's" in render_card(name, results)
    assert "**Not like for like**: the zoo has no A2E" in render_card(name, results)


def test_a_cost_against_another_corpus_uses_the_a2e_nearest_in_clips():
    """Where no A2E was trained as an entry was, its card measures against the same-backbone A2E whose corpus is
    nearest in size: the comparison that mixes in the least effect of the data."""
    results = json.loads(RESULTS.read_text())

    def clips(entry):
        return entry.get("train_corpus", results["train_corpus"])["n"]

    by_backbone = {}
    for box in (e for e in results["zoo"].values() if not e["explainable"]):
        by_backbone.setdefault((box.get("backbone"), box.get("roll_weight")), []).append(box)
    boxes = next(b for b in by_backbone.values() if len({clips(e) for e in b}) >= 2)
    small, large = min(boxes, key=clips), max(boxes, key=clips)
    name = next(n for n, e in results["zoo"].items() if e["explainable"] and matched_black_box(n, results) == small["source"])
    entry = results["zoo"][name]
    for n, nearest in ((clips(small) // 2, small), (clips(large) * 2, large)):
        entry["train_corpus"] = {**entry.get("train_corpus", results["train_corpus"]), "n": n}
        assert matched_black_box(name, results) is None
        assert same_backbone_black_box(name, results) == nearest["source"]
        assert f"**Not like for like**: `{nearest['source']}`" in render_card(name, results)


@pytest.mark.parametrize("name", [n for n in MUSIC if not REGISTRY[n].explainable])
def test_a_black_box_card_gives_a_fine_tuning_command_that_runs(name, tmp_path):
    """`midlevel finetune` refuses a black box (it has no concept layer), so its card must not offer one; it
    names an installed explainable twin (trained as the black box was where that one is installed, else the
    manifest's twin on its backbone), which the fine-tuner accepts."""
    from midlevel.training.finetune import finetune

    text = card(name)
    with pytest.raises(midlevel.MidlevelError, match="fine-tuning needs a two-stage model"):  # with the missing CSV
        finetune(name, tmp_path / "annotations.csv", tmp_path, tmp_path / "out")
    bases = [line.split("--base ")[1].split()[0] for line in text.splitlines() if line.startswith("midlevel finetune")]
    assert bases and name not in bases
    results = json.loads(RESULTS.read_text())
    for base in bases:
        assert REGISTRY[base].explainable and REGISTRY[base].shipped
        assert base == REGISTRY[name].twin or matched_black_box(base, results) == results["zoo"][name]["source"]
        assert isinstance(midlevel.load(base), TwoStageModel)
    assert f'--backbone {REGISTRY[name].backbone} --heads "" --joint-heads ""' in text


TRANSCRIBING_ENTRIES = [n for n in list_models() if REGISTRY[n].backbone.startswith("compact_transcribe")]


@pytest.mark.parametrize("name", TRANSCRIBING_ENTRIES)
def test_the_transcriber_hears_the_bundled_clips_notes(name, tmp_path):
    """The bundled clip is BWV 66.6 rendered from music21's MIDI (scripts/make_example_clip.py); pretty_midi's
    piano roll of that MIDI is its transcription. The shipped transcriber finds those notes (frame F1 well
    above what a roll shifted by a fifth scores), and its card quotes the held-out scores from results.json."""
    import music21
    import pretty_midi
    import torch
    from sklearn.metrics import f1_score

    model = midlevel.load(name).eval()
    music21.corpus.parse("bach/bwv66.6").write("midi", fp=tmp_path / "piece.mid")
    clip = midlevel.audio.load_audio(midlevel.example_clip(), model.config.sample_rate).samples
    wave = torch.as_tensor(clip[: model.config.window_samples][None])
    with torch.no_grad():
        logits = model.backbone.forward_with_salience(model.frontend(wave))[1]
    heard = (torch.sigmoid(logits[0, 0]) > 0.5).numpy()  # (84 pitches from MIDI 24, frames)
    times = np.arange(heard.shape[1]) * model.config.frontend.hop_length / model.config.sample_rate
    roll = pretty_midi.PrettyMIDI(str(tmp_path / "piece.mid")).get_piano_roll(times=times)[24:108] > 0
    sounding = times < 11.5  # before the bundled clip's fade-out
    f1 = f1_score(roll[:, sounding].ravel(), heard[:, sounding].ravel())
    shifted = f1_score(np.roll(roll, 7, axis=0)[:, sounding].ravel(), heard[:, sounding].ravel())
    assert f1 > 0.5 and f1 > 3 * shifted, (f1, shifted)
    results = json.loads(RESULTS.read_text())
    scores = results["family"][results["zoo"][name]["source"]]["transcription"]
    for channel, v in scores.items():
        assert f"| {channel} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} |" in card(name)


def test_a_continued_entry_says_whose_reading_of_the_recordings_it_held():
    """``studies/stretch_equivariance.py --reading-of`` holds an earlier model's reading of the recorded excerpts; the
    card must name that model rather than say the base's reading was kept, and say the round trips' extra weight and
    the note transcriber's own terms (``--note-weight``, ``--band-shift``)."""
    results = json.loads(RESULTS.read_text())
    name = next(n for n in MUSIC if REGISTRY[n].explainable)
    training = results["family"][results["zoo"][name]["source"]]["training"]
    continued = training.setdefault("continued", {"steps": 1500, "batch": 8, "lr": 1e-4, "weight": 1.0,
                                                  "corpus_anchor": 1.0, "recorded_excerpts": 10, "script": "s.py"})
    continued.pop("reading_of", None)
    continued.pop("note_weight", None)
    continued.pop("band_shift", None)
    continued.update(round_trip_versions=4, round_trip_weight=0.0)
    plain = render_card(name, results)
    assert "those excerpts' concepts and the corpus clips' (weight" in plain and "times as hard" not in plain
    continued.update(reading_of={"model": "some-root", "weights_sha256": "0" * 64}, round_trip_weight=3.0)
    held = render_card(name, results)
    assert "those excerpts' concepts kept where `some-root` put them and the corpus clips' (weight" in held
    assert "(their mode-related concepts 4 times as hard)" in held
    assert "its note transcriber's notes" not in held
    assert "bands moved" not in held
    continued.update(note_weight=10.0, band_shift=2.0)
    noted = render_card(name, results)
    assert "its note transcriber's notes on the round trips kept where the model it continued heard the recording" \
        in noted and "(weight 10)" in noted
    assert "its spectrogram's bands moved by 1 to 4 semitones (no vocoder)" in noted and "(weight 2)" in noted
    assert "and its notes those of the recording moved as far" in noted


def test_an_averaged_entry_says_its_weights_are_an_average_of_which_two_models():
    """``studies/weight_interpolation.py --save`` ships weights part of the way from a model to its continuation;
    the card must say so, with alpha and the start named, before describing what the continuation trained."""
    results = json.loads(RESULTS.read_text())
    name = next(n for n in MUSIC if REGISTRY[n].explainable)
    training = results["family"][results["zoo"][name]["source"]]["training"]
    training.setdefault("continued", {"steps": 1500, "batch": 8, "lr": 1e-4, "weight": 1.0, "corpus_anchor": 1.0,
                                      "recorded_excerpts": 10, "script": "s.py"})
    training.pop("weight_average", None)
    plain = render_card(name, results)
    assert "Its weights are an average" not in plain and "No epochs of its own" in plain
    training["weight_average"] = {"alpha": 0.5, "base": "some-start", "continued": "runs/x/models/joint-linear"}
    averaged = render_card(name, results)
    assert "**Its weights are an average**: every weight 0.5 of the way from `some-start` to a continuation" in averaged
    assert "The continuation had no epochs of its own" in averaged
    training["weight_average"]["by_module"] = {"backbone.salience": 1.0}
    by_module = render_card(name, results)
    assert ("**Its weights are an average**: the weights of `backbone.salience` 1 and every other weight 0.5 of the way "
            "from `some-start`") in by_module


def test_a_card_whose_shap_row_left_the_benchmark_says_so_rather_than_offer_a_command():
    """A superseded entry's row leaves ``intrinsic_vs_shap.json`` when its black box is timed again; its card must
    say where the numbers went, not tell the user to run a benchmark its uninstalled weights cannot run."""
    results = json.loads(RESULTS.read_text())
    name = next(n for n in MUSIC if REGISTRY[n].explainable and n in results["shap_benchmark"]["models"])
    results["shap_benchmark"]["models"].pop(name)
    results["shap_benchmark"]["dropped"] = {name: {"counterpart": "some-black-box"}}
    text = render_card(name, results)
    assert "row left the benchmark when its black-box counterpart `some-black-box` was timed again" in text
    assert "--merge` measures the entries" not in text
