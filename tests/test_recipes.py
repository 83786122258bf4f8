import json

import numpy as np
import soundfile as sf

from midlevel import load
from midlevel.cli import main
from midlevel.concepts import EMOTIONS, MIDLEVEL_FEATURES
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
