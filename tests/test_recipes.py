import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from midlevel import load
from midlevel.backbones import EXTENDS
from midlevel.cli import main
from midlevel.concepts import EMOTIONS, MIDLEVEL_FEATURES, OUTSIDE_CONCEPTS
from midlevel.datasets import DatasetError
from midlevel.datasets.controlled import outside_ratings
from midlevel.training.data import load_splits
from midlevel.model import BlackBoxModel, TwoStageModel


def write_layout(root, n=30, seed=0):
    """A small data set in the Mid-level layout: tones whose loudness/pitch carry the ratings."""
    rng = np.random.default_rng(seed)
    (root / "metadata_annotations").mkdir(parents=True)
    (root / "audio").mkdir()
    ratings = rng.uniform(1, 10, size=(n, 7))
    t = np.arange(22050) / 22050
    for i in range(n):
        wave = 0.05 * ratings[i, 0] * np.sin(2 * np.pi * (100 + 60 * ratings[i, 1]) * t)
        sf.write(root / "audio" / f"{i + 1}.flac", wave.astype(np.float32), 22050)
    header = "song_id," + ",".join(MIDLEVEL_FEATURES)
    rows = [f"{i + 1}," + ",".join(f"{v:.3f}" for v in r) for i, r in enumerate(ratings)]
    (root / "metadata_annotations" / "annotations.csv").write_text("\n".join([header, *rows]) + "\n")
    splits = ["train"] * 20 + ["val"] * 5 + ["test"] * 5
    meta = ["song id;Artist;Source;ID at file source;split"]
    meta += [f"{i + 1};artist{i % 10};synthetic;{i};{s}" for i, s in enumerate(splits)]
    (root / "metadata_annotations" / "metadata.csv").write_text("\n".join(meta) + "\n")
    targets = np.clip(5 + (ratings - 5.5) @ rng.normal(0, 0.3, (7, 8)), 1, 9)
    lines = ["number," + ",".join(EMOTIONS)] + [f"{i + 1}," + ",".join(f"{v:.3f}" for v in r)
                                                  for i, r in enumerate(targets)]
    (root / "mean_ratings_set1.csv").write_text("\n".join(lines) + "\n")


def test_train_command_builds_the_whole_family_and_resumes(tmp_path, capsys):
    write_layout(tmp_path / "data")
    args = ["train", "--corpus", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
            "--epochs", "2", "--batch-size", "8"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "A2E" in out and "A2Mid2E-Joint" in out
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    expected = {"a2mid", "a2mid2e-linear", "independent-linear", "joint-linear",
                "a2mid2e-gam", "independent-gam", "joint-gam", "a2e"}
    assert set(results["models"]) == expected
    joint = results["models"]["joint-gam"]
    assert set(joint["test"]["concepts"]) == {*MIDLEVEL_FEATURES, "mean"}
    assert joint["test"]["n"] == 5 and joint["epochs"] == 2
    assert isinstance(load(tmp_path / "out" / "models" / "a2e"), BlackBoxModel)
    model = load(tmp_path / "out" / "models" / "joint-gam")
    assert isinstance(model, TwoStageModel) and model.config.head == "gam" and model.name == "joint-gam"
    expl = model.explain(tmp_path / "data" / "audio" / "1.flac")
    assert abs(expl.contributions.sum(1) + expl.intercept - expl.targets).max() <= 1e-5
    before = (tmp_path / "out" / "results.json").read_bytes()
    assert main(args) == 0  # everything finished: nothing is retrained
    assert (tmp_path / "out" / "results.json").read_bytes() == before


def write_factors(root, n=30, seed=5):
    """The three factors.csv columns the outside concepts come from, as the controlled corpus samples them."""
    rng = np.random.default_rng(seed)
    factors = pd.DataFrame({"song_id": np.arange(1, n + 1), "velocity": rng.uniform(30, 118, n),
                            "tempo_bpm": np.exp(rng.uniform(np.log(50), np.log(170), n)),
                            "transpose": rng.integers(-12, 13, n)})
    factors.to_csv(root / "factors.csv", index=False)
    return factors


def test_outside_concepts_come_from_the_factors_table(tmp_path):
    write_layout(tmp_path / "data")
    with pytest.raises(DatasetError, match="factors.csv"):
        load_splits(tmp_path / "data", concepts=["melodiousness", "loudness"])
    with pytest.raises(ValueError, match="unknown concept"):
        load_splits(tmp_path / "data", concepts=["melodiousness", "brightness"])
    factors = write_factors(tmp_path / "data")
    plain = load_splits(tmp_path / "data")["val"]
    both = load_splits(tmp_path / "data", concepts=["tempo", "dissonance"])["val"]
    assert both.concept_names == ["tempo", "dissonance"] and both.ids == plain.ids
    rows = [int(i) - 1 for i in both.ids]
    np.testing.assert_allclose(both.concepts[:, 0], outside_ratings(factors)[rows, 1])
    np.testing.assert_allclose(both.concepts[:, 1], plain.concepts[:, MIDLEVEL_FEATURES.index("dissonance")])


def test_joint_only_family_with_outside_concepts(tmp_path):
    write_layout(tmp_path / "data")
    write_factors(tmp_path / "data")
    args = ["train", "--corpus", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--epochs", "1",
            "--batch-size", "8", "--heads", "", "--joint-heads", "linear", "--no-a2e", "--outside-concepts"]
    assert main(args) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results["models"]) == {"joint-linear"}  # no concept model, no sequential heads, no black box
    ten = [*MIDLEVEL_FEATURES, *OUTSIDE_CONCEPTS]
    assert set(results["models"]["joint-linear"]["test"]["concepts"]) == {*ten, "mean"}
    model = load(tmp_path / "out" / "models" / "joint-linear")
    assert model.config.concept_names == ten
    expl = model.explain(tmp_path / "data" / "audio" / "1.flac")
    assert expl.contributions.shape == (len(EMOTIONS), 10)
    assert abs(expl.contributions.sum(-1) + expl.intercept - expl.targets).max() <= 1e-5


def test_note_rolls_need_a_controlled_corpus_and_say_so(tmp_path, capsys):
    write_layout(tmp_path / "data")
    args = ["train", "--corpus", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--epochs", "1",
            "--backbone", "compact_transcribe", "--roll-weight", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "corpus.json" in err and "controlled corpus" in err


def test_warm_start_copies_a_trained_model_and_refuses_another_architecture(tmp_path):
    from midlevel.config import ModelConfig
    from midlevel.training.recipes import warm_start

    torch = pytest.importorskip("torch")
    wave = np.random.default_rng(0).normal(0, 0.1, 22050).astype(np.float32)
    for kind, cls in (("two_stage", TwoStageModel), ("black_box", BlackBoxModel)):
        torch.manual_seed(1)
        init = cls(ModelConfig(kind=kind, backbone="compact"))
        init.set_input_normalization(torch.full((149,), -3.0), torch.full((149,), 2.0))
        torch.manual_seed(2)
        fresh = cls(ModelConfig(kind=kind, backbone="compact"))
        if kind == "two_stage":
            assert not np.allclose(fresh.predict(wave, sample_rate=22050).targets, init.predict(wave, sample_rate=22050).targets)
            warm = warm_start(fresh, init)
            np.testing.assert_array_equal(warm.predict(wave, sample_rate=22050).targets, init.predict(wave, sample_rate=22050).targets)
            np.testing.assert_array_equal(warm.predict(wave, sample_rate=22050).concepts, init.predict(wave, sample_rate=22050).concepts)
        else:
            warm = warm_start(fresh, init)
            np.testing.assert_array_equal(warm.predict_targets(wave, sample_rate=22050), init.predict_targets(wave, sample_rate=22050))
    # another head type: backbone and concepts are copied, the head is not
    torch.manual_seed(3)
    init = TwoStageModel(ModelConfig(backbone="compact"))
    gam = warm_start(TwoStageModel(ModelConfig(backbone="compact", head="gam")), init)
    np.testing.assert_array_equal(gam.predict(wave, sample_rate=22050).concepts, init.predict(wave, sample_rate=22050).concepts)
    assert type(gam.head) is not type(init.head)
    with pytest.raises(ValueError, match="backbone"):
        warm_start(TwoStageModel(ModelConfig(backbone="compact_music")), init)
    with pytest.raises(ValueError, match="kind"):
        warm_start(BlackBoxModel(ModelConfig(kind="black_box", backbone="compact")), init)


@pytest.mark.parametrize("extended, base", sorted(EXTENDS.items()))
def test_an_extended_backbone_warm_starts_from_the_one_it_extends_and_only_that_way(extended, base):
    from midlevel.config import ModelConfig
    from midlevel.training.recipes import warm_start

    torch = pytest.importorskip("torch")
    wave = np.random.default_rng(0).normal(0, 0.1, 3 * 22050).astype(np.float32)
    torch.manual_seed(1)
    init = TwoStageModel(ModelConfig(backbone=base, window_seconds=3.0, hop_seconds=1.5))
    init.set_input_normalization(torch.full((149,), -3.0), torch.full((149,), 2.0))
    torch.manual_seed(2)
    fresh = TwoStageModel(ModelConfig(backbone=extended, window_seconds=3.0, hop_seconds=1.5))
    base_keys = set(init.backbone.state_dict())
    added = {k: v.clone() for k, v in fresh.backbone.state_dict().items() if k not in base_keys}
    assert added  # the extension adds modules
    warm = warm_start(fresh, init).eval()
    init.eval()
    a, b = init.predict(wave, sample_rate=22050), warm.predict(wave, sample_rate=22050)
    np.testing.assert_allclose(b.concepts, a.concepts, atol=1e-5, rtol=0)  # the added stage starts at zero
    np.testing.assert_allclose(b.targets, a.targets, atol=1e-5, rtol=0)
    state = warm.backbone.state_dict()
    for k, v in added.items():
        torch.testing.assert_close(state[k], v)  # the added modules keep their own start
    with pytest.raises(ValueError, match="backbone"):
        warm_start(TwoStageModel(ModelConfig(backbone=base, window_seconds=3.0, hop_seconds=1.5)), warm)


def test_train_command_warm_starts_from_a_model_and_records_it(tmp_path):
    from midlevel.zoo import weights_sha256

    write_layout(tmp_path / "data")
    base = ["train", "--corpus", str(tmp_path / "data"), "--epochs", "1", "--batch-size", "8",
            "--heads", "", "--joint-heads", "linear", "--no-a2e"]
    assert main([*base, "--out", str(tmp_path / "first")]) == 0
    first = tmp_path / "first" / "models" / "joint-linear"
    assert main([*base, "--out", str(tmp_path / "second"), "--init-from", str(first)]) == 0
    second = load(tmp_path / "second" / "models" / "joint-linear")
    assert second.config.metadata["init_from"] == {"model": str(first), "weights_sha256": weights_sha256(first)}
    with pytest.raises(ValueError, match="backbone"):
        main([*base, "--out", str(tmp_path / "third"), "--init-from", str(first), "--backbone", "compact_music"])


def test_rating_ingredients_are_read_in_order_and_bad_tables_are_named(tmp_path):
    from midlevel.datasets.controlled.ratings import INGREDIENT_COLUMNS
    from midlevel.training.recipes import read_ingredients

    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(3, len(INGREDIENT_COLUMNS))), columns=list(INGREDIENT_COLUMNS))
    table.insert(0, "song_id", ["7", "8", "9"])
    table.to_csv(tmp_path / "factors.csv", index=False)
    got = read_ingredients(tmp_path, [9, 7])
    np.testing.assert_allclose(got, table.iloc[[2, 0], 1:].to_numpy())
    with pytest.raises(DatasetError, match=r"factors.csv.*no row for clips \['10'\]"):
        read_ingredients(tmp_path, [7, 10])
    table.loc[1, "rubato"] = np.nan
    table.to_csv(tmp_path / "factors.csv", index=False)
    with pytest.raises(DatasetError, match="clip 8: rubato is not a finite number"):
        read_ingredients(tmp_path, [7, 8])
    table.drop(columns=["m_syncopation"]).to_csv(tmp_path / "factors.csv", index=False)
    with pytest.raises(DatasetError, match=r"no column \['m_syncopation'\]"):
        read_ingredients(tmp_path, [7])
    with pytest.raises(DatasetError, match="controlled corpus"):
        read_ingredients(tmp_path / "elsewhere", [7])
