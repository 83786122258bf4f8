"""Inference computes each STFT frame once where windows overlap, with the results of window-by-window."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from midlevel import ModelConfig, TwoStageModel, example_clip, load_audio
from midlevel.config import FrontendConfig
from midlevel.export import TrackGraph
from midlevel.frontend import LogFrequencySpectrogram, _LevelNormalizedInput
from midlevel.model import window_starts

HEART_LIKE = FrontendConfig(sample_rate=2000, n_fft=128, hop_length=20, bands_per_octave=12, fmin=20.0, fmax=1000.0)


def _track(seconds: float, sample_rate: int, batch: int = 1) -> torch.Tensor:
    """Noise whose level rises along the track (so each window has its own level gain)."""
    n = int(seconds * sample_rate)
    gen = torch.Generator().manual_seed(0)
    return torch.randn(batch, n, generator=gen) * torch.linspace(0.01, 0.8, n)


@pytest.mark.parametrize("frontend", [FrontendConfig(), FrontendConfig(level_target_dbfs=-20.0), HEART_LIKE],
                         ids=["music", "level-normalised", "heart-like"])
def test_shared_frames_equal_window_by_window(frontend: FrontendConfig) -> None:
    front = LogFrequencySpectrogram(frontend).eval()
    front.set_normalization(torch.rand(front.n_bands), 0.5 + torch.rand(front.n_bands))
    cfg = ModelConfig(frontend=frontend)
    wave = _track(37.305, frontend.sample_rate, batch=2)
    starts = window_starts(wave.shape[1], cfg.window_samples, cfg.hop_samples)
    assert (starts[-1] - starts[-2]) % frontend.hop_length != 0  # the end-aligned window is off the grid
    once = front.window_spectrograms(wave, starts, cfg.window_samples)
    each = _LevelNormalizedInput.window_spectrograms(front, wave, starts, cfg.window_samples)
    assert once.shape == each.shape == (2 * len(starts), 1, front.n_bands, front.n_frames(cfg.window_samples))
    torch.testing.assert_close(once, each, rtol=1e-5, atol=1e-5)
    # and the window-by-window rows are the front-end of each slice, track by track
    torch.testing.assert_close(each[len(starts) + 1], front(wave[1:, starts[1]:starts[1] + cfg.window_samples])[0])


def test_hop_is_a_whole_number_of_frames() -> None:
    music = ModelConfig()
    assert music.hop_samples % music.frontend.hop_length == 0
    assert abs(music.hop_samples - 5.0 * music.sample_rate) <= music.frontend.hop_length / 2
    heart = ModelConfig(frontend=HEART_LIKE)
    assert heart.hop_samples == 5 * 2000  # already whole: unchanged
    waveform = ModelConfig(frontend=FrontendConfig(representation="waveform", hop_length=1), backbone="raw_waveform")
    assert waveform.hop_samples == 5 * 22050


def test_track_outputs_equal_the_exported_graphs_algorithm() -> None:
    """``explain``'s chunked path (frames once) against the all-windows-at-once path the ONNX graph runs."""
    torch.manual_seed(0)
    model = TwoStageModel(ModelConfig(backbone="compact")).eval()
    samples = load_audio(example_clip(), model.config.sample_rate).samples
    samples = np.tile(samples, 4)[: int(27.5 * model.config.sample_rate)]
    wave = torch.from_numpy(samples)[None]
    with torch.inference_mode():
        chunked = model.track_outputs(wave, chunk=2)
        graph = TrackGraph(model)(wave)
    for a, b in zip(chunked, graph):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    explanation = model.explain(samples, sample_rate=model.config.sample_rate)
    np.testing.assert_allclose(explanation.concepts, graph[0][0].double().numpy(), rtol=1e-4, atol=1e-5)
