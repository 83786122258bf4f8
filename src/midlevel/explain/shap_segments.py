"""Interpretable input segments for post-hoc explanation: time segments x frequency bands.

Like audioLIME's time-frequency factorization, a track's spectrogram is cut into an
``n_time`` x ``n_freq`` grid of named segments. A segment that is "absent" is replaced by the
baseline: **the clip's mean spectrum** (each band's mean over all frames of the track), so
removing a segment removes what changes over time there and keeps the clip's overall timbre,
and the model never sees values it was not trained on (silence would be far outside).

Segments live in track time, not window time: a track longer than one model window is cut
into windows exactly as ``AudioModel.per_window`` does, every frame of every window is assigned
to the time segment that holds its centre, and a masked track's output is the mean of its
windows' outputs -- so with every segment present the value is the model's own track output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..audio import pad_to_length
from ..model import AudioModel, window_starts


def _edges(n: int, parts: int) -> list[np.ndarray]:
    """``parts`` contiguous, nearly equal index groups of ``range(n)``."""
    if not 1 <= parts <= n:
        raise ValueError(f"cannot cut {n} items into {parts} segments")
    return np.array_split(np.arange(n), parts)


@dataclass
class TimeFrequencySegments:
    """One track's window spectrograms, the baseline, and which segment holds each pixel."""

    spectrograms: torch.Tensor  # (W, 1, bands, frames), normalised as the model sees them
    baseline: torch.Tensor  # (W, 1, bands, frames): the clip's mean spectrum in every frame
    segment_of: torch.Tensor  # (W, bands, frames) int64 segment index
    names: list[str]  # "t0.0-1.2s f20-150Hz", time-major: index = time * n_freq + band group
    n_time: int
    n_freq: int
    source: str

    @property
    def n_segments(self) -> int:
        return self.n_time * self.n_freq

    @classmethod
    def from_audio(cls, model: AudioModel, audio: Any, *, n_time: int = 8, n_freq: int = 4,
                   sample_rate: int | None = None) -> "TimeFrequencySegments":
        """Decode ``audio``, window it as the model does, and grid its spectrogram."""
        cfg = model.config
        clip = model.read_audio(audio, sample_rate=sample_rate)
        samples, _ = pad_to_length(clip.samples, cfg.window_samples)
        starts = window_starts(len(samples), cfg.window_samples, cfg.hop_samples)
        windows = torch.from_numpy(np.stack([samples[s:s + cfg.window_samples] for s in starts]))
        with torch.no_grad():
            spec = model.frontend(windows)
        n_windows, _, n_bands, n_frames = spec.shape
        clip_mean = spec.mean(dim=(0, 3), keepdim=True)  # (1, 1, bands, 1)
        baseline = clip_mean.expand_as(spec).contiguous()

        hop = model.frontend.cfg.hop_length
        centres = np.asarray(starts)[:, None] + hop * np.arange(n_frames)[None, :]  # (W, frames)
        time_of = np.minimum(centres * n_time // len(samples), n_time - 1)
        band_of = np.empty(n_bands, dtype=np.int64)
        for group, bands in enumerate(_edges(n_bands, n_freq)):
            band_of[bands] = group
        segment_of = time_of[:, None, :] * n_freq + band_of[None, :, None]

        fe = model.frontend.cfg
        centre_hz = model.frontend.filterbank.argmax(dim=0).numpy() * fe.sample_rate / fe.n_fft
        seconds = len(samples) / fe.sample_rate
        names = [f"t{seconds * t / n_time:.1f}-{seconds * (t + 1) / n_time:.1f}s "
                 f"f{centre_hz[bands[0]]:.0f}-{centre_hz[bands[-1]]:.0f}Hz"
                 for t in range(n_time) for bands in _edges(n_bands, n_freq)]
        return cls(spec, baseline, torch.from_numpy(segment_of), names, n_time, n_freq, clip.source)

    def compose(self, keep: np.ndarray) -> torch.Tensor:
        """(B, M) presence masks -> (B * W, 1, bands, frames) spectrograms, baseline where absent."""
        keep = torch.as_tensor(np.asarray(keep) > 0.5)
        if keep.ndim != 2 or keep.shape[1] != self.n_segments:
            raise ValueError(f"masks must have shape (n, {self.n_segments}); got {tuple(keep.shape)}")
        present = keep[:, self.segment_of].unsqueeze(2)  # (B, W, 1, bands, frames)
        mixed = torch.where(present, self.spectrograms.unsqueeze(0), self.baseline.unsqueeze(0))
        return mixed.flatten(0, 1)

    @torch.no_grad()
    def value(self, model: AudioModel, keep: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
        """(B, M) masks -> (B, D) track outputs (mean over windows) of the masked spectrograms."""
        keep = np.atleast_2d(keep)
        n_windows = self.spectrograms.shape[0]
        rows_per_batch = max(1, batch_size // n_windows)
        out = []
        for i in range(0, len(keep), rows_per_batch):
            spec = self.compose(keep[i:i + rows_per_batch])
            y = model.outputs_from_spectrogram(spec).double().numpy()
            out.append(y.reshape(-1, n_windows, y.shape[-1]).mean(axis=1))
        return np.concatenate(out)

    def pool(self, pixel_values: np.ndarray) -> np.ndarray:
        """(W, bands, frames, D) per-pixel attributions -> (D, M): segment sums, mean over windows."""
        values = torch.as_tensor(pixel_values, dtype=torch.float64).flatten(0, 2)
        sums = torch.zeros(self.n_segments, values.shape[-1], dtype=torch.float64)
        sums.index_add_(0, self.segment_of.flatten(), values)
        return (sums / self.spectrograms.shape[0]).T.numpy()
