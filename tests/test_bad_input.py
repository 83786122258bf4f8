"""Bad input, table-driven: every refusal a user can cause is one line (or one line per problem) at the
command line, exit code 2, no traceback, and nothing half-written left behind.

Each row: what to run (an argv for ``midlevel.cli.main``, built from the shared files), the exit code, text
the message must contain, and paths that must not exist afterwards. Fine-tuning rows are refused before any
work, so they cost a table read and a decode of 24 one-second clips. Issue 29's classes, in order:
validation before work (fine-tuning), model folders, output places, audio paths, names.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from midlevel import ModelConfig, TwoStageModel
from midlevel.cli import main
from midlevel.concepts import MIDLEVEL_FEATURES
from midlevel.errors import MidlevelError, Refusals
from midlevel.ioutil import input_file_problem, output_path_problem
from midlevel.model import BlackBoxModel
from midlevel.training.annotations import read_finetune_annotations
from midlevel.training.finetune import FinetuneError, open_staging

NEW = ["flow", "pulse", "busyness", "darkness"]


def _tones(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(22050) / 22050
    return np.stack([0.1 * np.sin(2 * np.pi * (100 + 40 * i) * t) + 0.01 * rng.normal(size=t.size)
                     for i in range(n)]).astype(np.float32)


def _ratings_csv(path: Path, id_column: str, ids: list[str], names: list[str], seed: int) -> None:
    values = np.random.default_rng(seed).uniform(1, 10, size=(len(ids), len(names)))
    lines = [",".join([id_column, *names])] + [",".join([i, *(f"{v:.2f}" for v in row)])
                                               for i, row in zip(ids, values)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A tiny base (1 s windows), a tiny black box, Mid-level-layout ratings of 24 clips (new concepts), and a
    generic ratings file with the base's seven concepts plus one stray numeric column."""
    root = tmp_path_factory.mktemp("world")
    torch.manual_seed(0)
    TwoStageModel(ModelConfig(window_seconds=1.0, hop_seconds=0.5, name="tiny-base")).save_pretrained(root / "base")
    BlackBoxModel(ModelConfig(kind="black_box", window_seconds=1.0, hop_seconds=0.5)).save_pretrained(root / "a2e")
    (root / "ml" / "metadata_annotations").mkdir(parents=True)
    (root / "ml" / "audio").mkdir()
    for i, wave in enumerate(_tones(24, 0)):
        sf.write(root / "ml" / "audio" / f"{i + 1}.flac", wave, 22050)
    _ratings_csv(root / "ml" / "metadata_annotations" / "annotations.csv", "song_id",
                 [str(i + 1) for i in range(24)], NEW, 0)
    meta = ["song id;Artist"] + [f"{i + 1};artist {i % 8}" for i in range(24)]
    (root / "ml" / "metadata_annotations" / "metadata.csv").write_text("\n".join(meta) + "\n")
    _ratings_csv(root / "ml" / "extra.csv", "song_id", [str(i + 1) for i in range(24)],
                 [*MIDLEVEL_FEATURES, "loudness"], 1)
    text = (root / "ml" / "metadata_annotations" / "annotations.csv").read_text()
    (root / "ml" / "metadata_annotations" / "utf16.csv").write_text(text, encoding="utf-16")
    clip = root / "clip.flac"
    sf.write(clip, _tones(1, 1)[0], 22050)
    (root / "a-file").write_text("not a folder")
    return root


# -- the rows ------------------------------------------------------------------------------------------
def finetune_argv(w: Path, out: Path, *extra: str, annotations: str = "ml/metadata_annotations/annotations.csv",
                  audio: Path | None = None) -> list[str]:
    return ["finetune", "--base", str(w / "base"), "--annotations", str(w / annotations),
            "--audio-dir", str(audio or w / "ml" / "audio"), "--out", str(out), *extra]


def spoiled_table(w: Path, t: Path) -> list[str]:
    """Bad cells in three columns and a duplicate id: all named in one run."""
    data = shutil.copytree(w / "ml", t / "ml")
    csv = data / "metadata_annotations" / "annotations.csv"
    rows = [r.split(",") for r in csv.read_text().splitlines()]
    rows[3][2], rows[12][2], rows[8][4], rows[10][1], rows[6][0] = "abc", "x", "NaN", "12", "2"
    csv.write_text("\n".join(",".join(r) for r in rows) + "\n")
    return finetune_argv(w, t / "out", annotations=str(csv), audio=data / "audio")


def spoiled_audio(w: Path, t: Path) -> list[str]:
    """Missing, empty, not audio, cut short, a folder: all named in one run (the cut one needs a decode)."""
    audio = shutil.copytree(w / "ml" / "audio", t / "audio")
    (audio / "3.flac").write_bytes(b"")
    (audio / "5.flac").write_text("garbage")
    (audio / "7.flac").write_bytes((audio / "7.flac").read_bytes()[:3000])
    (audio / "9.flac").unlink()
    (audio / "11.flac").unlink()
    (audio / "11.flac").mkdir()
    return finetune_argv(w, t / "out", audio=audio)


def model_variant(change):
    """A copy of the base whose config.json is changed by ``change(model_dict)``; predict with it."""
    def setup(w: Path, t: Path) -> list[str]:
        folder = shutil.copytree(w / "base", t / "model")
        payload = json.loads((folder / "config.json").read_text())
        change(payload["model"])
        (folder / "config.json").write_text(json.dumps(payload))
        return ["predict", "--model", str(folder), str(w / "clip.flac")]
    return setup


def predict(path_of) -> callable:
    """``midlevel predict`` with the tiny base on the path ``path_of(world, tmp)`` makes."""
    return lambda w, t: ["predict", "--model", str(w / "base"), str(path_of(w, t))]


def _fifo(w: Path, t: Path) -> Path:
    os.mkfifo(t / "stream.wav")
    return t / "stream.wav"


def _loop(w: Path, t: Path) -> Path:
    (t / "a.wav").symlink_to(t / "b.wav")
    (t / "b.wav").symlink_to(t / "a.wav")
    return t / "a.wav"


def _broken(w: Path, t: Path) -> Path:
    (t / "gone.wav").symlink_to(t / "nowhere.wav")
    return t / "gone.wav"


def _unreadable(w: Path, t: Path) -> Path:
    path = Path(shutil.copy(w / "clip.flac", t / "locked.flac"))
    path.chmod(0)
    return path


def _stale_partial(w: Path, t: Path) -> list[str]:
    """An interrupted run that had started training, with other arguments: refused, and left as it was."""
    partial = t / "out.partial"
    (partial / "run").mkdir(parents=True)
    (partial / "request.json").write_text('{"settings": {"epochs": 3}}\n')
    (partial / "run" / "state.json").write_text("{}\n")
    return finetune_argv(w, t / "out")


MANY = ("--batch-size", "0", "--lr", "nan", "--epochs", "-3", "--patience", "-1", "--joint-weight", "1.5",
        "--seed", "-1", "--split", "0.5,0.5,0.5", "--concept-scale", "5,1")

#: id: (argv from (world, tmp), exit code, texts the error must contain, paths under tmp that must not exist)
ROWS = {
    # -- fine-tuning: every argument, the whole table, every clip, before anything is written --------------
    "finetune --batch-size 0": (lambda w, t: finetune_argv(w, t / "out", "--batch-size", "0"), 2,
                                ["batch_size (--batch-size) must be a whole number >= 1; got 0"],
                                ["out", "out.partial"]),
    "finetune --lr nan": (lambda w, t: finetune_argv(w, t / "out", "--lr", "nan"), 2,
                          ["lr (--lr), the learning rate, must be a positive number; got nan"], ["out.partial"]),
    "finetune --epochs -3": (lambda w, t: finetune_argv(w, t / "out", "--epochs", "-3"), 2,
                             ["epochs (--epochs) must be a whole number >= 1; got -3"], ["out.partial"]),
    "finetune --epochs 0": (lambda w, t: finetune_argv(w, t / "out", "--epochs", "0"), 2,
                            ["epochs (--epochs) must be a whole number >= 1; got 0"], ["out.partial"]),
    "finetune every bad argument at once": (
        lambda w, t: finetune_argv(w, t / "out", *MANY), 2,
        ["8 problems (nothing was written)", "--batch-size", "--lr", "--epochs", "patience (--patience) must be a "
         "whole number >= 0; got -1", "joint_weight (--joint-weight) must be a number from 0 to 1; got 1.5",
         "seed (--seed)", "three non-negative train,val,test fractions summing to 1; got [0.5, 0.5, 0.5]",
         "a rating scale is (low, high) with low < high; got (5.0, 1.0)"], ["out", "out.partial"]),
    "finetune --out under a file": (lambda w, t: finetune_argv(w, w / "a-file" / "out"), 2,
                                    ["cannot write the output model there: cannot create a folder here",
                                     "a-file is a file, not a folder"], []),
    "finetune --cache-dir under a file": (
        lambda w, t: finetune_argv(w, t / "out", "--cache-dir", str(w / "a-file" / "cache")), 2,
        ["cannot write the spectrogram cache there (--cache-dir)"], ["out", "out.partial"]),
    "finetune: every bad cell and id of the table": (
        spoiled_table, 2,
        ["4 problems (nothing was written)", "line 7, column 'song_id': duplicate id '2' (first on line 3)",
         "line 4, column 'pulse': concept rating: 'abc' is not a number (1 more bad value(s) in this column, on "
         "line(s) 13)", "line 9, column 'darkness': concept rating: missing value 'NaN'",
         "line 11, column 'flow': concept rating: 12 is outside the scale 1-10"], ["out", "out.partial"]),
    "finetune: every bad clip": (
        spoiled_audio, 2,
        ["audio missing for 1 of 24 annotated clip(s): 9.flac", "4 audio file(s) cannot be decoded",
         "11.flac (is a directory, not an audio file)", "3.flac (file is empty (0 bytes))",
         "5.flac (cannot decode audio (Format not recognised.)", "7.flac (cannot decode audio ("],
        ["out", "out.partial"]),
    "finetune: a stray numeric column": (
        lambda w, t: finetune_argv(w, t / "out", annotations="ml/extra.csv"), 2,
        ["extra.csv: column 'loudness' is not a concept of the base model, while the other rating columns are "
         "its 7 concepts", "lose the base's head", "--concepts melodiousness,", ",minorness,loudness learns it "
         "as an added concept", "--target-columns loudness reads it as a target rating"], ["out", "out.partial"]),
    "finetune: a UTF-16 table is read": (  # the one problem left is the argument
        lambda w, t: finetune_argv(w, t / "out", "--epochs", "0",
                                   annotations="ml/metadata_annotations/utf16.csv"), 2,
        ["midlevel: error: epochs (--epochs) must be a whole number >= 1; got 0\n"], ["out.partial"]),
    "finetune: a started run with other arguments": (
        _stale_partial, 2, ["holds an unfinished fine-tuning run with other arguments",
                            "re-run it with the same arguments to resume, or pass --overwrite"], ["out"]),
    "finetune: a mistyped base name": (
        lambda w, t: finetune_argv(w, t / "out", "--base", "transcribe-measures-linar-10-48k"), 2,
        ["did you mean 'transcribe-measures-linear-10-48k'?"], ["out", "out.partial"]),
    # -- model folders: one line naming the file and the field ---------------------------------------------
    "config: 5 concepts over 7-concept weights": (
        model_variant(lambda m: m.update(concept_names=m["concept_names"][:5])), 2,
        ["model/config.json: concept_names lists 5 name(s), but the concept layer in model.safetensors has 7"],
        []),
    "config: 3 targets over 8": (
        model_variant(lambda m: m.update(target_names=["a", "b", "c"])), 2,
        ["model/config.json: target_names lists 3 name(s), but the head in model.safetensors has 8"], []),
    "config: unknown backbone": (
        model_variant(lambda m: m.update(backbone="resnet9000")), 2,
        ["model/config.json: backbone: unknown backbone 'resnet9000'; choose from ['compact'"], []),
    "config: a string for a number": (
        model_variant(lambda m: m.update(window_seconds="10")), 2,
        ["model/config.json: window_seconds must be a number; got '10' (str)"], []),
    "config: a string for the sample rate": (
        model_variant(lambda m: m["frontend"].update(sample_rate="22050")), 2,
        ["model/config.json: frontend.sample_rate must be a whole number; got '22050' (str)"], []),
    "config: a string for the concept names": (
        model_variant(lambda m: m.update(concept_names="abc")), 2,
        ["model/config.json: concept_names must be a list of strings; got 'abc' (str)"], []),
    "config: unknown head": (
        model_variant(lambda m: m.update(head="forest")), 2,
        ["model/config.json: head: unknown head type 'forest'; choose from ['gam', 'gam_logistic', 'linear', 'logistic']"], []),
    "config: unknown head parameter": (
        model_variant(lambda m: m.update(head_params={"x": 1})), 2,
        ["model/config.json: head_params: ['x'] are not parameters of the 'linear' head"], []),
    "config: a front-end the weights do not fit": (
        model_variant(lambda m: m["frontend"].update(bands_per_octave=12)), 2,
        ["model/model.safetensors: does not fit config.json (frontend.", "check its backbone and frontend"], []),
    "model: no such folder": (lambda w, t: ["predict", "--model", str(t / "nothing"), str(w / "clip.flac")], 2,
                              ["nothing: no such folder"], []),
    "model: a file": (lambda w, t: ["predict", "--model", str(w / "a-file"), str(w / "clip.flac")], 2,
                      ["a-file: is a file, not a model folder"], []),
    "model: a mistyped zoo name": (lambda w, t: ["predict", "--model", "compact-linaer"], 2,
                                   ["unknown model 'compact-linaer'", "did you mean 'compact-linear'?"], []),
    # -- output places: refused before any work -------------------------------------------------------------
    "explain --plot under a file": (
        lambda w, t: ["explain", "--model", str(w / "base"), str(w / "clip.flac"), "--plot",
                      str(w / "a-file" / "x.png")], 2,
        ["--plot ", "a-file/x.png: cannot create a folder here: ", "a-file is a file, not a folder"], []),
    "explain --report under a file": (
        lambda w, t: ["explain", "--model", str(w / "base"), str(w / "clip.flac"), "--report",
                      str(w / "a-file" / "sub" / "x.html")], 2, ["--report ", "a-file is a file, not a folder"], []),
    "explain --plot where nothing can be created": (
        lambda w, t: ["explain", "--model", str(w / "base"), str(w / "clip.flac"), "--plot", "/proc/x.png"], 2,
        ["--plot /proc/x.png: cannot write in /proc ("], []),
    "explain --shap-max-evals 0": (
        lambda w, t: ["explain", "--model", str(w / "base"), str(w / "clip.flac"), "--baseline", "shap",
                      "--baseline-model", str(w / "a2e"), "--shap-max-evals", "0"], 2,
        ["--shap-max-evals must be at least 65 for --shap-method permutation with 8x4 segments; got 0"], []),
    "export-onnx into a file's folder": (
        lambda w, t: ["export-onnx", str(w / "base"), str(w / "a-file" / "m.onnx")], 2,
        ["m.onnx: cannot write the ONNX file: cannot create a folder here"], []),
    "evaluate --out under a file": (
        lambda w, t: ["evaluate", "--model", str(w / "base"), "--data", str(w / "ml"), "--out",
                      str(w / "a-file" / "r.json")], 2, ["--out ", "a-file is a file, not a folder"], []),
    # -- corpus commands ------------------------------------------------------------------------------------
    "corpus vocode --from a folder that is no corpus": (
        lambda w, t: ["corpus", "vocode", "--from", str(t), "--out", str(t / "pv")], 2,
        ["not a built controlled corpus (no corpus.json, ground_truth.json, records, audio)"], ["pv"]),
    "corpus vocode --share 0": (
        lambda w, t: ["corpus", "vocode", "--from", str(t), "--out", str(t / "pv"), "--share", "0"], 2,
        ["--share must be in (0, 1]; got 0.0"], ["pv"]),
    # -- audio paths ----------------------------------------------------------------------------------------
    "audio: missing": (predict(lambda w, t: t / "missing.wav"), 2, ["missing.wav: no such file"], []),
    "audio: a folder": (predict(lambda w, t: t), 2, [": is a directory, not an audio file"], []),
    "audio: a pipe": (predict(_fifo), 2, ["stream.wav: not a regular file (a pipe); pass the path of a file"], []),
    "audio: a symbolic link loop": (predict(_loop), 2, ["a.wav: symbolic link loop"], []),
    "audio: a broken symbolic link": (predict(_broken), 2, ["gone.wav: broken symbolic link"], []),
    "audio: permission denied": (predict(_unreadable), 2, ["locked.flac: permission denied"], []),
}


def _deny_reading(monkeypatch, path: Path) -> None:
    """Root reads any file whatever its mode: make opening this one fail as it would for anyone else."""
    real_open = os.open

    def fake_open(name, flags, *args, **kwargs):
        if os.fspath(name) == os.fspath(path):
            raise PermissionError(13, "Permission denied", os.fspath(name))
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)


@pytest.mark.parametrize("case", list(ROWS))
def test_bad_input_is_one_line_per_problem_and_leaves_nothing(case, world, tmp_path, capsys, monkeypatch):
    make_argv, code, texts, absent = ROWS[case]
    if case.startswith("export-onnx"):
        pytest.importorskip("onnx")
        pytest.importorskip("onnxscript")
    argv = make_argv(world, tmp_path)
    if "/proc/x.png" in argv and not Path("/proc").is_dir():
        pytest.skip("needs /proc")
    if case == "audio: permission denied" and os.geteuid() == 0:
        _deny_reading(monkeypatch, Path(argv[-1]))
    before = sorted(p.name for p in world.iterdir())
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    message = err[err.index("midlevel: error: "):]
    for text in texts:
        assert text in message, f"{text!r} not in {message!r}"
    for name in absent:
        assert not (tmp_path / name).exists(), name
    assert sorted(p.name for p in world.iterdir()) == before  # nothing written beside the shared files
    if case == "finetune: a started run with other arguments":
        assert sorted(p.name for p in (tmp_path / "out.partial").rglob("*")) == ["request.json", "run", "state.json"]


# -- the same, through the library -----------------------------------------------------------------------
def test_a_utf16_table_reads_like_the_utf8_one(world):
    kwargs = dict(concept_scale=(1.0, 10.0), target_scale=(1.0, 9.0))
    utf8 = read_finetune_annotations(world / "ml" / "metadata_annotations" / "annotations.csv",
                                     world / "ml" / "audio", **kwargs)
    utf16 = read_finetune_annotations(world / "ml" / "metadata_annotations" / "utf16.csv", world / "ml" / "audio",
                                      **kwargs)
    assert list(utf16.concepts.columns) == NEW and utf16.ids == utf8.ids
    assert utf16.concepts.equals(utf8.concepts)


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_byte_order_mark_is_read_and_binary_is_named(world, tmp_path, encoding):
    text = (world / "ml" / "metadata_annotations" / "annotations.csv").read_text()
    (tmp_path / "r.csv").write_bytes(text.encode(encoding))
    data = read_finetune_annotations(tmp_path / "r.csv", world / "ml" / "audio", concept_scale=(1.0, 10.0),
                                     target_scale=(1.0, 9.0))
    assert list(data.concepts.columns) == NEW
    (tmp_path / "b.csv").write_bytes(b"\x00\x01\x02\x00\x00zz\x00" * 20)
    with pytest.raises(MidlevelError, match="b.csv: not a text file"):
        read_finetune_annotations(tmp_path / "b.csv", world / "ml" / "audio", concept_scale=(1.0, 10.0),
                                  target_scale=(1.0, 9.0))


def test_several_problems_are_one_refusal_holding_each(world, tmp_path):
    from midlevel.training.finetune import finetune

    with pytest.raises(Refusals) as info:
        finetune(world / "base", world / "ml" / "metadata_annotations" / "annotations.csv", world / "ml" / "audio",
                 tmp_path / "out", batch_size=0, lr=float("inf"), epochs=True, progress=False)
    assert len(info.value.errors) == 3 and all(isinstance(e, FinetuneError) for e in info.value.errors)
    assert "epochs (--epochs) must be a whole number >= 1; got True" in str(info.value)
    assert os.listdir(tmp_path) == []


def test_a_partial_folder_without_training_is_replaced_and_keeps_its_cache(tmp_path):
    """A run stopped before training (while caching spectrograms, or refused by an older version) does not
    block a corrected rerun: the folder is replaced, its content-addressed cache kept."""
    out = tmp_path / "out"
    partial = open_staging(out, {"settings": {"epochs": 3}}, overwrite=False)
    (partial / "cache").mkdir()
    (partial / "cache" / "logspec-abc.npy").write_bytes(b"x")
    again = open_staging(out, {"settings": {"epochs": 5}}, overwrite=False)
    assert again == partial and json.loads((partial / "request.json").read_text()) == {"settings": {"epochs": 5}}
    assert (partial / "cache" / "logspec-abc.npy").read_bytes() == b"x"
    assert sorted(os.listdir(tmp_path)) == ["out.partial"]  # no temporary folder left


def test_path_problems_name_each_kind(tmp_path):
    assert input_file_problem(tmp_path / "none") == "no such file"
    (tmp_path / "f").write_bytes(b"x")
    assert input_file_problem(tmp_path / "f") is None
    assert input_file_problem(tmp_path / "f" / "g") == "no such file (a part of the path is a file, not a folder)"
    assert output_path_problem(tmp_path / "new" / "deeper" / "x.png") is None
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert output_path_problem(tmp_path) == "is a directory; give a file name"


def test_a_file_name_that_is_not_utf8_is_read(world, tmp_path, capsys):
    name = os.fsdecode(b"clip-\xff.flac")  # as Python holds a non-UTF-8 argv (surrogate escapes)
    try:
        shutil.copy(world / "clip.flac", tmp_path / name)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    assert main(["predict", "--json", "--model", str(world / "base"), str(tmp_path / name)]) == 0
    assert json.loads(capsys.readouterr().out)["source"] == str(tmp_path / "clip-\ufffd.flac")  # shown, not raw
    assert main(["explain", "--model", str(world / "base"), str(tmp_path / name), "--plot",
                 str(tmp_path / os.fsdecode(b"plot-\xfe.png"))]) == 0
    assert (tmp_path / os.fsdecode(b"plot-\xfe.png")).is_file()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_prints_one_line_and_leaves_a_run_that_resumes(world, tmp_path):
    out = tmp_path / "tuned"
    argv = finetune_argv(world, out, "--epochs", "500", "--patience", "500", "--batch-size", "8")
    code = "import sys, torch; torch.set_num_threads(1); from midlevel.cli import main; sys.exit(main(sys.argv[1:]))"
    # Ctrl-C as a terminal delivers it: a shell that started us in the background (CI) hands its children
    # SIGINT ignored, and Python keeps an inherited "ignore", so the fine-tune would never hear the signal
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    state = Path(f"{out}.partial") / "run" / "state.json"
    deadline = time.time() + 90
    while not state.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    assert err.rstrip().splitlines()[-1].startswith("midlevel: interrupted (work already written is kept; rerun")
    assert json.loads(state.read_text())["epoch"] >= 0 and not out.exists()
    request = json.loads((Path(f"{out}.partial") / "request.json").read_text())
    assert request["settings"]["epochs"] == 500  # the same command finds its own request there and resumes


def test_weights_that_do_not_fit_the_config_are_one_line_also_through_from_pretrained(tmp_path):
    """A config whose filterbank differs from the saved one: the class method names both files, as
    ``midlevel.load`` does, instead of torch's multi-line size-mismatch error."""
    import json
    import shutil

    from midlevel.checkpoint import ModelLoadError
    from midlevel.model import TwoStageModel
    from midlevel import load

    folder = tmp_path / "model"
    load("emotion-compact-gam-mid7-ctrl3k-seq").save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["model"]["frontend"]["bands_per_octave"] = 12
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"model.safetensors: does not fit config.json \(frontend.filterbank"):
        TwoStageModel.from_pretrained(folder)
