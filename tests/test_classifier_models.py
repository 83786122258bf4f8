"""Classifiers as models: a two-stage model whose head gives class logits (``task="classification"``), its
training (joint: the head's own cross-entropy + penalty), and a black-box classifier (a2e: cross-entropy).

The data are the tones of ``test_finetune``: loudness, pitch and noise follow three hidden ratings; the
classes are "low" and "high" pitch, so the concept ``pitch`` carries the answer and ``loudness`` does not."""

import json

import numpy as np
import pytest
import torch
from test_finetune import tones

from midlevel import ModelConfig, TwoStageModel, load
from midlevel.config import ConfigError
from midlevel.model import BlackBoxModel
from midlevel.training.loops import ArraySet, TrainSettings, network_outputs, train_network

CONCEPTS, CLASSES = ["loudness", "pitch"], ["low", "high"]


def config(kind="two_stage", **kw):
    base = dict(kind=kind, window_seconds=1.0, hop_seconds=0.5, concept_names=CONCEPTS, target_names=CLASSES,
                task="classification", head="logistic" if kind == "two_stage" else "linear", name="tone-classes")
    return ModelConfig(**{**base, **kw})


def data(n, seed, model):
    ratings = np.random.default_rng(seed).uniform(1, 10, size=(n, 3))
    waves = np.stack(list(tones(ratings, seed)))
    spec = model.frontend.log_spectrogram(torch.from_numpy(waves))
    return waves, ArraySet(spec, ratings[:, :2], (ratings[:, 1] > 5.5).astype(np.float64)), ratings


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    torch.manual_seed(0)
    model = TwoStageModel(config())
    _, train, _ = data(48, 0, model)
    _, valid, _ = data(16, 1, model)
    model.frontend.set_normalization(train.logspec.mean(dim=(0, 2)), train.logspec.std(dim=(0, 2)))
    train_network(model, train, valid, TrainSettings(epochs=12, batch_size=8, lr=3e-3, patience=50),
                  tmp_path_factory.mktemp("run"), progress=False)
    model.head.fit(network_outputs(model, train), train.targets.astype(int))
    model.eval()
    folder = tmp_path_factory.mktemp("model") / "tone-classes"
    model.save_pretrained(folder)
    return model, folder


def test_a_classifier_config_needs_a_logit_head_and_two_classes():
    with pytest.raises(ConfigError, match="head 'linear' does not fit task 'classification'"):
        config(head="linear")
    with pytest.raises(ConfigError, match="head 'logistic' does not fit task 'regression'"):
        config(task="regression")
    with pytest.raises(ConfigError, match="at least two classes"):
        config(target_names=["only"])
    with pytest.raises(ConfigError, match="task must be one of"):
        config(task="ranking")
    assert ModelConfig.from_dict({k: v for k, v in ModelConfig().to_dict().items() if k != "task"}).task == "regression"


def test_the_explanation_adds_up_to_the_logits_and_names_the_class(classifier):
    model, folder = classifier
    waves, _, ratings = data(12, 5, model)
    right = 0
    for wave, r in zip(waves, ratings):
        e = model.explain(wave, sample_rate=22050)
        np.testing.assert_allclose(e.intercept + e.contributions.sum(axis=1), e.targets, atol=1e-9)
        assert e.probabilities.sum() == pytest.approx(1.0) and e.probabilities.shape == (2,)
        np.testing.assert_allclose(e.probabilities, np.exp(e.targets) / np.exp(e.targets).sum(), rtol=1e-9)
        assert "targets_out_of_scale" not in e.flags()  # logits are not ratings on a 1-9 scale
        right += e.predicted_class == ("high" if r[1] > 5.5 else "low")
        record = e.to_dict()
        assert record["class"] == e.predicted_class and set(record["probabilities"]) == set(CLASSES)
    assert right >= 10  # pitch is heard and carries the class
    contributions = np.array([model.explain(w, sample_rate=22050).contributions[1] for w in waves])
    # the pitch concept moves the "high" logit; loudness hardly (the class never depended on it)
    assert np.ptp(contributions[:, 1]) > 3 * np.ptp(contributions[:, 0])
    again = load(folder).explain(waves[0], sample_rate=22050)
    np.testing.assert_allclose(again.targets, model.explain(waves[0], sample_rate=22050).targets, atol=1e-6)
    assert json.loads((folder / "config.json").read_text())["model"]["task"] == "classification"


def test_joint_training_of_a_classifier_uses_the_heads_own_objective(tmp_path):
    torch.manual_seed(0)
    model = TwoStageModel(config())
    _, train, _ = data(48, 0, model)
    _, valid, _ = data(16, 1, model)
    model.frontend.set_normalization(train.logspec.mean(dim=(0, 2)), train.logspec.std(dim=(0, 2)))
    model.head.fit(train.concepts, train.targets.astype(int))
    state = train_network(model, train, valid, TrainSettings(setup="joint", epochs=6, batch_size=8, lr=3e-3,
                                                              patience=50), tmp_path, progress=False)
    history = state["history"]
    assert "accuracy" in history[0] and "target_r" not in history[0]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert max(h["accuracy"] for h in history) >= 0.8


def test_a_black_box_classifier_learns_with_cross_entropy_and_gives_probabilities(tmp_path):
    torch.manual_seed(0)
    model = BlackBoxModel(config("black_box"))
    waves, train, ratings = data(48, 0, model)
    _, valid, _ = data(16, 1, model)
    model.frontend.set_normalization(train.logspec.mean(dim=(0, 2)), train.logspec.std(dim=(0, 2)))
    assert torch.all(model.target_layer.bias == 0)  # logits start equal
    state = train_network(model, train, valid, TrainSettings(setup="a2e", epochs=10, batch_size=8, lr=3e-3,
                                                              patience=50), tmp_path, progress=False)
    assert max(h["accuracy"] for h in state["history"]) >= 0.8
    p = model.predict(waves[0], sample_rate=22050)
    assert p.probabilities.sum() == pytest.approx(1.0) and "targets_out_of_scale" not in p.flags()


def test_the_command_line_names_the_class_and_its_probability(classifier, tmp_path, capsys):
    import soundfile as sf

    from midlevel.cli import main

    model, folder = classifier
    waves, _, ratings = data(1, 9, model)
    sf.write(tmp_path / "tone.wav", waves[0], 22050)
    assert main(["explain", str(tmp_path / "tone.wav"), "--model", str(folder)]) == 0
    out = capsys.readouterr().out
    e = model.explain(waves[0], sample_rate=22050)
    assert f"class: {e.predicted_class} (p = {e.probabilities.max():.3f})" in out
    assert "contributions (logit = intercept + sum of concept terms):" in out
    assert main(["predict", str(tmp_path / "tone.wav"), "--model", str(folder), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    record = record[0] if isinstance(record, list) else record
    assert record["class"] == e.predicted_class
