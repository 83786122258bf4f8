import librosa
import numpy as np
import pytest
import torch

from midlevel.config import FrontendConfig
from midlevel.frontend import LogFrequencySpectrogram, log_filterbank

from conftest import sine


def test_default_is_the_papers_149_band_input():
    cfg = FrontendConfig()
    fb = log_filterbank(cfg)
    assert fb.shape == (cfg.n_fft // 2 + 1, 149)
    np.testing.assert_allclose(fb.sum(axis=0), 1.0, atol=1e-5)  # unit-area filters
    assert np.all(fb[-1] == 0)  # Nyquist bin unused, as in madmom
    centres = (fb * np.arange(fb.shape[0])[:, None]).sum(0)
    assert np.all(np.diff(centres) > 0)  # bands ordered low -> high
    fe = LogFrequencySpectrogram(cfg)
    out = fe(torch.zeros(1, 10 * cfg.sample_rate))
    assert out.shape == (1, 1, 149, 314)  # 10 s at 31.3 frames/s


@pytest.mark.parametrize("freq", [110.0, 440.0, 1000.0, 3520.0])
def test_sine_lands_in_the_band_centred_on_its_frequency(freq):
    cfg = FrontendConfig()
    fb = log_filterbank(cfg)
    bin_hz = cfg.sample_rate / cfg.n_fft
    centres_hz = (fb * np.arange(fb.shape[0])[:, None]).sum(0) * bin_hz
    fe = LogFrequencySpectrogram(cfg)
    spec = fe.log_spectrogram(torch.from_numpy(sine(freq, 2.0)[None]))[0].mean(-1).numpy()
    assert abs(centres_hz[spec.argmax()] - freq) / freq < 0.05


def test_matches_librosa_stft_through_the_same_filterbank(rng):
    cfg = FrontendConfig()
    wave = rng.standard_normal(3 * cfg.sample_rate).astype(np.float32) * 0.2
    ours = LogFrequencySpectrogram(cfg).log_spectrogram(torch.from_numpy(wave[None]))[0].numpy()
    mag = np.abs(librosa.stft(wave, n_fft=cfg.n_fft, hop_length=cfg.hop_length, center=True, pad_mode="reflect"))
    ref = np.log10(1 + log_filterbank(cfg).T @ mag)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=1e-4)


def test_normalization_statistics_are_applied_and_stored(rng):
    fe = LogFrequencySpectrogram(FrontendConfig())
    wave = torch.from_numpy(rng.standard_normal((2, 22050)).astype(np.float32))
    log = fe.log_spectrogram(wave)
    fe.set_normalization(log.mean(dim=(0, 2)), log.std(dim=(0, 2)))
    out = fe(wave)
    assert out.mean(dim=(0, 1, 3)).abs().max() < 1e-4
    assert {"mean", "std", "filterbank"} <= set(fe.state_dict())
