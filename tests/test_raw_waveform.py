"""The raw-waveform front-end and backbone (issue 33's second black box, after Becker et al.'s AudioNet):
the network hears the level-normalised samples themselves, learns from them, and exports like the others."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from midlevel.config import ConfigError, ModelConfig
from midlevel.model import AudioModel, BlackBoxModel
from midlevel.training.loops import ArraySet, TrainSettings, network_outputs, train_network
from midlevel.training.speech import SPEECH_FRONTEND, WAVEFORM_FRONTEND, speech_config

RATE = 16000


def tones(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Half the clips a low tone (200-300 Hz), half a high one (1-1.5 kHz), each at a random gain and phase."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.3 * RATE)) / RATE
    classes = np.arange(n) % 2
    freqs = np.where(classes == 0, rng.uniform(200, 300, n), rng.uniform(1000, 1500, n))
    gains = 10 ** rng.uniform(-2, 0, n)
    waves = gains[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + rng.uniform(0, 6.3, n)[:, None])
    return (waves + 0.01 * rng.standard_normal(waves.shape)).astype(np.float32), classes


def raw_model() -> BlackBoxModel:
    config = replace(speech_config("sex", "black_box", "raw_waveform"), window_seconds=0.3, hop_seconds=0.15)
    return BlackBoxModel(config)


def test_the_front_end_is_the_level_normalised_waveform_so_a_gain_change_cannot_reach_the_network():
    model = raw_model().eval()
    wave = torch.from_numpy(tones(2, 0)[0])
    x = model.frontend(wave)
    assert x.shape == (2, 1, 1, wave.shape[1]) and model.frontend.n_frames(wave.shape[1]) == wave.shape[1]
    rms = x[:, 0, 0].pow(2).mean(dim=1).sqrt()
    torch.testing.assert_close(rms, torch.full((2,), 10 ** (WAVEFORM_FRONTEND.level_target_dbfs / 20)))
    torch.testing.assert_close(model(wave * 0.05), model(wave), rtol=1e-4, atol=1e-4)


def test_a_raw_waveform_black_box_learns_to_tell_low_from_high_tones(tmp_path):
    torch.manual_seed(0)
    model = raw_model()
    model.config = replace(model.config, target_names=["low", "high"])
    model.target_layer = torch.nn.Linear(model.backbone.out_features, 2)
    waves, classes = tones(96, 1)
    val_waves, val_classes = tones(32, 2)
    data = ArraySet(model.frontend.log_spectrogram(torch.from_numpy(waves)), targets=classes.astype(np.float64))
    val = ArraySet(model.frontend.log_spectrogram(torch.from_numpy(val_waves)), targets=val_classes.astype(np.float64))
    settings = TrainSettings(setup="a2e", epochs=6, batch_size=16, lr=3e-3, seed=0, patience=6)
    train_network(model, data, val, settings, tmp_path / "run", progress=False)
    accuracy = np.mean(network_outputs(model, val).argmax(axis=1) == val_classes)
    assert accuracy >= 0.9, accuracy


def test_a_backbone_and_a_front_end_that_do_not_fit_are_refused_by_name():
    with pytest.raises(ValueError, match="reads a waveform, but the front-end gives a log spectrogram"):
        BlackBoxModel(replace(speech_config("sex", "black_box"), backbone="raw_waveform"))
    with pytest.raises(ValueError, match="reads a log spectrogram, but the front-end gives a waveform"):
        BlackBoxModel(replace(speech_config("sex", "black_box", "raw_waveform"), backbone="compact"))
    with pytest.raises(ConfigError, match="hop_length must be 1"):
        ModelConfig(frontend=replace(WAVEFORM_FRONTEND, hop_length=160))
    with pytest.raises(ConfigError, match="representation"):
        ModelConfig(frontend=replace(SPEECH_FRONTEND, representation="mfcc"))


def test_a_raw_waveform_model_saves_loads_and_exports_to_onnx_with_the_same_outputs(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from midlevel.export import export_onnx

    torch.manual_seed(0)
    model = raw_model().eval()
    folder = model.save_pretrained(tmp_path / "raw")
    again = AudioModel.from_pretrained(folder)
    assert again.config.frontend.representation == "waveform"
    wave = tones(1, 3)[0][0]
    np.testing.assert_allclose(again.predict(wave, sample_rate=RATE).targets, model.predict(wave, sample_rate=RATE).targets,
                               atol=1e-5)
    path = export_onnx(again, tmp_path / "raw.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: wave[None].astype(np.float32)}
    outputs = session.run(None, feed)
    expected = model.predict(wave, sample_rate=RATE).targets
    assert any(np.allclose(np.ravel(o)[:2], expected, atol=1e-4) for o in outputs), (outputs, expected)
