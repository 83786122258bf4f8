"""Waveform -> normalised log-frequency spectrogram, as a module inside the network.

Keeping the front-end inside the model means a checkpoint takes raw audio, the ONNX export
carries it too, and the normalisation statistics travel with the weights.

The filterbank follows the construction madmom uses for the 2019 paper's input (triangular
filters on FFT bins picked at log-spaced frequencies aligned to A4 = 440 Hz, duplicate bins
merged, each filter normalised to unit area). It is computed once with numpy and stored as
a buffer; torchaudio's ``Spectrogram`` does the STFT.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torchaudio
from torch import nn
from torch.nn import functional as F

from .config import FrontendConfig
from .matmul_dft import matmul_spectrogram


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
        return wave * self.level_gain(wave)

    def normalize(self, logspec: torch.Tensor) -> torch.Tensor:
        return ((logspec - self.mean[:, None]) / self.std[:, None]).unsqueeze(1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.log_spectrogram(wave))

    def level_gain(self, wave: torch.Tensor) -> torch.Tensor:
        """(..., samples) -> (..., 1): the factor ``level_normalize`` multiplies each row by (1 when off)."""
        if self.cfg.level_target_dbfs is None:
            return torch.ones_like(wave[..., :1])
        rms = wave.pow(2).mean(dim=-1, keepdim=True).sqrt()
        return 10.0 ** (self.cfg.level_target_dbfs / 20.0) / rms.clamp_min(10.0 ** (self.cfg.level_floor_dbfs / 20.0))

    def window_spectrograms(self, wave: torch.Tensor, starts: Sequence[int], window: int) -> torch.Tensor:
        """(B, S) waveforms, S >= ``starts[-1] + window`` -> (B * len(starts), 1, bands, frames): the front-end of
        each window ``wave[:, s:s + window]``, rows ordered track by track. Here window by window; the
        spectrogram front-end overrides it to compute each frame once where windows overlap."""
        windows = torch.stack([wave[:, s:s + window] for s in starts], dim=1)
        return self(windows.reshape(-1, window))

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
        self._export_filtered: Callable[[torch.Tensor], torch.Tensor] | None = None  # only inside ``dft_as_matmul``
        self.register_buffer("mean", torch.zeros(fb.shape[1]))
        self.register_buffer("std", torch.ones(fb.shape[1]))

    def log_spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        """Un-normalised log10(1 + filtered magnitude), shape (batch, bands, frames)."""
        return torch.log10(1.0 + self.filtered(self.level_normalize(wave)))

    def filtered(self, wave: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> (batch, bands, frames): the filterbank on the STFT magnitude, before the log.

        The magnitude is what ``self.stft`` (torchaudio's ``Spectrogram``: centred, reflection-padded, its
        periodic Hann window) computes, written as framing and a real FFT: onnxruntime runs the exported
        DFT about twice as fast as its STFT operator, and PyTorch runs it at least as fast as ``torch.stft``."""
        if self._export_filtered is not None:
            return self._export_filtered(wave)
        half = self.cfg.n_fft // 2
        frames = F.pad(wave.unsqueeze(1), (half, half), mode="reflect").squeeze(1).unfold(-1, self.cfg.n_fft,
                                                                                        self.cfg.hop_length)
        spectrum = torch.fft.rfft(frames * self.stft.window)  # (batch, frames, n_fft//2+1)
        # |X| as sqrt(re^2 + im^2): 1.7x faster than complex abs (a hypot, guarded against an overflow that
        # windowed audio cannot reach), within 1e-7 of it
        mag = torch.sqrt(spectrum.real.square() + spectrum.imag.square())
        return torch.matmul(mag, self.filterbank).transpose(1, 2)

    @contextmanager
    def dft_as_matmul(self) -> Iterator[None]:
        """Inside: ``filtered`` is ``midlevel.matmul_dft.MatmulSpectrogram`` (the same padding, then a grouped
        convolution and products with the window, twiddle factors and filterbank folded in) instead of ``unfold``
        and an FFT, for the ONNX export: onnxruntime runs those far faster than its DFT kernel (onnxruntime issue
        32403) and than the per-sample ``Gather`` that ``unfold`` exports as. PyTorch keeps the FFT outside."""
        self._export_filtered = matmul_spectrogram(self.stft.window, self.cfg.hop_length, self.filterbank)
        try:
            yield
        finally:
            self._export_filtered = None

    def n_frames(self, n_samples: int) -> int:
        return n_samples // self.cfg.hop_length + 1

    def edge_frames(self, window: int) -> tuple[int, int]:
        """(a, b): a window's frames ``0..a-1`` and ``b..`` reach past its edges (``center=True`` pads them by
        reflection), so they differ from the same frames of a longer signal; the frames between do not."""
        hop, half = self.cfg.hop_length, self.cfg.n_fft // 2
        return -(-half // hop), (window - half) // hop + 1

    def window_spectrograms(self, wave: torch.Tensor, starts: Sequence[int], window: int) -> torch.Tensor:
        """As the base class, but every STFT frame that windows on the same frame grid share is computed once.

        Windows whose starts differ by whole hops (the model's windows: ``ModelConfig.hop_samples`` is a
        whole number of hops; not the end-aligned last one) run as one STFT over their span; each window
        takes its frames from it, except its few edge frames (``edge_frames``), which are recomputed from the
        window's own ends so that they carry its reflection padding. The per-window level gain multiplies
        the filtered magnitude, as it would the samples (the STFT is linear). Equal to window by window
        within float rounding (``tests/test_frames_once.py``); half the STFT work at a half-window hop."""
        hop = self.cfg.hop_length
        n_frames = self.n_frames(window)
        first, last = self.edge_frames(window)
        if len(starts) < 2 or window < 2 * self.cfg.n_fft or last <= first:
            return super().window_spectrograms(wave, starts, window)
        rows: list[torch.Tensor] = []
        run: list[int] = []
        for start in [*starts, None]:  # runs of starts on one frame grid
            if start is not None and (not run or (start - run[0]) % hop == 0):
                run.append(start)
                continue
            if len(run) == 1:
                rows.append(super().window_spectrograms(wave, run, window).unflatten(0, (wave.shape[0], 1)))
            else:
                rows.append(self._grid_run(wave, run, window, n_frames, first, last))
            run = [start] if start is not None else []
        out = torch.cat(rows, dim=1)  # (B, W, 1, bands, frames)
        return out.reshape(-1, *out.shape[2:])

    def _grid_run(self, wave: torch.Tensor, starts: list[int], window: int, n_frames: int, first: int,
                  last: int) -> torch.Tensor:
        """``window_spectrograms`` of windows whose starts lie on one frame grid, (B, W, 1, bands, frames)."""
        hop, half = self.cfg.hop_length, self.cfg.n_fft // 2
        shared = self.filtered(wave[:, starts[0]:starts[-1] + window])  # (B, bands, frames of the span)
        offsets = torch.tensor([(s - starts[0]) // hop for s in starts])
        index = (offsets[:, None] + torch.arange(n_frames)[None, :]).reshape(-1)
        per_window = shared.index_select(-1, index).unflatten(-1, (len(starts), n_frames)).movedim(-2, 1)
        windows = torch.stack([wave[:, s:s + window] for s in starts], dim=1)  # (B, W, window)
        # the edge frames from each window's own ends: the left ones from its first samples, the right ones
        # from a tail that starts on the window's frame grid, `first` frames before the first right edge frame
        head = windows[..., :max((first - 1) * hop + half, half + 1)].flatten(0, 1)
        tail_start = (last - first) * hop
        tail = windows[..., tail_start:].flatten(0, 1)
        left = self.filtered(head)[..., :first].unflatten(0, windows.shape[:2])
        right = self.filtered(tail)[..., first:].unflatten(0, windows.shape[:2])
        per_window = torch.cat([left, per_window[..., first:last], right], dim=-1)
        gain = self.level_gain(windows)[..., None]  # (B, W, 1, 1)
        return self.normalize(torch.log10(1.0 + per_window * gain).flatten(0, 1)).unflatten(0, windows.shape[:2])


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
