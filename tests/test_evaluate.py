"""`midlevel evaluate`: the numbers are the peer libraries' on the model's own predictions, the same in every
layout, the cards' code to the bit, bad files are listed not fatal, black boxes get targets only; and (slow,
with the held-out corpus built) the default model's card numbers are reproduced.

Models here are small random ones with 1 s windows; the data sets are 1 s tones written by the tests.
"""

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.stats import pearsonr

from midlevel import ModelConfig, TwoStageModel
from midlevel.cli import main
from midlevel.concepts import EMOTIONS, MIDLEVEL_FEATURES
from midlevel.evaluation import evaluate, load_model
from midlevel.model import BlackBoxModel
from midlevel.training.cache import cached_log_spectrograms
from midlevel.training.data import load_splits
from midlevel.training.loops import ArraySet
from midlevel.training.metrics import resample_sets
from midlevel.training.recipes import evaluate as card_evaluate

ROOT = Path(__file__).resolve().parents[1]
N = 24  # clips; pieces of two clips; pieces alternate between the test and train splits


def tone(ratings, rng):
    t = np.arange(22050) / 22050
    wave = 0.03 * ratings[0] * np.sin(2 * np.pi * (100 + 50 * ratings[1]) * t)
    return (wave + 0.01 * ratings[2] * rng.normal(size=t.size)).astype(np.float32)


def split_of(i):
    return "test" if (i // 2) % 2 == 0 else "train"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A Mid-level-layout data set (piece ids and a split column, as the controlled corpus records them,
    targets in mean_ratings_set1.csv) and the same clips as one CSV beside it."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    concepts = rng.uniform(1, 10, (N, 7))
    targets = rng.uniform(1, 9, (N, 8))
    (root / "metadata_annotations").mkdir()
    (root / "audio").mkdir()
    for i in range(N):
        sf.write(root / "audio" / f"{i + 1}.flac", tone(concepts[i], rng), 22050)
    c_text = [[f"{v:.4f}" for v in row] for row in concepts]
    t_text = [[f"{v:.4f}" for v in row] for row in targets]
    (root / "metadata_annotations" / "annotations.csv").write_text("\n".join(
        ["song_id," + ",".join(MIDLEVEL_FEATURES)] + [f"{i + 1}," + ",".join(r) for i, r in enumerate(c_text)]) + "\n")
    (root / "metadata_annotations" / "metadata.csv").write_text("\n".join(
        ["song id;Artist;Source;piece_id;split"]
        + [f"{i + 1};artist {i // 4};synthetic;p{i // 2};{split_of(i)}" for i in range(N)]) + "\n")
    (root / "mean_ratings_set1.csv").write_text(
        "\n".join(["number," + ",".join(EMOTIONS)] + [f"{i + 1}," + ",".join(r) for i, r in enumerate(t_text)]) + "\n")
    (root / "ratings.csv").write_text("\n".join(
        ["File,Piece ID,split," + ",".join(MIDLEVEL_FEATURES + EMOTIONS)]
        + [f"audio/{i + 1}.flac,p{i // 2},{split_of(i)}," + ",".join(c_text[i] + t_text[i]) for i in range(N)]) + "\n")
    truth_c = np.array([[float(v) for v in row] for row in c_text])
    truth_t = np.array([[float(v) for v in row] for row in t_text])
    return {"root": root, "csv": root / "ratings.csv", "concepts": truth_c, "targets": truth_t,
            "test": [i for i in range(N) if split_of(i) == "test"]}


def normalised(model):
    rng = np.random.default_rng(1)
    spec = model.frontend.log_spectrogram(torch.from_numpy(np.stack([tone(np.full(3, 5.0), rng) for _ in range(4)])))
    model.set_input_normalization(spec.mean(dim=(0, 2)), spec.std(dim=(0, 2)))
    return model.eval()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    m = normalised(TwoStageModel(ModelConfig(window_seconds=1.0, hop_seconds=0.5, name="tiny-two-stage")))
    m.save_pretrained(tmp_path_factory.mktemp("models") / "tiny-two-stage")
    return m


@pytest.fixture(scope="module")
def black_box():
    torch.manual_seed(1)
    config = ModelConfig(kind="black_box", window_seconds=1.0, hop_seconds=0.5, name="tiny-a2e")
    return normalised(BlackBoxModel(config))


def test_r_and_r2_are_scipys_and_numpys_on_the_models_own_predictions(corpus, model):
    result = evaluate(model, corpus["root"], path="track", resamples=200)
    rows = corpus["test"]
    assert result["split"] == "test" and result["n"] == len(rows) and result["path"] == "track"
    predictions = [model.predict(corpus["root"] / "audio" / f"{i + 1}.flac") for i in rows]
    for kind, truth, predicted, names in (
            ("concepts", corpus["concepts"][rows], np.array([p.concepts for p in predictions]), MIDLEVEL_FEATURES),
            ("targets", corpus["targets"][rows], np.array([p.targets for p in predictions]), EMOTIONS)):
        table = result[kind]
        assert list(table) == [*names, "mean"]
        rs = []
        for k, name in enumerate(names):
            row = table[name]
            rs.append(pearsonr(truth[:, k], predicted[:, k])[0])
            assert row["r"] == pytest.approx(rs[-1], abs=1e-12)
            assert row["r"] == pytest.approx(np.corrcoef(truth[:, k], predicted[:, k])[0, 1], abs=1e-12)
            residual = ((truth[:, k] - predicted[:, k]) ** 2).sum()
            assert row["r2"] == pytest.approx(1 - residual / ((truth[:, k] - truth[:, k].mean()) ** 2).sum(), abs=1e-12)
            assert row["n"] == len(rows)
            lo, hi = row["r_ci"]
            assert -1 <= lo <= hi <= 1
        assert table["mean"]["r"] == pytest.approx(np.mean(rs), abs=1e-12)
        assert table["mean"]["r_ci"][0] <= table["mean"]["r_ci"][1]
    assert result["resampled_by"] == "piece" and result["resampling_units"] == len(rows) // 2


def test_the_window_path_is_the_code_that_writes_the_cards_to_the_bit(corpus, model, tmp_path):
    """``recipes.evaluate`` on build_zoo's arrays (load_splits' test split, cached first-window spectrograms)."""
    test = load_splits(corpus["root"])["test"]
    arrays = ArraySet(cached_log_spectrograms(test.paths, model.frontend, model.config.window_samples, tmp_path,
                                              progress=False), test.concepts, test.targets)
    card = card_evaluate(model, arrays, test)
    result = evaluate(model, corpus["root"], resamples=0)
    assert result["path"] == "window" and result["n"] == card["n"]
    for kind in ("concepts", "targets"):
        assert {n: {"r": v["r"], "r2": v["r2"]} for n, v in result[kind].items()} == card[kind]


def test_the_csv_layout_gives_the_mid_level_layouts_numbers(corpus, model, tmp_path):
    for split in (None, "all"):
        a = evaluate(model, corpus["root"], split=split, resamples=100)
        b = evaluate(model, corpus["csv"], split=split, resamples=100)
        assert (a["layout"], b["layout"]) == ("midlevel", "csv") and a["split"] == b["split"]
        assert a["n"] == b["n"] == (N if split == "all" else len(corpus["test"]))
        assert a["concepts"] == b["concepts"] and a["targets"] == b["targets"]
    # a blank cell is an unrated clip of that column; audio paths may be relative to --audio-dir instead
    lines = corpus["csv"].read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index("dissonance")] = ""
    (tmp_path / "part.csv").write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    c = evaluate(model, tmp_path / "part.csv", audio_dir=corpus["root"], split="all", resamples=0)
    assert c["concepts"]["dissonance"]["n"] == N - 1 and c["concepts"]["articulation"]["n"] == N
    whole = evaluate(model, corpus["root"], split="all", resamples=0)["concepts"]["articulation"]
    assert c["concepts"]["articulation"] == pytest.approx(whole, abs=1e-12)


def test_the_cli_json_round_trips_and_a_bad_file_is_listed_while_the_others_are_scored(corpus, model, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(corpus["root"], root)
    broken, gone = corpus["test"][1], corpus["test"][2]
    (root / "audio" / f"{broken + 1}.flac").write_bytes(b"this is not audio")
    (root / "audio" / f"{gone + 1}.flac").unlink()
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    out = tmp_path / "result.json"
    assert main(["evaluate", "--model", str(model_dir), "--data", str(root), "--json", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert json.loads(out.read_text()) == result
    assert result["n"] == len(corpus["test"]) - 2 and result["n_listed"] == len(corpus["test"])
    assert [Path(s["file"]).name for s in result["skipped"]] == [f"{broken + 1}.flac", f"{gone + 1}.flac"]
    lines = captured.err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("midlevel: skipped ") for line in lines)
    assert f"{broken + 1}.flac" in lines[0] and "no such file" in lines[1] and f"{gone + 1}.flac" in lines[1]
    # the clips that were read are scored exactly as on a data set without the bad ones
    kept = [line for k, line in enumerate(corpus["csv"].read_text().splitlines()) if k - 1 not in (broken, gone)]
    (root / "kept.csv").write_text("\n".join(kept) + "\n")
    again = evaluate(model, root / "kept.csv")
    assert json.loads(json.dumps(again["concepts"])) == result["concepts"]
    assert json.loads(json.dumps(again["targets"])) == result["targets"]
    # the readable table, and a bad --data in one line with exit 2
    assert main(["evaluate", "--model", str(model_dir), "--data", str(root), "--resamples", "50"]) == 0
    text = capsys.readouterr().out
    assert "95% CI" in text and "melodiousness" in text and "tender" in text and text.count("mean") == 2
    assert main(["evaluate", "--model", str(model_dir), "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere" in err[0]


def test_a_black_box_is_scored_on_its_targets_only(corpus, black_box, model, tmp_path):
    result = evaluate(black_box, corpus["root"], resamples=50)
    assert "concepts" not in result and list(result["targets"]) == [*EMOTIONS, "mean"]
    test = load_splits(corpus["root"])["test"]
    arrays = ArraySet(cached_log_spectrograms(test.paths, black_box.frontend, black_box.config.window_samples,
                                              tmp_path, progress=False), test.concepts, test.targets)
    card = card_evaluate(black_box, arrays, test)
    assert "concepts" not in card
    assert {n: {"r": v["r"], "r2": v["r2"]} for n, v in result["targets"].items()} == card["targets"]
    # a Soundtracks-layout folder has targets only: a two-stage model is scored on those, its concepts unrated
    st = tmp_path / "soundtracks"
    st.mkdir()
    rows = [line.split(",") for line in (corpus["root"] / "mean_ratings_set1.csv").read_text().splitlines()]
    keep = [rows[0]] + [r for r in rows[1:] if int(r[0]) - 1 in corpus["test"]]
    (st / "mean_ratings_set1.csv").write_text("\n".join(",".join(r) for r in keep) + "\n")
    for r in keep[1:]:
        shutil.copy(corpus["root"] / "audio" / f"{r[0]}.flac", st / f"{int(r[0]):03d}.flac")
    soundtracks = evaluate(model, st, resamples=0)
    midlevel = evaluate(model, corpus["root"], resamples=0)
    assert soundtracks["layout"] == "soundtracks" and "concepts" not in soundtracks
    assert soundtracks["unrated"] == list(MIDLEVEL_FEATURES) and soundtracks["targets"] == midlevel["targets"]


def test_resampling_by_piece_draws_whole_pieces():
    sets = resample_sets(["a", "a", "b", "c", "c", "c"], 6, resamples=20, seed=0)
    assert len(sets) == 20
    for idx in sets:
        counts = np.bincount(idx, minlength=6)
        assert counts[0] == counts[1] and counts[3] == counts[4] == counts[5]
    assert all(np.array_equal(a, b) for a, b in zip(sets, resample_sets(["a", "a", "b", "c", "c", "c"], 6, 20, 0)))


@pytest.mark.slow
def test_evaluate_reproduces_the_default_models_card_numbers():
    corpus, results_file = ROOT / "corpora" / "heldout", ROOT / "model_cards" / "results.json"
    if not (corpus / "corpus.json").is_file() or not results_file.is_file():
        pytest.skip("needs the held-out corpus (scripts/build_zoo.py builds it: corpora/heldout)")
    results = json.loads(results_file.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, sha256 = load_model(None)
    entry = next(e for e in results["zoo"].values() if e["sha256"] == sha256)
    card = results["family"][entry["source"]]["heldout_test"]
    result = evaluate(model, corpus, resamples=0)
    assert result["n"] == card["n"] and result["skipped"] == []
    for kind in ("concepts", "targets"):
        assert list(result[kind]) == list(card[kind])
        for name, row in card[kind].items():
            assert result[kind][name]["r"] == pytest.approx(row["r"], abs=1e-6)
            assert result[kind][name]["r2"] == pytest.approx(row["r2"], abs=1e-6)
