"""Training callbacks (``midlevel.training.callbacks``): what they log, that they see every epoch a run trains
and no other, and that training gives the same weights with or without them."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from test_finetune import base, run_cli, write_midlevel  # noqa: E402,F401 (base: the fixture)
from test_imports import run_python  # noqa: E402
from test_recipes import write_layout  # noqa: E402
from test_training import small_model, toy_set  # noqa: E402

from midlevel.cli import main  # noqa: E402
from midlevel.training.callbacks import (  # noqa: E402
    Callback, EpochRecord, ExplanationLogger, TrainInfo, explanation_callbacks)
from midlevel.training.loops import TrainSettings, train_network  # noqa: E402

SETTINGS = TrainSettings(setup="joint", epochs=2, batch_size=16, lr=3e-3, patience=10, seed=5)


class Recorder(Callback):
    """Records every call; draws from torch's global generator and flips the model's modes, as a careless
    callback might."""

    def __init__(self):
        self.begins, self.epochs, self.ends = [], [], []

    def on_train_begin(self, info):
        self.begins.append(info.start_epoch)
        torch.rand(5)

    def on_epoch_end(self, epoch, model, logs):
        assert logs["epoch"] == epoch and "score" in logs
        self.epochs.append(epoch)
        torch.rand(5)
        model.eval()

    def on_train_end(self, model, history):
        self.ends.append(len(history))


def events(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "audio": 0})
    acc.Reload()
    return acc


def steps(acc: EventAccumulator, kind: str) -> dict[str, list[int]]:
    read = {"scalars": acc.Scalars, "images": acc.Images, "audio": acc.Audio}[kind]
    return {tag: [e.step for e in read(tag)] for tag in acc.Tags()[kind]}


def joint_run(folder, callbacks=(), epochs=SETTINGS.epochs):
    train, valid = toy_set(32, 0), toy_set(16, 1)
    model = small_model()
    model.head.fit(train.concepts, train.targets)
    settings = TrainSettings(**{**SETTINGS.__dict__, "epochs": epochs})
    state = train_network(model, train, valid, settings, folder, progress=False, callbacks=callbacks)
    return model, state


def test_explanations_reach_tensorboard_every_epoch_and_training_is_unchanged(tmp_path):
    sr = small_model().config.sample_rate
    waves = [np.random.default_rng(i).normal(0, 0.1, sr * 2).astype(np.float32) for i in range(2)]
    recorder = Recorder()
    with_cb, _ = joint_run(tmp_path / "with", [*explanation_callbacks(tmp_path / "tb", audio=waves), recorder])
    after_with = torch.random.get_rng_state()
    without, _ = joint_run(tmp_path / "without")
    assert torch.equal(after_with, torch.random.get_rng_state())  # the callbacks drew nothing from the run's RNG
    for (name, a), b in zip(without.state_dict().items(), with_cb.state_dict().values()):
        assert torch.equal(a, b), name

    assert recorder.begins == [0] and recorder.epochs == [0, 1] and recorder.ends == [2]
    acc = events(tmp_path / "tb")
    every = [0, 1]
    scalars, images, audio = steps(acc, "scalars"), steps(acc, "images"), steps(acc, "audio")
    for tag in ("epoch/train_loss", "epoch/score", "concept_r/mean", "concept_r/melodiousness", "target_r/mean",
                "target_r/valence"):
        assert scalars[tag] == every, tag
    assert images == {tag: every for tag in ("head/weights", "head/contributions",
                                             "clip_0/attribution", "clip_1/attribution")}
    assert audio == {"clip_0/part": every, "clip_1/part": every, "clip_0/input": [0], "clip_1/input": [0]}
    rows = [json.loads(line) for line in (tmp_path / "tb" / "explanations.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == every and "concept_r/mean" in rows[0]


def test_a_resumed_run_calls_back_only_for_the_epochs_it_trains(tmp_path):
    first, resumed, finished = Recorder(), Recorder(), Recorder()
    joint_run(tmp_path / "run", [first, *explanation_callbacks(tmp_path / "tb", n_listen=0)], epochs=2)
    joint_run(tmp_path / "run", [resumed, *explanation_callbacks(tmp_path / "tb", n_listen=0)], epochs=4)
    joint_run(tmp_path / "run", [finished], epochs=4)  # nothing left to train
    assert (first.begins, first.epochs, first.ends) == ([0], [0, 1], [2])
    assert (resumed.begins, resumed.epochs, resumed.ends) == ([2], [2, 3], [4])
    assert (finished.begins, finished.epochs, finished.ends) == ([4], [], [4])
    assert steps(events(tmp_path / "tb"), "scalars")["concept_r/mean"] == [0, 1, 2, 3]
    rows = (tmp_path / "tb" / "explanations.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [0, 1, 2, 3]


class Keep:
    """A writer that keeps the records."""

    def open(self, info):
        self.records = []

    def write(self, record):
        self.records.append(record)

    def close(self):
        pass


@pytest.mark.parametrize("kind,head", [("two_stage", "gam"), ("black_box", "linear")])
def test_the_logger_leaves_modes_gradients_and_weights_alone(kind, head, tmp_path):
    model, valid = small_model(kind, head), toy_set(8, 1)
    model.train()
    model.backbone.eval()  # a frozen part, as TrainSettings.trainable leaves it
    modes = [m.training for m in model.modules()]
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    writer = Keep()
    logger = ExplanationLogger([writer], n_clips=4, n_listen=1, head=True)
    settings = TrainSettings(setup="joint" if kind == "two_stage" else "a2e")
    logger.on_train_begin(TrainInfo(model, settings, valid, valid, tmp_path, 0))
    logger.on_epoch_end(0, model, {"epoch": 0, "score": 0.5})
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    record: EpochRecord = writer.records[0]
    head_views = {"head/shape_functions", "head/contributions"} if kind == "two_stage" else set()
    expected = {"clip_0/attribution"} | head_views
    assert set(record.images) == expected and record.logs == {"score": 0.5}
    assert ("concept_r/mean" in record.scalars) == (kind == "two_stage") and "target_r/mean" in record.scalars
    assert all(image.dtype == np.uint8 and image.shape[2] == 3 for image in record.images.values())


def test_train_command_logs_explanations_with_the_clips_audio(tmp_path):
    write_layout(tmp_path / "data")
    args = ["train", "--corpus", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--heads", "",
            "--joint-heads", "linear", "--no-a2e", "--epochs", "2", "--batch-size", "8",
            "--log-explanations", str(tmp_path / "tb")]
    assert main(args) == 0
    acc = events(tmp_path / "tb" / "joint-linear")  # one folder per network
    assert steps(acc, "scalars")["target_r/mean"] == [0, 1]
    assert steps(acc, "images")["clip_1/attribution"] == [0, 1]
    assert steps(acc, "audio")["clip_1/part"] == [0, 1]  # read from the validation clips' files


def test_finetune_command_logs_explanations_into_the_folder_given(base, tmp_path):
    annotations, audio, _ = write_midlevel(tmp_path / "data", names=["flow", "pulse", "tension", "calm"])
    assert run_cli(["finetune", "--base", str(base), "--annotations", str(annotations), "--audio-dir", str(audio),
                    "--out", str(tmp_path / "model"), "--mode", "joint", "--target-columns", "tension,calm",
                    "--target-scale", "1,10", "--epochs", "2", "--batch-size", "8",
                    "--log-explanations", str(tmp_path / "tb")]) == 0
    acc = events(tmp_path / "tb")
    assert steps(acc, "scalars")["target_r/mean"] == [0, 1]
    assert steps(acc, "images")["head/contributions"] == [0, 1]
    assert steps(acc, "audio")["clip_0/part"] == [0, 1]
    assert len((tmp_path / "tb" / "explanations.jsonl").read_text().splitlines()) == 2


def test_log_explanations_without_tensorboard_names_the_extra(tmp_path):
    out = run_python(f"""
        sys.modules["tensorboard"] = None
        from midlevel.cli import main
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["train", "--corpus", {str(tmp_path)!r}, "--out", {str(tmp_path / "run")!r},
                         "--log-explanations", {str(tmp_path / "tb")!r}])
        print(json.dumps({{"code": code, "stderr": err.getvalue()}}))
    """, tmp_path)
    result = json.loads(out.splitlines()[-1])
    assert result["code"] == 2 and "Traceback" not in result["stderr"]
    assert result["stderr"].strip().splitlines() == [
        "midlevel: error: midlevel train --log-explanations needs the 'tensorboard' extra: "
        "pip install 'midlevel[tensorboard]'"]
    assert not (tmp_path / "run").exists()
