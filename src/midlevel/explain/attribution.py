"""Explanations over the spectrogram: where in time and frequency each concept comes from.

Maps live on the backbone's input, the normalised log-frequency spectrogram (149 bands), and
are computed with captum through the backbone (the front-end's STFT is not attributed through).

A track is read as the mean of its windows, so a track's map is the sum of its windows' maps
placed at their times, divided by the number of windows: for a method with completeness
(integrated gradients) ``map.sum() == output - baseline_output`` holds for the track as it does
per window. Overlapping windows both count where they overlap, as they do in the model.

The baseline is silence (the normalised spectrogram of an all-zero signal), so a map says what
the sound adds relative to nothing playing.

A target's map is the sum of its concepts' maps, each scaled by the head's secant slope
``(f_tk(c_k) - f_tk(c0_k)) / (c_k - c0_k)`` between the silence concept ``c0`` and the track's
concept ``c``. For a linear head that is the weight, so the target map is exactly the target's
own attribution (integrated gradients and gradient x input are linear in the function they
explain); for any additive head it carries each concept's contribution change, so
``map.sum() == target - baseline_target`` whenever the concept maps are complete.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .._extras import require
from ..audio import pad_to_length
from ..model import AudioModel, TwoStageModel, window_starts
from ..model import stream_windows

#: (net, spectrograms (B,1,F,N), silence baseline like them, output index, options) -> (B,1,F,N)
AttributeFn = Callable[..., torch.Tensor]


class SpectrogramNet(nn.Module):
    """Normalised spectrogram -> the outputs being explained: concepts, or targets.

    A private copy of the model's layers with in-place ReLUs turned off, because captum's
    DeepLIFT and LRP hooks cannot follow tensors modified in place, and with the backbone's
    final ``Flatten`` done functionally, because captum's LRP has no rule for that module.
    """

    def __init__(self, model: AudioModel, outputs: str) -> None:
        super().__init__()
        if isinstance(model.backbone, nn.Sequential):
            self.backbone = nn.Sequential(*(copy.deepcopy(m) for m in model.backbone.children()
                                            if not isinstance(m, nn.Flatten)))
        else:  # a backbone with branches (compact_music) is copied whole
            self.backbone = copy.deepcopy(model.backbone)
        for module in self.backbone.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = False
        if isinstance(model, TwoStageModel):
            if outputs not in ("concepts", "targets"):
                raise ValueError(f"outputs must be 'concepts' or 'targets', got {outputs!r}")
            layers = [copy.deepcopy(model.concept_layer)]
            if outputs == "targets":
                layers.append(copy.deepcopy(model.head))
            self.names = list(model.config.concept_names if outputs == "concepts" else model.config.target_names)
        else:
            if outputs != "targets":
                raise ValueError(f"{model.name} is a black box: only its targets can be explained")
            layers = [copy.deepcopy(model.target_layer)]
            self.names = list(model.config.target_names)
        self.top = nn.Sequential(*layers)
        self.outputs = outputs
        self.eval()

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.top(torch.flatten(self.backbone(spec), 1))


@dataclass(frozen=True)
class AttributionMaps:
    """One map per explained output over a track's spectrogram, with its time and frequency axes."""

    names: list[str]
    maps: np.ndarray  # (D, bands, frames)
    spectrogram: np.ndarray  # (bands, frames) log10(1 + magnitude), for display
    frame_times: np.ndarray  # (frames,) seconds of each frame's centre
    band_frequencies: np.ndarray  # (bands,) centre frequency in Hz
    outputs: np.ndarray  # (D,) track value explained: mean over windows
    baseline_outputs: np.ndarray  # (D,) value for silence
    method: str
    kind: str  # "concepts" or "targets"
    source: str
    model_name: str
    duration: float

    def map(self, name: str) -> np.ndarray:
        if name not in self.names:
            raise KeyError(f"no map for {name!r}; maps are for {self.names}")
        return self.maps[self.names.index(name)]

    def over_time(self, name: str) -> np.ndarray:
        """(frames,) attribution summed over frequency: when the sound pushed ``name``."""
        return self.map(name).sum(axis=0)

    def plot(self, name: str, path: str | Path | None = None):
        require("matplotlib", "report", "AttributionMaps.plot")
        from .views_plotting import plot_attribution

        return plot_attribution(self, name, path)


def captum_attr() -> Any:
    """``captum.attr``, imported when a map is computed (captum comes with the ``report`` extra)."""
    return require("captum.attr", "report", "attribution maps")


def band_frequencies(model: AudioModel) -> np.ndarray:
    """Centre (peak) frequency of each filterbank band in Hz."""
    cfg = model.config.frontend
    return model.frontend.filterbank.argmax(dim=0).double().numpy() * cfg.sample_rate / cfg.n_fft


def silence(model: AudioModel, frames: int) -> torch.Tensor:
    """(1, 1, bands, frames) normalised spectrogram of an all-zero signal."""
    return model.frontend.normalize(torch.zeros(1, model.frontend.n_bands, frames))


def gradient_x_input(net: nn.Module, spec: torch.Tensor, baseline: torch.Tensor, index: int) -> torch.Tensor:
    """Gradient times (input - silence): one backward pass, first-order."""
    return captum_attr().InputXGradient(lambda x: net(x + baseline)).attribute((spec - baseline).requires_grad_(), target=index)


def integrated_gradients(net: nn.Module, spec: torch.Tensor, baseline: torch.Tensor, index: int,
                         *, n_steps: int = 32) -> torch.Tensor:
    """Integrated gradients from silence: sums to output - silence output (up to the quadrature)."""
    return captum_attr().IntegratedGradients(net).attribute(spec, baselines=baseline, target=index, n_steps=n_steps,
                                                            internal_batch_size=max(n_steps, 32))


METHODS: dict[str, AttributeFn] = {"integrated_gradients": integrated_gradients,
                                   "gradient_x_input": gradient_x_input}


def track_spectrogram(model: AudioModel, samples: np.ndarray, chunk_frames: int = 1024) -> np.ndarray:
    """(bands, frames) log spectrogram of the whole track, computed in chunks of frames.

    Equal to ``frontend.log_spectrogram(samples)`` (same frames, same reflect padding at the
    track's ends) without holding the full-track STFT: each chunk carries enough context frames
    that its kept frames never see the chunk's own padding.
    """
    hop = model.config.frontend.hop_length
    context = model.config.frontend.n_fft // 2 // hop + 1
    n_frames = model.frontend.n_frames(len(samples))
    out = np.empty((model.frontend.n_bands, n_frames), dtype=np.float32)
    for f0 in range(0, n_frames, chunk_frames):
        f1 = min(n_frames, f0 + chunk_frames)
        lo, hi = max(0, f0 - context), f1 + context
        segment = samples[lo * hop:] if hi >= n_frames else samples[lo * hop:(hi - 1) * hop + 1]
        with torch.no_grad():
            spec = model.frontend.log_spectrogram(torch.from_numpy(np.ascontiguousarray(segment))[None])[0]
        out[:, f0:f1] = spec[:, f0 - lo:f1 - lo].numpy()
    return out


def track_maps(model: AudioModel, audio: Any, attribute: AttributeFn, *, outputs: str = "concepts",
               method: str = "", sample_rate: int | None = None, batch_size: int = 4,
               **options: Any) -> AttributionMaps:
    """Run ``attribute`` on every window of the model and stitch the windows into track maps.

    A window starting between two frames of the track's grid is split between them in
    proportion, which keeps each map's sum and its centre of mass in time.
    """
    captum_attr()  # before any work: a missing extra is one line
    clip = model.read_audio(audio, sample_rate=sample_rate)
    cfg, frontend = model.config, model.frontend
    net = SpectrogramNet(model, outputs)
    window, hop_length = cfg.window_samples, cfg.frontend.hop_length
    samples, _ = pad_to_length(clip.samples, window)
    starts = window_starts(len(samples), window, cfg.hop_samples)
    win_frames, n_frames = frontend.n_frames(window), frontend.n_frames(len(samples))
    maps = np.zeros((len(net.names), frontend.n_bands, n_frames + 1), dtype=np.float32)
    out_sum = np.zeros(len(net.names))
    base = silence(model, win_frames)
    with torch.no_grad():
        baseline_out = net(base)[0].double().numpy()
    done = 0
    for batch in stream_windows(samples, window, cfg.hop_samples, batch_size):
        with torch.no_grad():
            spec = frontend(torch.from_numpy(batch))
            out_sum += net(spec).double().sum(0).numpy()
        baseline = base.expand_as(spec)
        per_output = [attribute(net, spec, baseline, d, **options).detach()[:, 0].numpy()
                      for d in range(len(net.names))]
        for b in range(len(batch)):
            first, frac = divmod(starts[done + b] / hop_length, 1.0)
            first = int(first)
            for d, attr in enumerate(per_output):
                maps[d, :, first:first + win_frames] += (1.0 - frac) * attr[b]
                maps[d, :, first + 1:first + 1 + win_frames] += frac * attr[b]
        done += len(batch)
    maps[:, :, -2] += maps[:, :, -1]  # a share that fell past the last frame stays in it
    return AttributionMaps(
        names=net.names, maps=maps[:, :, :-1] / len(starts), spectrogram=track_spectrogram(model, samples),
        frame_times=np.arange(n_frames) * hop_length / cfg.sample_rate,
        band_frequencies=band_frequencies(model), outputs=out_sum / len(starts),
        baseline_outputs=baseline_out, method=method, kind=outputs, source=clip.source,
        model_name=model.name, duration=clip.duration,
    )


def concept_maps(model: TwoStageModel, audio: Any, *, method: str = "integrated_gradients",
                 sample_rate: int | None = None, batch_size: int = 4, **options: Any) -> AttributionMaps:
    """A map per concept of a two-stage model (``method``: integrated_gradients or gradient_x_input)."""
    if not isinstance(model, TwoStageModel):
        raise TypeError(f"{model.name} has no concepts; use posthoc.posthoc_maps for black boxes")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    return track_maps(model, audio, METHODS[method], outputs="concepts", method=method,
                      sample_rate=sample_rate, batch_size=batch_size, **options)


def secant_slopes(model: TwoStageModel, concepts: np.ndarray, baseline: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """(T, K) slope of each head term between the baseline concept and the concept.

    Where the two are closer than ``eps`` the central difference at ``concepts`` is used.
    """
    head = model.head
    far = np.abs(concepts - baseline) >= eps
    lo = np.where(far, baseline, concepts - eps)
    hi = np.where(far, concepts, concepts + eps)
    terms = head.contributions(np.stack([lo, hi]))  # (2, T, K)
    return (terms[1] - terms[0]) / (hi - lo)[None, :]


def target_maps(model: TwoStageModel, maps: AttributionMaps) -> AttributionMaps:
    """Each target's map: its concepts' maps weighted by the head's secant slopes (module doc)."""
    if maps.kind != "concepts":
        raise ValueError("target_maps combines concept maps; these are maps of targets already")
    slopes = secant_slopes(model, maps.outputs, maps.baseline_outputs)
    combined = np.einsum("tk,kfn->tfn", slopes, maps.maps.astype(np.float64)).astype(np.float32)
    head_out = model.head.predict(np.stack([maps.outputs, maps.baseline_outputs]))
    return replace(maps, names=list(model.config.target_names), maps=combined, outputs=head_out[0],
                   baseline_outputs=head_out[1], kind="targets")
