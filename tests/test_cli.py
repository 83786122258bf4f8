import json

import numpy as np
import soundfile as sf

import midlevel
from midlevel.cli import main


def test_explain_bundled_clip_prints_concepts_and_contributions(capsys, tmp_path):
    assert main(["explain", "--plot", str(tmp_path / "e.png")]) == 0
    out = capsys.readouterr().out
    assert "example.flac" in out and f"model: {midlevel.zoo.DEFAULT_MODEL}" in out
    assert "melodiousness" in out and "contributions" in out and "intercept" in out
    assert (tmp_path / "e.png").stat().st_size > 1000


def test_explain_json_is_additive(capsys):
    assert main(["explain", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for target, value in data["targets"].items():
        total = data["intercepts"][target] + sum(data["contributions"][target].values())
        assert abs(total - value) <= 1e-5


def test_predict_several_files_as_json(capsys, tmp_path):
    for name in ("a.wav", "b.ogg"):
        sf.write(tmp_path / name, np.random.default_rng(0).standard_normal(22050).astype(np.float32) * 0.1, 22050)
    assert main(["predict", "--json", str(tmp_path / "a.wav"), str(tmp_path / "b.ogg")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["source"].endswith(n) for d, n in zip(data, ("a.wav", "b.ogg"))] == [True, True]
    assert all(d["padded"] and "contributions" not in d for d in data)


def test_bad_input_exits_nonzero_with_one_line_naming_the_file(capsys, tmp_path):
    assert main(["explain", str(tmp_path / "missing.wav")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.wav" in err
    assert main(["predict", "--model", "no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_models_lists_the_zoo(capsys):
    assert main(["models"]) == 0
    assert capsys.readouterr().out.strip()


def test_explain_with_shap_baseline_prints_both_side_by_side(capsys, tmp_path):
    import torch

    from midlevel import ModelConfig
    from midlevel.model import BlackBoxModel

    torch.manual_seed(0)
    BlackBoxModel(ModelConfig(kind="black_box", name="a2e-test")).save_pretrained(tmp_path / "a2e")
    args = ["explain", "--baseline", "shap", "--baseline-model", str(tmp_path / "a2e"),
            "--shap-segments", "2x2", "--shap-max-evals", "20", "--json"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    text = json.dumps(data)
    assert "a2e-test" in text and "melodiousness" in text
    assert main(["explain", "--baseline", "shap"]) == 2  # no black box named
    assert "baseline" in capsys.readouterr().err


def test_corpus_build_command_resumes_and_builds_held_out_corpora(capsys, tmp_path):
    from midlevel.datasets import load_midlevel

    args = ["corpus", "build", "--out", str(tmp_path / "c"), "--n", "3", "--seconds", "2", "--seed", "5",
            "--only-split", "test"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["built"] == 3
    ds = load_midlevel(tmp_path / "c")
    assert len(ds.ratings) == 3 and set(ds.metadata["split"]) == {"test"} and not ds.missing_audio()
    assert ds.metadata["piece_id"].nunique() == 1  # three clips per piece by default
    assert main(args) == 0  # everything there: nothing rebuilt
    assert json.loads(capsys.readouterr().out)["skipped"] == 3
    assert main(["corpus", "build", "--out", str(tmp_path / "c"), "--n", "3", "--seconds", "2", "--seed", "6"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert main([*args[:2], "--out", str(tmp_path / "one"), *args[4:], "--clips-per-piece", "1"]) == 0
    assert load_midlevel(tmp_path / "one").metadata["piece_id"].nunique() > 1
