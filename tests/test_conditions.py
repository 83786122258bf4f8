"""Domain randomisation: recording conditions drawn per clip change the audio and nothing else, and a
level-normalising front-end keeps the file's gain away from the concepts."""

import numpy as np
import pandas as pd
import pytest
import torch

from midlevel import ModelConfig, TwoStageModel
from midlevel.audio import load_audio
from midlevel.config import FrontendConfig
from midlevel.datasets.controlled import build_corpus
from midlevel.datasets.controlled.conditions import (Conditions, apply_conditions, available_soundfonts,
                                                     codec_round_trip, sample_conditions)
from midlevel.frontend import LogFrequencySpectrogram

SR = 22050


def test_a_randomised_build_has_the_dry_builds_clips_and_labels(tmp_path):
    if len(available_soundfonts()) < 2:
        pytest.skip("needs the Debian GM soundfonts (scripts/install-system-deps.sh installs them)")
    dry = build_corpus(tmp_path / "dry", 3, seconds=3.0, seed=5, progress=False)
    wet = build_corpus(tmp_path / "wet", 3, seconds=3.0, seed=5, progress=False, conditions="randomised")
    import json

    settings = [json.loads((tmp_path / k / "corpus.json").read_text())["settings"] for k in ("dry", "wet")]
    assert "conditions" not in settings[0] and settings[1]["conditions"] == "randomised"
    for table in ("metadata_annotations/annotations.csv", "mean_ratings_set1.csv"):
        assert (tmp_path / "dry" / table).read_text() == (tmp_path / "wet" / table).read_text()
    conditions = pd.read_csv(tmp_path / "wet" / "conditions.csv")
    assert len(conditions) == 3 and set(conditions["soundfont"]) <= set(available_soundfonts())
    assert not (tmp_path / "dry" / "conditions.csv").exists()
    a = load_audio(tmp_path / "dry" / "audio" / "1.flac", SR).samples
    b = load_audio(tmp_path / "wet" / "audio" / "1.flac", SR).samples
    assert len(a) == len(b) and not np.allclose(a, b)


def test_conditions_are_drawn_reproducibly_and_applied_as_recorded():
    fonts = {"a": "a.sf2", "b": "b.sf2"}
    draws = [sample_conditions(np.random.default_rng([1, i, 3]), fonts) for i in range(200)]
    assert draws[7] == sample_conditions(np.random.default_rng([1, 7, 3]), fonts)
    levels = np.array([c.level_db for c in draws])
    assert levels.max() - levels.min() > 25  # the file's gain spans a wide range
    assert {c.codec for c in draws} == {"none", "mp3", "ogg"} and {c.noise for c in draws} == {"none", "pink", "brown"}
    tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(SR * 2) / SR)).astype(np.float32)
    quiet = Conditions("a", 0.1, 0.0, 0.0, 0.0, -20.0, "none", 0.0, "none", 0.0)
    out = apply_conditions(tone, SR, quiet, np.random.default_rng(0))
    gain_db = 20 * np.log10(np.sqrt(np.mean(out[SR:] ** 2)) / np.sqrt(np.mean(tone[SR:] ** 2)))
    assert gain_db == pytest.approx(-20.0, abs=1.0)
    assert np.abs(apply_conditions(tone, SR, Conditions("a", 0.1, 0.0, 0.0, 0.0, 30.0, "none", 0.0, "none", 0.0),
                                   np.random.default_rng(0))).max() <= 1.0  # the limiter, not clipping
    decoded = codec_round_trip(tone, SR, "mp3", 0.85)
    assert decoded.shape == tone.shape and np.abs(decoded).max() > 0.05


def test_a_level_normalising_front_end_removes_the_files_gain_and_exports_with_it(tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from midlevel.export import export_onnx

    wave = torch.randn(1, SR * 3) * 0.05
    plain = LogFrequencySpectrogram(FrontendConfig())
    levelled = LogFrequencySpectrogram(FrontendConfig(level_target_dbfs=-32.0))
    assert not torch.allclose(plain.log_spectrogram(wave), plain.log_spectrogram(wave * 0.25))
    torch.testing.assert_close(levelled.log_spectrogram(wave), levelled.log_spectrogram(wave * 0.25))
    silence = torch.zeros(1, SR)
    assert levelled.log_spectrogram(silence).abs().max() == 0  # the floor: no amplified nothing
    torch.manual_seed(0)
    model = TwoStageModel(ModelConfig(backbone="compact", frontend=FrontendConfig(level_target_dbfs=-32.0))).eval()
    a = model.explain(wave[0].numpy(), sample_rate=SR)
    b = model.explain(wave[0].numpy() * 0.1, sample_rate=SR)
    np.testing.assert_allclose(a.concepts, b.concepts, atol=1e-4)
    path = export_onnx(model, tmp_path / "levelled.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (concepts,) = sess.run(["concepts"], {"wave": (wave.numpy() * 0.1).astype(np.float32)})
    np.testing.assert_allclose(concepts[0], a.concepts, atol=1e-4)
