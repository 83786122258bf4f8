"""Explanations to listen to: the part of a track that pushes an output most, and the rest.

In the style of audioLIME's listenable explanations, every split is exact: ``part + rest``
is the input. Three splits:

* time: the top segments (by a timeline's values) against everything else, with short
  raised-cosine fades inside the segments so the cuts do not click;
* time-frequency: the STFT cells where an attribution map is most positive, resynthesised by
  inverse STFT (same frame grid as the model's front-end), against the complementary cells;
* harmonic/percussive: librosa's median-filtering HPSS soft mask; the rest is percussive.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .._extras import require
from ..audio import Audio
from ..ioutil import atomic_path
from ..model import AudioModel
from .attribution import AttributionMaps
from .timeline import timeline


@dataclass(frozen=True)
class Listenable:
    """One split of a track: ``part + rest == input`` (float32 rounding aside)."""

    kind: str  # "time", "time-frequency" or "harmonic-percussive"
    description: str
    part: np.ndarray
    rest: np.ndarray
    sample_rate: int
    part_label: str = "the part"
    rest_label: str = "the rest"

    def write(self, directory: str | Path, stem: str) -> tuple[Path, Path]:
        """``<stem>_part.wav`` and ``<stem>_rest.wav``, 32-bit float so they still sum to the input."""
        paths = Path(directory) / f"{stem}_part.wav", Path(directory) / f"{stem}_rest.wav"
        for path, samples in zip(paths, (self.part, self.rest)):
            with atomic_path(path) as tmp:
                sf.write(tmp, samples, self.sample_rate, subtype="FLOAT", format="WAV")
        return paths


def top_segments(starts: np.ndarray, length: float, scores: np.ndarray, n: int = 1) -> list[tuple[float, float]]:
    """The ``n`` highest-scoring windows ``[start, start + length)`` that do not overlap, in time order."""
    chosen: list[tuple[float, float]] = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        a, b = float(starts[i]), float(starts[i]) + length
        if all(b <= lo or a >= hi for lo, hi in chosen):
            chosen.append((a, b))
        if len(chosen) == n:
            break
    return sorted(chosen)


def time_mask(n_samples: int, sample_rate: int, spans: list[tuple[float, float]], fade: float = 0.02) -> np.ndarray:
    """(n_samples,) weights: 1 inside the spans, 0 outside, raised-cosine ramps of ``fade`` s inside."""
    mask = np.zeros(n_samples, dtype=np.float32)
    for a, b in spans:
        lo, hi = max(0, int(round(a * sample_rate))), min(n_samples, int(round(b * sample_rate)))
        if hi <= lo:
            continue
        seg = np.ones(hi - lo, dtype=np.float32)
        ramp_len = min(int(fade * sample_rate), (hi - lo) // 2)
        ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp_len) + 0.5) / max(ramp_len, 1))).astype(np.float32)
        if lo > 0:
            seg[:ramp_len] = ramp
        if hi < n_samples:
            seg[len(seg) - ramp_len:] = ramp[::-1]
        mask[lo:hi] = np.maximum(mask[lo:hi], seg)
    return mask


def split_time(samples: np.ndarray, sample_rate: int, spans: list[tuple[float, float]], *,
               fade: float = 0.02, description: str = "") -> Listenable:
    """The spans against the rest of the track."""
    part = samples * time_mask(len(samples), sample_rate, spans, fade)
    label = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in spans)
    return Listenable("time", description or f"segments {label}", part, samples - part, sample_rate,
                      part_label=f"segments {label}", rest_label="everything else")


def bins_from_bands(band_scores: np.ndarray, filterbank: np.ndarray) -> np.ndarray:
    """(bands, frames) scores -> (FFT bins, frames): each bin gets the mean of the bands covering it."""
    cover = filterbank / np.maximum(filterbank.sum(axis=1, keepdims=True), 1e-12)
    return cover @ band_scores


def top_cells(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the ``fraction`` of cells with the highest positive score."""
    k = int(round(fraction * scores.size))
    if k == 0:
        return np.zeros(scores.shape, dtype=bool)
    threshold = np.partition(scores.ravel(), scores.size - k)[scores.size - k]
    return (scores >= threshold) & (scores > 0)


def _stft(samples: np.ndarray, n_fft: int, hop: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, dtype=torch.float64)
    return torch.stft(torch.from_numpy(samples.astype(np.float64)), n_fft, hop, window=window,
                      center=True, pad_mode="reflect", return_complex=True)


def _istft(spec: torch.Tensor, n_fft: int, hop: int, length: int) -> np.ndarray:
    window = torch.hann_window(n_fft, dtype=torch.float64)
    return torch.istft(spec, n_fft, hop, window=window, center=True, length=length).numpy()


def split_spectral(samples: np.ndarray, sample_rate: int, mask: np.ndarray, *, n_fft: int, hop: int,
                   kind: str, description: str, part_label: str, rest_label: str) -> Listenable:
    """Resynthesise ``mask * STFT`` and ``(1 - mask) * STFT``; ``mask`` is (bins, frames) in [0, 1]."""
    spec = _stft(samples, n_fft, hop)
    m = np.zeros(tuple(spec.shape))
    frames = min(m.shape[1], mask.shape[1])
    m[:, :frames] = mask[:, :frames]
    m = torch.from_numpy(m)
    part = _istft(spec * m, n_fft, hop, len(samples))
    rest = _istft(spec * (1 - m), n_fft, hop, len(samples))
    return Listenable(kind, description, part.astype(np.float32), rest.astype(np.float32), sample_rate,
                      part_label=part_label, rest_label=rest_label)


def split_time_frequency(samples: np.ndarray, sample_rate: int, band_map: np.ndarray, filterbank: np.ndarray,
                         *, n_fft: int, hop: int, fraction: float = 0.1, description: str = "") -> Listenable:
    """The ``fraction`` of time-frequency cells a (bands, frames) map scores highest, and the rest."""
    mask = top_cells(bins_from_bands(band_map, filterbank), fraction).astype(np.float64)
    return split_spectral(samples, sample_rate, mask, n_fft=n_fft, hop=hop, kind="time-frequency",
                          description=description or f"top {fraction:.0%} of time-frequency cells",
                          part_label=f"top {fraction:.0%} time-frequency cells", rest_label="the other cells")


def split_harmonic_percussive(samples: np.ndarray, sample_rate: int, *, n_fft: int, hop: int,
                              description: str = "") -> Listenable:
    """Harmonic part (HPSS soft mask) against the rest, which is the percussive part."""
    librosa = require("librosa", "report", "the harmonic/percussive listening view")
    magnitude = _stft(samples, n_fft, hop).abs().numpy()
    harmonic_mask, _ = librosa.decompose.hpss(magnitude, mask=True)
    return split_spectral(samples, sample_rate, harmonic_mask, n_fft=n_fft, hop=hop, kind="harmonic-percussive",
                          description=description or "harmonic and percussive parts (HPSS)",
                          part_label="harmonic", rest_label="percussive")


def listenable_parts(model: AudioModel, clip: Audio, name: str, maps: AttributionMaps, *,
                     segment_seconds: float = 3.0, n_segments: int = 2, tf_fraction: float = 0.1) -> list[Listenable]:
    """The three splits of ``clip`` for a target or concept ``name`` whose map ``maps`` holds.

    Time segments come from a timeline of ``segment_seconds`` windows every half of that: the
    stretches that, heard on their own, give ``name`` its highest values.
    """
    fe, sr = model.config.frontend, clip.sample_rate
    local = timeline(model, clip, window_seconds=segment_seconds, hop_seconds=segment_seconds / 2)
    spans = top_segments(local.starts, local.window_seconds, local.series(name), n_segments)
    return [
        split_time(clip.samples, sr, spans, description=f"the {segment_seconds:g} s segment(s) where {name} is "
                   f"highest, the model run on {segment_seconds:g} s windows every {segment_seconds / 2:g} s"),
        split_time_frequency(clip.samples, sr, maps.map(name), model.frontend.filterbank.numpy(),
                             n_fft=fe.n_fft, hop=fe.hop_length, fraction=tf_fraction,
                             description=f"the time-frequency cells whose attribution to {name} is highest"),
        split_harmonic_percussive(clip.samples, sr, n_fft=fe.n_fft, hop=fe.hop_length),
    ]

