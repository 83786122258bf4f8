"""Waveform -> normalised log-frequency spectrogram, as a module inside the network.

Keeping the front-end inside the model means a checkpoint takes raw audio, the ONNX export
carries it too, and the normalisation statistics travel with the weights.

The filterbank follows the construction madmom uses for the 2019 paper's input (triangular
filters on FFT bins picked at log-spaced frequencies aligned to A4 = 440 Hz, duplicate bins
merged, each filter normalised to unit area). It is computed once with numpy and stored as
a buffer; torchaudio's ``Spectrogram`` does the STFT.
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio
from torch import nn

from .config import FrontendConfig


def log_spaced_frequencies(bands_per_octave: int, fmin: float, fmax: float, fref: float = 440.0) -> np.ndarray:
    """Frequencies fref * 2**(k / bands_per_octave) inside [fmin, fmax]."""
    lo = np.floor(np.log2(fmin / fref) * bands_per_octave)
    hi = np.ceil(np.log2(fmax / fref) * bands_per_octave)
    freqs = fref * 2.0 ** (np.arange(lo, hi + 1) / bands_per_octave)
    return freqs[(freqs >= fmin) & (freqs <= fmax)]


def nearest_bins(freqs: np.ndarray, bin_freqs: np.ndarray) -> np.ndarray:
    """Index of the FFT bin nearest to each frequency, duplicates removed (sorted)."""
    idx = np.clip(np.searchsorted(bin_freqs, freqs), 1, len(bin_freqs) - 1)
    left, right = bin_freqs[idx - 1], bin_freqs[idx]
    idx = idx - ((freqs - left) < (right - freqs))
    return np.unique(idx)


def log_filterbank(cfg: FrontendConfig) -> np.ndarray:
    """(n_fft // 2 + 1, n_bands) matrix of unit-area triangular filters on log-spaced bins.

    Consecutive triples of the chosen bins give (start, centre, stop) of one filter; where
    the bins are too close for a triangle the filter is a single bin. The Nyquist row is zero
    (madmom works on the n_fft // 2 bins below Nyquist).
    """
    n_bins = cfg.n_fft // 2
    bin_freqs = np.arange(n_bins) * cfg.sample_rate / cfg.n_fft
    bins = nearest_bins(log_spaced_frequencies(cfg.bands_per_octave, cfg.fmin, cfg.fmax), bin_freqs)
    if len(bins) < 3:
        raise ValueError(f"filterbank {cfg} yields fewer than 3 distinct FFT bins")
    fb = np.zeros((n_bins + 1, len(bins) - 2), dtype=np.float64)
    for band, (start, centre, stop) in enumerate(zip(bins[:-2], bins[1:-1], bins[2:])):
        if stop - start < 2:
            centre, stop = start, start + 1
        rise = np.linspace(0.0, 1.0, centre - start, endpoint=False)
        fall = np.linspace(1.0, 0.0, stop - centre, endpoint=False)
        tri = np.concatenate([rise, fall])
        fb[start:stop, band] = tri / tri.sum()
    return fb.astype(np.float32)


class _LevelNormalizedInput(nn.Module):
    """What every front-end shares: per-window level normalisation, then per-band standardisation.

    Subclasses set ``cfg`` and register ``mean``/``std`` buffers (one value per band; identity until
    ``set_normalization`` is called with statistics measured on training data) and define
    ``log_spectrogram`` (the un-normalised network input, (batch, bands, frames)) and ``n_frames``."""

    cfg: FrontendConfig

    @property
    def n_bands(self) -> int:
        return int(self.mean.shape[0])

    def level_normalize(self, wave: torch.Tensor) -> torch.Tensor:
        """Each row scaled to ``level_target_dbfs`` RMS (identity when the config has none).

        Inside the network rather than in a data loader, so the ONNX graph and every caller get it:
        a model that should not hear the file's gain must not depend on its users to remove it."""
        if self.cfg.level_target_dbfs is None:
            return wave
        rms = wave.pow(2).mean(dim=-1, keepdim=True).sqrt()
        floor = 10.0 ** (self.cfg.level_floor_dbfs / 20.0)
        return wave * (10.0 ** (self.cfg.level_target_dbfs / 20.0) / rms.clamp_min(floor))

    def normalize(self, logspec: torch.Tensor) -> torch.Tensor:
        return ((logspec - self.mean[:, None]) / self.std[:, None]).unsqueeze(1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.log_spectrogram(wave))

    @torch.no_grad()
    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store per-band statistics (e.g. measured on the training set's log spectrograms)."""
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype).expand_as(self.mean))
        self.std.copy_(torch.as_tensor(std, dtype=self.std.dtype).clamp_min(1e-6).expand_as(self.std))


class LogFrequencySpectrogram(_LevelNormalizedInput):
    """(batch, samples) waveform -> (batch, 1, bands, frames) normalised log spectrogram."""

    def __init__(self, cfg: FrontendConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stft = torchaudio.transforms.Spectrogram(
            n_fft=cfg.n_fft, hop_length=cfg.hop_length, power=1.0, center=True
        )
        fb = torch.from_numpy(log_filterbank(cfg))
        self.register_buffer("filterbank", fb)
        self.register_buffer("mean", torch.zeros(fb.shape[1]))
        self.register_buffer("std", torch.ones(fb.shape[1]))

    def log_spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        """Un-normalised log10(1 + filtered magnitude), shape (batch, bands, frames)."""
        mag = self.stft(self.level_normalize(wave))  # (batch, n_fft//2+1, frames)
        filtered = torch.matmul(mag.transpose(1, 2), self.filterbank).transpose(1, 2)
        return torch.log10(1.0 + filtered)

    def n_frames(self, n_samples: int) -> int:
        return n_samples // self.cfg.hop_length + 1


class WaveformInput(_LevelNormalizedInput):
    """(batch, samples) -> (batch, 1, 1, samples): the level-normalised waveform, for raw-waveform backbones.

    It keeps the spectrogram front-end's interface (one "band", one "frame" per sample) so that training's
    cache, windowing, attribution over time and export treat both alike."""

    def __init__(self, cfg: FrontendConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mean", torch.zeros(1))
        self.register_buffer("std", torch.ones(1))

    def log_spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        """The level-normalised samples as (batch, 1, samples) (the name is the front-end interface's)."""
        return self.level_normalize(wave).unsqueeze(1)

    def n_frames(self, n_samples: int) -> int:
        return int(n_samples)


def build_frontend(cfg: FrontendConfig) -> _LevelNormalizedInput:
    """The front-end module ``cfg.representation`` names."""
    return WaveformInput(cfg) if cfg.representation == "waveform" else LogFrequencySpectrogram(cfg)
