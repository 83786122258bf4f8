"""Fine-tuning: new and unchanged concept sets, every mode, the model card, resume, and bad input.

Base models here are small random ones (1 s windows, so an epoch takes about a second); whether
pretrained backbones beat training from scratch is measured by benchmarks/finetune_vs_scratch.py.
"""

import argparse
import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import kill_when_written

from midlevel import ModelConfig, TwoStageModel, load
from midlevel.checkpoint import ModelLoadError
from midlevel.cli import add_finetune_parser
from midlevel.concepts import MIDLEVEL_FEATURES
from midlevel.config import FrontendConfig
from midlevel.datasets import DatasetError
from midlevel.model import BlackBoxModel
from midlevel.training.annotations import read_finetune_annotations
from midlevel.training.finetune import FinetuneError, finetune

NEW = ["flow", "pulse", "busyness", "darkness"]
FAST = dict(epochs=2, batch_size=8, progress=False)


def tones(ratings, seed):
    """One second of sound per row whose loudness, pitch and noise follow the first three ratings."""
    rng = np.random.default_rng(seed)
    t = np.arange(22050) / 22050
    for r in ratings:
        wave = 0.04 * r[0] * np.sin(2 * np.pi * (100 + 60 * r[1]) * t) + 0.01 * r[2] * rng.normal(size=t.size)
        yield wave.astype(np.float32)


def write_midlevel(root, names=NEW, n=24, seed=0, rate=22050):
    """Mid-level layout: annotations.csv (song_id + names), semicolon metadata.csv with 8 artists, audio/."""
    rng = np.random.default_rng(seed)
    ratings = rng.uniform(1, 10, size=(n, len(names)))
    (root / "metadata_annotations").mkdir(parents=True)
    (root / "audio").mkdir()
    for i, wave in enumerate(tones(ratings, seed)):
        sf.write(root / "audio" / f"{i + 1}.flac", wave, rate)
    lines = ["song_id," + ",".join(names)]
    lines += [f"{i + 1}," + ",".join(f"{v:.2f}" for v in r) for i, r in enumerate(ratings)]
    (root / "metadata_annotations" / "annotations.csv").write_text("\n".join(lines) + "\n")
    meta = ["song id;Artist;Source"] + [f"{i + 1};artist {i % 8};synthetic" for i in range(n)]
    (root / "metadata_annotations" / "metadata.csv").write_text("\n".join(meta) + "\n")
    return root / "metadata_annotations" / "annotations.csv", root / "audio", ratings


def write_generic(root, names, n=24, seed=1, targets=("valence", "energy")):
    """Generic layout: a file column (paths in a subfolder) plus rating columns; targets in a second CSV."""
    rng = np.random.default_rng(seed)
    ratings = rng.uniform(1, 10, size=(n, len(names)))
    (root / "clips").mkdir(parents=True)
    for i, wave in enumerate(tones(ratings, seed)):
        sf.write(root / "clips" / f"c{i}.wav", wave, 22050)
    lines = ["File," + ",".join(names)] + [f"clips/c{i}.wav," + ",".join(f"{v:.2f}" for v in r)
                                          for i, r in enumerate(ratings)]
    (root / "ratings.csv").write_text("\n".join(lines) + "\n")
    y = np.clip(1 + 7 * (ratings[:, :len(targets)] - 1) / 9, 1, 9)
    lines = ["file," + ",".join(targets)] + [f"clips/c{i}.wav," + ",".join(f"{v:.2f}" for v in r)
                                            for i, r in enumerate(y)]
    (root / "targets.csv").write_text("\n".join(lines) + "\n")
    return root / "ratings.csv", root, root / "targets.csv"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A random two-stage base with 1 s windows, its input normalised like the test sounds, saved as a folder."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("base") / "tiny-base"
    model = TwoStageModel(ModelConfig(window_seconds=1.0, hop_seconds=0.5, name="tiny-base"))
    spec = model.frontend.log_spectrogram(torch.from_numpy(np.stack(list(tones(np.full((4, 3), 5.0), 0)))))
    model.frontend.set_normalization(spec.mean(dim=(0, 2)), spec.std(dim=(0, 2)))
    model.save_pretrained(path)
    return path


def run_cli(argv):
    parser = argparse.ArgumentParser()
    add_finetune_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_new_concepts_give_a_loadable_model_that_explains_with_the_new_names(base, tmp_path, capsys):
    annotations, audio, _ = write_midlevel(tmp_path / "data")
    out = tmp_path / "tuned"
    assert run_cli(["finetune", "--base", str(base), "--annotations", str(annotations), "--audio-dir", str(audio),
                    "--out", str(out), "--epochs", "2", "--batch-size", "8"]) == 0
    assert "| flow |" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["data", "tuned"]  # the staging folder is gone
    model = load(out)
    assert model.config.concept_names == NEW and model.config.target_names == NEW
    expl = model.explain(audio / "1.flac")
    assert list(expl.to_frame().columns[:4]) == NEW
    np.testing.assert_allclose(expl.contributions, np.diag(expl.concepts), atol=1e-6)  # identity head
    assert any("identity" in note for note in expl.notes)
    result = json.loads((out / "finetune.json").read_text())
    assert result["concepts_changed"] and result["head"]["action"] == "identity"
    assert result["training"]["epochs_run"] == 2
    assert result["split"]["by"] == "artist" and sum(result["split"]["sizes"].values()) == 24
    for when in ("before", "after"):
        assert set(result["metrics"][when]["test"]["concepts"]) == {*NEW, "mean"}
        assert "targets" not in result["metrics"][when]["test"]
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "## Metrics on the held-out test part" in card
    assert "24 rated clips" in card and "flow, pulse, busyness, darkness" in card
    yaml = pytest.importorskip("yaml")
    front = yaml.safe_load(card.split("---\n")[1])
    metrics = front["model-index"][0]["results"][0]["metrics"]
    assert [m["name"] for m in metrics] == [f"{c} r" for c in NEW] + ["mean concept r"]
    assert metrics[0]["value"] == pytest.approx(result["metrics"]["after"]["test"]["concepts"]["flow"]["r"], abs=1e-4,
                                                nan_ok=True)


def test_same_concepts_continue_from_the_base_and_refit_the_head(base, tmp_path):
    shuffled = list(reversed(MIDLEVEL_FEATURES))
    annotations, audio, targets = write_generic(tmp_path / "data", shuffled)
    out = tmp_path / "head-only"
    result = finetune(base, annotations, audio, out, targets=targets, mode="head", **FAST)
    model, base_model = load(out), load(base)
    assert model.config.concept_names == list(MIDLEVEL_FEATURES)  # the base's order, not the CSV's
    assert model.config.target_names == ["valence", "energy"] and model.config.target_scale == (1.0, 9.0)
    for name, tensor in base_model.state_dict().items():
        if not name.startswith("head."):
            assert torch.equal(tensor, model.state_dict()[name]), name
    assert result["training"] is None and result["split"]["by"] == "file"
    for when in ("before", "after"):
        assert set(result["metrics"][when]["test"]["targets"]) == {"valence", "energy", "mean"}
    expl = model.explain(audio / "clips" / "c0.wav")
    assert abs(expl.contributions.sum(1) + expl.intercept - expl.targets).max() < 1e-5


@pytest.mark.parametrize("mode", ["freeze", "joint"])
def test_freeze_keeps_the_backbone_and_joint_trains_everything(base, tmp_path, mode):
    annotations, audio, _ = write_midlevel(tmp_path / "data", names=[*NEW, "tension", "calm"])
    result = finetune(base, annotations, audio, tmp_path / mode, mode=mode, target_columns=["tension", "calm"],
                      target_scale=(1, 10), head="gam", **FAST)
    model, base_model = load(tmp_path / mode), load(base)
    assert model.config.concept_names == NEW and model.config.target_names == ["tension", "calm"]
    assert model.config.head == "gam"
    same = [torch.equal(t, model.backbone.state_dict()[n]) for n, t in base_model.backbone.state_dict().items()]
    if mode == "freeze":
        assert all(same) and result["training"] is None
    else:
        assert result["training"]["setup"] == "joint" and result["training"]["epochs_run"] == 2
        assert not all(same) or result["training"]["kept_start"]
    assert set(result["metrics"]["after"]["val"]["targets"]) == {"tension", "calm", "mean"}


def test_an_interrupted_run_resumes_and_other_arguments_are_refused(base, tmp_path):
    annotations, audio, _ = write_midlevel(tmp_path / "data")
    out, partial = tmp_path / "tuned", tmp_path / "tuned.partial"
    call = (f"import torch; torch.set_num_threads(1); from midlevel.training.finetune import finetune; "
            f"finetune({str(base)!r}, {str(annotations)!r}, {str(audio)!r}, {str(out)!r}, epochs=5, patience=20, "
            f"batch_size=8, progress=False)")
    state_file = partial / "run" / "state.json"
    kill_when_written(call, state_file, 60)
    killed = json.loads(state_file.read_text())
    assert killed["epoch"] < 4 and not out.exists()  # stopped part-way; nothing at --out
    listing = sorted(p.name for p in partial.rglob("*"))
    with pytest.raises(FinetuneError, match="other arguments.*differing: settings"):
        finetune(base, annotations, audio, out, epochs=6, patience=20, batch_size=8, progress=False)
    assert sorted(p.name for p in partial.rglob("*")) == listing
    result = finetune(base, annotations, audio, out, epochs=5, patience=20, batch_size=8, progress=False)
    history = result["training"]["history"]
    assert len(history) == 5 and history[:killed["epoch"] + 1] == killed["history"]  # kept, not redone
    assert not partial.exists() and load(out).config.concept_names == NEW


def test_an_existing_out_is_refused_or_replaced_whole(base, tmp_path):
    annotations, audio, _ = write_midlevel(tmp_path / "data")
    out = tmp_path / "tuned"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FinetuneError, match="exists and is not empty; pass --overwrite"):
        finetune(base, annotations, audio, out, mode="freeze", progress=False)
    assert os.listdir(out) == ["keep.txt"] and not (tmp_path / "tuned.partial").exists()
    finetune(base, annotations, audio, out, mode="freeze", overwrite=True, progress=False)
    assert "keep.txt" not in os.listdir(out) and load(out).config.concept_names == NEW
    assert sorted(os.listdir(tmp_path)) == ["data", "tuned"]


def _replace_cell(path, line, column, value):
    rows = [r.split(",") for r in path.read_text().splitlines()]
    rows[line - 1][rows[0].index(column)] = value
    path.write_text("\n".join(",".join(r) for r in rows) + "\n")


def _keep_rows(annotations, n, metadata=True):
    annotations.write_text("\n".join(annotations.read_text().splitlines()[:n + 1]) + "\n")
    if not metadata:
        (annotations.parent / "metadata.csv").unlink()


def _spoil_missing(annotations, audio):
    for name in ("3.flac", "7.flac", "20.flac"):
        (audio / name).unlink()


def _spoil_duplicate(annotations, audio):
    _replace_cell(annotations, 6, "song_id", "2")


BAD_INPUTS = {
    "missing audio": (_spoil_missing, DatasetError,
                      r"audio missing for 3 of 24 annotated clip\(s\): 3.flac, 7.flac, 20.flac"),
    "not a number": (lambda a, _: _replace_cell(a, 4, "pulse", "abc"), DatasetError,
                     r"annotations.csv, line 4, column 'pulse': concept rating: 'abc' is not a number"),
    "NaN rating": (lambda a, _: _replace_cell(a, 9, "darkness", "NaN"), DatasetError,
                   r"line 9, column 'darkness': concept rating: missing value 'NaN'"),
    "outside the scale": (lambda a, _: _replace_cell(a, 2, "flow", "12"), DatasetError,
                          r"line 2, column 'flow': concept rating: 12 is outside the scale 1-10"),
    "duplicate id": (_spoil_duplicate, DatasetError,
                     r"line 6, column 'song_id': duplicate id '2' \(first on line 3\)"),
    "too few rows": (lambda a, _: _keep_rows(a, 6), DatasetError, r"too few rows to split: 6 rated clip\(s\)"),
    "too few rows per part": (lambda a, _: _keep_rows(a, 10, metadata=False), DatasetError,
                              r"the split by file of 10 clip\(s\) leaves \{'val': 2, 'test': 1\}"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_named_and_nothing_is_written(base, tmp_path, case):
    spoil, error, message = BAD_INPUTS[case]
    annotations, audio, _ = write_midlevel(tmp_path / "data")
    spoil(annotations, audio)
    with pytest.raises(error, match=message):
        finetune(base, annotations, audio, tmp_path / "out", progress=False)
    assert sorted(os.listdir(tmp_path)) == ["data"]


def test_duplicate_files_in_the_generic_layout_are_one_clip(base, tmp_path):
    annotations, audio, _ = write_generic(tmp_path / "data", NEW)
    _replace_cell(annotations, 5, "File", "./clips/c0.wav")
    message = r"line 5, column 'File': duplicate id './clips/c0.wav' \(first on line 2\)"
    with pytest.raises(DatasetError, match=message):
        finetune(base, annotations, audio, tmp_path / "out", progress=False)
    assert sorted(os.listdir(tmp_path)) == ["data"]


def test_targets_from_a_soundtracks_style_file_are_matched_by_number(tmp_path):
    annotations, audio, _ = write_midlevel(tmp_path / "data", n=12)
    lines = ["Number,valence,energy"] + [f"{i},{1 + i % 9},{9 - i % 9}" for i in range(12, 0, -1)]
    (tmp_path / "targets.csv").write_text("\n".join(lines) + "\n")
    data = read_finetune_annotations(annotations, audio, concept_scale=(1, 10), target_scale=(1, 9),
                                     targets_file=tmp_path / "targets.csv")
    assert list(data.targets.columns) == ["valence", "energy"]
    assert data.targets.loc["3"].tolist() == [4.0, 6.0] and list(data.targets.index) == data.ids
    assert data.artists.loc["9"] == "artist 0" and data.paths[0] == audio / "1.flac"


def test_audio_below_the_base_models_rate_is_refused(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(window_seconds=1.0, hop_seconds=0.5, frontend=FrontendConfig(sample_rate=44100))
    TwoStageModel(cfg).save_pretrained(tmp_path / "base44k")
    annotations, audio, _ = write_midlevel(tmp_path / "data")
    sf.write(audio / "5.flac", np.zeros(16000, np.float32), 16000)
    with pytest.raises(DatasetError, match=r"24 audio file\(s\) are sampled below the base model's 44100 Hz "
                                           r"\(16000 Hz: 5.flac; 22050 Hz: 1.flac, 2.flac, 3.flac, 4.flac, 6.flac, "):
        finetune(tmp_path / "base44k", annotations, audio, tmp_path / "out", progress=False)
    assert sorted(os.listdir(tmp_path)) == ["base44k", "data"]


def test_options_that_cannot_work_and_black_box_bases_are_refused(base, tmp_path):
    annotations, audio, _ = write_midlevel(tmp_path / "data")
    with pytest.raises(FinetuneError, match="mode 'joint' needs target ratings"):
        finetune(base, annotations, audio, tmp_path / "out", mode="joint", progress=False)
    with pytest.raises(FinetuneError, match="mode 'head' keeps the base model's concepts"):
        finetune(base, annotations, audio, tmp_path / "out", mode="head", progress=False)
    BlackBoxModel(ModelConfig(kind="black_box", window_seconds=1.0)).save_pretrained(tmp_path / "a2e")
    with pytest.raises(ModelLoadError, match="is a black_box model; fine-tuning needs a two-stage model"):
        finetune(tmp_path / "a2e", annotations, audio, tmp_path / "out", progress=False)
    assert sorted(os.listdir(tmp_path)) == ["a2e", "data"]
