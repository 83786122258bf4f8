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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .._extras import require
from ..audio import pad_to_length
from ..model import AudioModel, TwoStageModel, window_starts
from ..model import stream_windows
from ..numerics import flush_denormals

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

    def fold_batch_norms(self) -> SpectrogramNet:
        """Fold each BatchNorm into the convolution just before it, in place; returns the net.

        The same function in eval mode (up to float rounding) with fewer operations to run and
        differentiate through: about 12% off a gradient. Only for plain gradients: captum's LRP and
        DeepLIFT have rules of their own for BatchNorm layers.
        """
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        for parent in self.modules():
            children = list(parent.named_children())
            for (name, conv), (bn_name, bn) in zip(children, children[1:]):
                if (isinstance(conv, (nn.Conv1d, nn.Conv2d)) and isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d))
                        and bn.track_running_stats):
                    setattr(parent, name, fuse_conv_bn_eval(conv, bn))
                    setattr(parent, bn_name, nn.Identity())
        return self


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
    #: full-resolution (bands, window frames) maps of single windows asked for by ``track_maps(keep=...)``,
    #: by (window start in samples, output index)
    windows: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)

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


def gradient_x_input_outputs(net: nn.Module, spec: torch.Tensor, baseline: torch.Tensor,
                             indices: Sequence[int] | None = None) -> np.ndarray:
    """(B, len(indices), bands, frames) ``gradient_x_input`` of several outputs from one forward pass.

    Equal to calling ``gradient_x_input`` once per output (captum runs the forward pass again for
    each), in plain torch: the graph is kept between the outputs' backward passes, and only the
    input's gradient is computed, not the parameters'. Windows are independent (eval mode), so
    the gradient of an output summed over the batch is each window's own gradient.
    """
    x = spec.detach().clone().requires_grad_()
    with torch.enable_grad():
        out = net(x)
        indices = range(out.shape[1]) if indices is None else indices
        grads = [torch.autograd.grad(out[:, d].sum(), x, retain_graph=i < len(indices) - 1)[0][:, 0]
                 for i, d in enumerate(indices)]
    return (torch.stack(grads, 1) * (spec - baseline)).detach().numpy()


#: methods with a faster path for several outputs at once: (net, spec, baseline, indices) -> (B, D, bands, frames)
ALL_OUTPUTS: dict[AttributeFn, Callable[..., np.ndarray]] = {gradient_x_input: gradient_x_input_outputs}


def attribute_outputs(attribute: AttributeFn, net: nn.Module, spec: torch.Tensor, baseline: torch.Tensor,
                      indices: Sequence[int] | None = None, **options: Any) -> np.ndarray:
    """(B, D, bands, frames) maps of the outputs ``indices`` (default: all), through ``ALL_OUTPUTS`` when it can."""
    indices = list(range(len(net.names)) if indices is None else indices)
    if attribute in ALL_OUTPUTS and not options:
        return ALL_OUTPUTS[attribute](net, spec, baseline, indices)
    return np.stack([attribute(net, spec, baseline, d, **options).detach()[:, 0].numpy() for d in indices], 1)


def column_edges(n_frames: int, step: int) -> np.ndarray:
    """First frame of each column when frames are grouped ``step`` at a time (the last column may be short)."""
    return np.arange(0, n_frames, step)


def column_times(n_frames: int, step: int, seconds_per_frame: float) -> np.ndarray:
    """(columns,) seconds of each column's centre: the mean of its frames' centres."""
    first = column_edges(n_frames, step)
    last = np.minimum(first + step, n_frames) - 1
    return (first + last) / 2 * seconds_per_frame


def track_spectrogram(model: AudioModel, samples: np.ndarray, chunk_frames: int = 1024,
                      frame_step: int = 1) -> np.ndarray:
    """(bands, frames) log spectrogram of the whole track, computed in chunks of frames.

    Equal to ``frontend.log_spectrogram(samples)`` (same frames, same reflect padding at the
    track's ends) without holding the full-track STFT: each chunk carries enough context frames
    that its kept frames never see the chunk's own padding. With ``frame_step`` > 1 each column
    is the mean of ``frame_step`` frames (``column_times``), so a long track's display copy stays small.
    """
    hop = model.config.frontend.hop_length
    context = model.config.frontend.n_fft // 2 // hop + 1
    n_frames = model.frontend.n_frames(len(samples))
    chunk_frames = -(-chunk_frames // frame_step) * frame_step  # whole columns per chunk
    out = np.empty((model.frontend.n_bands, -(-n_frames // frame_step)), dtype=np.float32)
    for f0 in range(0, n_frames, chunk_frames):
        f1 = min(n_frames, f0 + chunk_frames)
        lo, hi = max(0, f0 - context), f1 + context
        segment = samples[lo * hop:] if hi >= n_frames else samples[lo * hop:(hi - 1) * hop + 1]
        with torch.no_grad():
            spec = model.frontend.log_spectrogram(torch.from_numpy(np.ascontiguousarray(segment))[None])[0]
        kept = spec[:, f0 - lo:f1 - lo].numpy()
        if frame_step == 1:
            out[:, f0:f1] = kept
        else:
            edges = column_edges(f1 - f0, frame_step)
            counts = np.diff(np.r_[edges, f1 - f0])
            out[:, f0 // frame_step:f0 // frame_step + len(edges)] = np.add.reduceat(kept, edges, axis=1) / counts
    return out


def place_window(maps: np.ndarray, attr: np.ndarray, first: int, frac: float, frame_step: int = 1) -> None:
    """Add one window's (D, bands, frames) map starting at frame ``first + frac`` into ``maps``' columns.

    The window is split between frames ``first`` and ``first + 1`` in proportion (which keeps
    the map's sum and its centre of mass in time); a share past the last column stays in it.
    """
    n = attr.shape[-1]
    shifted = np.zeros(attr.shape[:-1] + (n + 1,), dtype=np.float32)
    shifted[..., :n] = (1.0 - frac) * attr
    shifted[..., 1:] += frac * attr
    cols = np.minimum((first + np.arange(n + 1)) // frame_step, maps.shape[-1] - 1)
    starts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
    maps[..., cols[starts]] += np.add.reduceat(shifted, starts, axis=-1)


def track_maps(model: AudioModel, audio: Any, attribute: AttributeFn, *, outputs: str = "concepts",
               method: str = "", sample_rate: int | None = None, batch_size: int = 4,
               hop_seconds: float | None = None, frame_step: int = 1,
               keep: Mapping[int, Sequence[int]] | None = None, **options: Any) -> AttributionMaps:
    """Run ``attribute`` on every window of the model and stitch the windows into track maps.

    A window starting between two frames of the track's grid is split between them in
    proportion, which keeps each map's sum and its centre of mass in time. ``hop_seconds``:
    windows of the model's length at another hop (the window length itself tiles the track, each
    frame attributed once, at half the cost of the usual half-window hop); the maps are then the
    mean over those windows. ``frame_step``: columns of that many frames, summed (the
    attributions add up), with the spectrogram averaged alike: a display's resolution without
    holding the full-resolution maps of a long track. ``keep``: {window start (samples): output
    indices} whose single-window maps to keep at full resolution (``AttributionMaps.windows``).
    """
    fast = attribute in ALL_OUTPUTS and not options
    if not fast:
        captum_attr()  # before any work: a missing extra is one line
    clip = model.read_audio(audio, sample_rate=sample_rate)
    cfg, frontend = model.config, model.frontend
    net = SpectrogramNet(model, outputs)
    if fast:
        net.fold_batch_norms()
    window, hop_length = cfg.window_samples, cfg.frontend.hop_length
    hop = cfg.hop_samples if hop_seconds is None else max(1, int(round(hop_seconds * cfg.sample_rate)))
    samples, _ = pad_to_length(clip.samples, window)
    starts = window_starts(len(samples), window, hop)
    win_frames, n_frames = frontend.n_frames(window), frontend.n_frames(len(samples))
    maps = np.zeros((len(net.names), frontend.n_bands, -(-n_frames // frame_step)), dtype=np.float32)
    out_sum = np.zeros(len(net.names))
    base = silence(model, win_frames)
    with torch.no_grad():
        baseline_out = net(base)[0].double().numpy()
    done, kept = 0, {}
    with flush_denormals():
        for batch in stream_windows(samples, window, hop, batch_size):
            with torch.no_grad():
                spec = frontend(torch.from_numpy(batch))
                out_sum += net(spec).double().sum(0).numpy()
            attrs = attribute_outputs(attribute, net, spec, base.expand_as(spec), **options)
            for b in range(len(batch)):
                first, frac = divmod(starts[done + b] / hop_length, 1.0)
                place_window(maps, attrs[b], int(first), frac, frame_step)
                for d in (keep or {}).get(starts[done + b], ()):
                    kept[starts[done + b], d] = attrs[b, d].copy()
            done += len(batch)
    return AttributionMaps(
        names=net.names, maps=maps / len(starts),
        spectrogram=track_spectrogram(model, samples, frame_step=frame_step),
        frame_times=column_times(n_frames, frame_step, hop_length / cfg.sample_rate),
        band_frequencies=band_frequencies(model), outputs=out_sum / len(starts),
        baseline_outputs=baseline_out, method=method, kind=outputs, source=clip.source,
        model_name=model.name, duration=clip.duration, windows=kept,
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
                   baseline_outputs=head_out[1], kind="targets", windows={})
