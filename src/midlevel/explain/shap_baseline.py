"""Post-hoc SHAP for the black box (A2E): attributions per target over input segments.

The black box has no concepts, so the only thing SHAP can name is where in the input the
output came from: time x frequency segments of the spectrogram (``shap_segments``). Three
explainers, all additive -- ``expected_value + values.sum(-1) == output`` per target:

* ``"permutation"``: shap's ``PermutationExplainer`` over segment presence (antithetic
  permutations; exact Shapley values as ``max_evals`` grows, additive at any budget);
* ``"partition"``: shap's ``PartitionExplainer`` with a hierarchy of neighbouring segments
  (Owen values: additive, a budget-friendly cousin of Shapley values);
* ``"deep"``: shap's ``DeepExplainer`` (DeepLIFT rescale rules) on every spectrogram pixel with
  the baseline spectrogram as reference, summed into the same segments. It needs no sampling
  and is additive up to float error for the ReLU/BN/pooling networks of ``backbones``
  (``GradientExplainer`` is not: its sums only approximate the output difference). Its rules
  cover standard layers only, so it is refused for backbones with other operations
  (``deep_unsupported_layers``), e.g. the music descriptors of ``compact_music``;
* ``"gradient"``: shap's ``GradientExplainer`` (expected gradients: gradients at random points
  between the baseline and the input, times their difference), for any differentiable backbone;
  additive in expectation only, so its ``additivity_error`` shrinks with ``gradient_samples``.

``expected_value`` is the output for the baseline track (every segment replaced by the clip's
mean spectrum), the same reference for all three, so their values are directly comparable.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import shap
import torch
from scipy.cluster.hierarchy import linkage
from torch import nn
from tqdm.auto import tqdm

from ..config import ConfigError
from ..model import BlackBoxModel
from ..numerics import eval_mode
from .shap_segments import TimeFrequencySegments

METHODS = ("permutation", "partition", "deep", "gradient")
#: shap's own bound for "the SHAP explanations sum up to the model's output" (DeepExplainer's
#: check_additivity), in target units.
ADDITIVITY_TOLERANCE = 1e-2
#: layers whose DeepLIFT rules shap's DeepExplainer implements (or that pass values through linearly)
DEEP_LAYERS = (nn.Sequential, nn.Conv2d, nn.BatchNorm2d, nn.BatchNorm1d, nn.ReLU, nn.MaxPool2d,
               nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.Dropout, nn.Flatten, nn.Linear)


def deep_unsupported_layers(model: BlackBoxModel) -> list[str]:
    """Names of the backbone's layers DeepExplainer has no rule for (empty: ``"deep"`` is exact)."""
    return sorted({type(m).__name__ for m in model.backbone.modules() if not isinstance(m, DEEP_LAYERS)})


def gradient_based_method(model: BlackBoxModel) -> str:
    """The gradient-based SHAP variant for this black box: DeepSHAP where its rules apply, else expected gradients."""
    return "gradient" if deep_unsupported_layers(model) else "deep"


@dataclass
class SegmentShap:
    """SHAP values of one track: per target, one value per time-frequency segment."""

    source: str
    model_name: str
    method: str
    segment_names: list[str]
    target_names: list[str]
    values: np.ndarray  # (T, M)
    expected_value: np.ndarray  # (T,) output for the all-baseline track
    output: np.ndarray  # (T,) the model's output for the track
    n_time: int
    n_freq: int
    seconds: float  # wall time of this explanation, decoding included
    n_evaluations: int  # forward passes (masked tracks) or backward passes (deep, per window x target)

    def additivity_error(self) -> float:
        """max_t |expected_value + sum of values - output|: 0 up to float error for permutation, partition
        and DeepSHAP; expected gradients ("gradient") add up only in expectation."""
        return float(np.abs(self.expected_value + self.values.sum(-1) - self.output).max())

    def grid(self, target: str) -> np.ndarray:
        """(n_freq, n_time) values of one target, lowest band first: for plotting over time."""
        t = self.target_names.index(target)
        return self.values[t].reshape(self.n_time, self.n_freq).T

    def top(self, k: int = 3, target: str | None = None) -> pd.DataFrame:
        """The k segments with the largest absolute value for each target (or one)."""
        rows = []
        for name in [target] if target is not None else self.target_names:
            t = self.target_names.index(name)
            for rank, j in enumerate(np.argsort(-np.abs(self.values[t]), kind="stable")[:k], start=1):
                rows.append({"target": name, "rank": rank, "segment": self.segment_names[j],
                             "shap": float(self.values[t, j])})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "model": self.model_name, "method": self.method,
            "seconds": self.seconds, "n_evaluations": self.n_evaluations,
            "additivity_error": self.additivity_error(),
            "expected_value": dict(zip(self.target_names, map(float, self.expected_value))),
            "output": dict(zip(self.target_names, map(float, self.output))),
            "values": {t: dict(zip(self.segment_names, map(float, self.values[i])))
                       for i, t in enumerate(self.target_names)},
        }


def segment_hierarchy(n_time: int, n_freq: int) -> np.ndarray:
    """Ward linkage of the segments' grid positions: neighbours in time and frequency merge first."""
    time_idx, band_idx = np.divmod(np.arange(n_time * n_freq), n_freq)
    return linkage(np.stack([time_idx, band_idx], axis=1).astype(float), method="ward")


def _masked_explainer(method: str, value, n_time: int, n_freq: int, seed: int):
    """A shap explainer of presence masks: background all-absent (0), the track all-present (1)."""
    absent = np.zeros((1, n_time * n_freq))
    if method == "permutation":
        return shap.PermutationExplainer(value, shap.maskers.Independent(absent), seed=seed)
    masker = shap.maskers.Partition(absent, clustering=segment_hierarchy(n_time, n_freq))
    return shap.PartitionExplainer(value, masker)


def _deep_network(model: BlackBoxModel) -> nn.Module:
    """Spectrogram -> targets as a plain Sequential copy (DeepExplainer hooks each module;
    in-place ReLUs would overwrite the activations its rules need)."""
    net = nn.Sequential(copy.deepcopy(model.backbone), copy.deepcopy(model.target_layer)).eval()
    for module in net.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return net


def _deep_values(model: BlackBoxModel, segments: TimeFrequencySegments, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """(T, M) segment values and (T,) expected value from per-pixel DeepLIFT, window by window."""
    explainer = shap.DeepExplainer(_deep_network(model), segments.baseline[:1])
    pixel = []
    for w in tqdm(range(len(segments.spectrograms)), desc="DeepSHAP windows", disable=not progress, leave=False):
        values = explainer.shap_values(segments.spectrograms[w:w + 1], check_additivity=False)
        pixel.append(np.asarray(values)[0, 0])  # (bands, frames, T)
    return segments.pool(np.stack(pixel)), np.asarray(explainer.expected_value, dtype=np.float64)


def _gradient_values(model: BlackBoxModel, segments: TimeFrequencySegments, n_samples: int, seed: int,
                     progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """(T, M) segment values and (T,) expected value from expected gradients, window by window."""
    net = _deep_network(model)
    explainer = shap.GradientExplainer(net, segments.baseline[:1], batch_size=n_samples)
    pixel = []
    for w in tqdm(range(len(segments.spectrograms)), desc="GradientSHAP windows", disable=not progress, leave=False):
        values = explainer.shap_values(segments.spectrograms[w:w + 1], nsamples=n_samples, rseed=seed + w)
        pixel.append(np.asarray(values)[0, 0])  # (bands, frames, T)
    with torch.no_grad():
        expected = net(segments.baseline[:1])[0].double().numpy()
    return segments.pool(np.stack(pixel)), expected


def explain_segments(model: BlackBoxModel, audio: Any, *, method: str = "permutation", n_time: int = 8,
                     n_freq: int = 4, max_evals: int = 500, batch_size: int = 32, seed: int = 0,
                     progress: bool = True, sample_rate: int | None = None,
                     gradient_samples: int = 32) -> SegmentShap:
    """SHAP values of a black box's targets over an ``n_time`` x ``n_freq`` grid of segments.

    ``max_evals`` bounds the masked tracks evaluated by the permutation and partition
    explainers (each costs one forward pass per window); the permutation explainer needs at
    least ``2 * n_time * n_freq + 1``. ``"deep"`` and ``"gradient"`` ignore it; ``"gradient"``
    averages ``gradient_samples`` gradients per window and target.
    """
    if method not in METHODS:
        raise ValueError(f"unknown SHAP method {method!r}; choose from {METHODS}")
    if not isinstance(model, BlackBoxModel):
        raise TypeError(f"input-space SHAP explains a black box (BlackBoxModel), not a {type(model).__name__}")
    if method == "deep" and (unsupported := deep_unsupported_layers(model)):
        raise ConfigError(f"DeepExplainer has no rules for {', '.join(unsupported)} in {model.name}'s backbone "
                         "(its values would not add up); use method='gradient'")
    started = time.perf_counter()
    with eval_mode(model):
        segments = TimeFrequencySegments.from_audio(model, audio, n_time=n_time, n_freq=n_freq,
                                                    sample_rate=sample_rate)
        output = segments.value(model, np.ones((1, segments.n_segments)))[0]
        if method == "deep":
            values, expected = _deep_values(model, segments, progress)
            n_evaluations = len(segments.spectrograms) * len(expected)
        elif method == "gradient":
            values, expected = _gradient_values(model, segments, gradient_samples, seed, progress)
            n_evaluations = len(segments.spectrograms) * len(expected) * gradient_samples
        else:
            bar = tqdm(total=max_evals, desc=f"{method} SHAP", unit="eval", disable=not progress, leave=False)
            evaluated = [0]

            def value(keep: np.ndarray) -> np.ndarray:
                bar.update(len(keep))
                evaluated[0] += len(keep)
                return segments.value(model, keep, batch_size=batch_size)

            with bar:
                explainer = _masked_explainer(method, value, n_time, n_freq, seed)
                result = explainer(np.ones((1, segments.n_segments)), max_evals=max_evals,
                                   batch_size=batch_size, silent=True)
            values, expected = result.values[0].T, np.asarray(result.base_values[0], dtype=np.float64)
            n_evaluations = evaluated[0]
    return SegmentShap(
        source=segments.source, model_name=model.name, method=method, segment_names=segments.names,
        target_names=list(model.config.target_names), values=np.asarray(values, dtype=np.float64),
        expected_value=expected, output=output, n_time=n_time, n_freq=n_freq,
        seconds=time.perf_counter() - started, n_evaluations=int(n_evaluations),
    )
