"""Relevance over time on one grid, for any explanation, and where it falls in a known segmentation.

Post-hoc explanations of a black box and the intrinsic timeline of a two-stage model live on different
grids: captum's occlusion on spectrogram frames, SHAP on time segments, the timeline on short windows.
``OverTime`` puts each on the front-end's frames of the whole track (frame ``f`` at ``f * hop_length /
sample_rate`` seconds, 10 ms for the heart models), one value per frame, so that the same bookkeeping reads
them all:

* ``occlusion_over_time``: captum's ``Occlusion`` on the front-end output (the normalised log spectrogram),
  a patch of every band and ``patch_seconds`` sliding every ``stride_seconds`` over each model window,
  replaced by the clip's mean spectrum (``shap_segments``'s baseline, so occlusion and SHAP remove the same
  thing). A frame's value is the mean drop of the explained output over the patches that cover it; a
  track's value is the mean over the model's windows (a window not covering the frame adds 0), as the
  track's output is the mean of its windows'.
* ``shap_over_time``: ``shap_baseline.explain_segments`` over ``n_time`` time segments of all bands;
  a segment's value is spread evenly over its frames, so the frames sum to the SHAP values' sum
  (``output - expected_value``).
* ``timeline_over_time``: the intrinsic explanation over time (``timeline.timeline``): each frame takes
  the window centred nearest it, and its summed concept terms of the target (or the terms of ``concepts``).

The explained output is ``target`` minus ``versus`` where ``versus`` is given: a cross-entropy black box's
log-odds (its two logits are only defined up to a common shift), the quantity a two-class GAM head's
single non-zero logit already is.

``state_shares`` and ``beat_peaks`` read a relevance against a per-beat table of states (S1 / systole /
S2 / diastole: ``datasets.heart_corpus``'s segments): the share of the positive credit in each state
beside the state's share of the time (chance), and per beat the state where the relevance peaks.
``time_interleaved`` times several methods on the same items, repeats interleaved.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..model import AudioModel, TwoStageModel
from ..numerics import eval_mode, flush_denormals
from .cardiac_cycle import STATES, states_at
from .shap_segments import TimeFrequencySegments
from .timeline import Timeline, timeline

_BOUNDARIES = ("s1_start", "s1_end", "s2_start", "s2_end", "diastole_end")


@dataclass
class OverTime:
    """One explanation of one track on the front-end's frames: ``relevance[f]`` at ``times[f]`` seconds."""

    method: str
    source: str
    times: np.ndarray  # (F,) seconds, the frames' centres
    relevance: np.ndarray  # (F,) float64
    output: float  # the explained output of the whole track, as the model reports it
    reference: float | None = None  # the output the relevance is measured from (all removed), where defined
    seconds: float = 0.0  # wall time of the explanation, decoding included
    extra: dict[str, Any] = field(default_factory=dict)

    def valid(self, span: tuple[float, float] | None = None) -> np.ndarray:
        """(F,) bool: the frames inside ``span`` (seconds; None: all)."""
        if span is None:
            return np.ones(len(self.times), dtype=bool)
        return (self.times >= span[0]) & (self.times <= span[1])


def _contrast(outputs: torch.Tensor, target: int, versus: int | None) -> torch.Tensor:
    return outputs[:, target] - (outputs[:, versus] if versus is not None else 0.0)


def frame_times(model: AudioModel, n_frames: int) -> np.ndarray:
    cfg = model.config.frontend
    return np.arange(n_frames) * cfg.hop_length / cfg.sample_rate


def _window_frames(model: AudioModel, segments: TimeFrequencySegments, n_samples: int) -> tuple[np.ndarray, int]:
    """Each model window's first frame on the track's frame grid (rounded), and the track's frame count."""
    from ..model import window_starts

    cfg = model.config
    starts = np.asarray(window_starts(n_samples, cfg.window_samples, cfg.hop_samples))
    first = np.rint(starts / cfg.frontend.hop_length).astype(int)
    n_frames = int(first[-1] + segments.spectrograms.shape[-1])
    return first, n_frames


def occlusion_over_time(model: AudioModel, audio: Any, *, target: int = -1, versus: int | None = None,
                        patch_seconds: float = 0.1, stride_seconds: float = 0.05, batch_size: int = 32,
                        sample_rate: int | None = None) -> OverTime:
    """captum ``Occlusion`` of ``target`` (minus ``versus``) over time, patches of all bands (module docstring).

    For a two-stage model the explained output is a target (its head applied to each window's clipped
    concepts); for a black box, its target layer."""
    from .._extras import require

    require("captum", "shap", "occlusion_over_time")
    from captum.attr import Occlusion

    from ..audio import pad_to_length

    started = time.perf_counter()
    hop = model.config.frontend.hop_length / model.config.sample_rate
    patch = max(1, int(round(patch_seconds / hop)))
    stride = max(1, int(round(stride_seconds / hop)))
    n_targets = len(model.config.target_names)
    target = target % n_targets

    def explained(spec: torch.Tensor) -> torch.Tensor:
        if isinstance(model, TwoStageModel):
            concepts = model.clip_outputs(model.concepts_from_spectrogram(spec))
            outputs = model.head(concepts)
        else:
            outputs = model.outputs_from_spectrogram(spec)
        return _contrast(outputs, target, versus)

    with eval_mode(model), flush_denormals(), torch.no_grad():
        segments = TimeFrequencySegments.from_audio(model, audio, n_time=1, n_freq=1, sample_rate=sample_rate)
        spec, baseline = segments.spectrograms, segments.baseline
        n_bands, frames = spec.shape[-2:]
        if patch > frames:
            raise ValueError(f"a patch of {patch_seconds} s is longer than the model's window")
        attr = Occlusion(explained).attribute(spec, sliding_window_shapes=(1, n_bands, patch),
                                              strides=(1, n_bands, stride), baselines=baseline,
                                              perturbations_per_eval=batch_size)
        per_window = attr.double().mean(dim=(1, 2)).numpy()  # (W, frames): every band of a patch alike
        outputs = explained(spec).double().numpy()
        reference = explained(baseline).double().numpy()
    samples = len(pad_to_length(model.read_audio(audio, sample_rate=sample_rate).samples,
                                model.config.window_samples)[0])
    first, n_frames = _window_frames(model, segments, samples)
    relevance = np.zeros(n_frames)
    for w, f0 in enumerate(first):
        relevance[f0:f0 + frames] += per_window[w]
    relevance /= len(first)
    return OverTime("occlusion", segments.source, frame_times(model, n_frames), relevance,
                    output=float(outputs.mean()), reference=float(reference.mean()),
                    seconds=time.perf_counter() - started,
                    extra={"patch_frames": patch, "stride_frames": stride, "windows": len(first),
                           "forward_passes": int(len(first) * (1 + (frames - patch) // stride))})


def shap_over_time(model: AudioModel, audio: Any, *, target: int = -1, versus: int | None = None,
                   n_time: int = 150, max_evals: int = 602, seed: int = 0, batch_size: int = 32,
                   sample_rate: int | None = None) -> OverTime:
    """Permutation SHAP of a black box over ``n_time`` time segments (all bands), as frame densities."""
    from .shap_baseline import explain_segments

    started = time.perf_counter()
    s = explain_segments(model, audio, method="permutation", n_time=n_time, n_freq=1, max_evals=max_evals,
                         batch_size=batch_size, seed=seed, progress=False, sample_rate=sample_rate)
    n_targets = len(s.target_names)
    target = target % n_targets
    values = s.values[target] - (s.values[versus] if versus is not None else 0.0)  # (n_time,)
    expected = float(s.expected_value[target] - (s.expected_value[versus] if versus is not None else 0.0))
    output = float(s.output[target] - (s.output[versus] if versus is not None else 0.0))
    cfg = model.config
    from ..audio import pad_to_length

    samples = len(pad_to_length(model.read_audio(audio, sample_rate=sample_rate).samples, cfg.window_samples)[0])
    n_frames = int(samples // cfg.frontend.hop_length) + 1
    centres = np.arange(n_frames) * cfg.frontend.hop_length
    segment = np.minimum(centres * n_time // samples, n_time - 1)  # as TimeFrequencySegments assigns frames
    counts = np.bincount(segment, minlength=n_time)
    relevance = values[segment] / counts[segment]
    return OverTime("shap_permutation", s.source, frame_times(model, n_frames), relevance, output=output,
                    reference=expected, seconds=time.perf_counter() - started,
                    extra={"n_time": n_time, "max_evals": max_evals, "n_evaluations": s.n_evaluations,
                           "additivity_error": abs(expected + float(values.sum()) - output),
                           "segment_values": values})


def timeline_over_time(model: TwoStageModel, audio: Any, *, target: int = -1,
                       concepts: Sequence[str] | None = None, window_seconds: float | None = None,
                       hop_seconds: float = 0.02, sample_rate: int | None = None,
                       line: Timeline | None = None) -> OverTime:
    """The intrinsic explanation over time: each frame the ``target`` terms (all, or ``concepts``') of the
    timeline window centred nearest it; ``extra["span"]``: the first and last window centre (outside them
    the nearest window is the edge one)."""
    started = time.perf_counter()
    if line is None:
        window = window_seconds or float(model.config.metadata.get("timeline_window_seconds", 0.3))
        line = timeline(model, audio, window_seconds=window, hop_seconds=hop_seconds, sample_rate=sample_rate)
    k = target % len(line.target_names)
    pick = list(range(len(line.concept_names))) if concepts is None else [line.concept_names.index(c) for c in concepts]
    score = line.contributions[:, k, pick].sum(axis=-1)
    cfg = model.config
    n_frames = int(max(round(line.duration * cfg.sample_rate), cfg.window_samples) // cfg.frontend.hop_length) + 1
    times = frame_times(model, n_frames)
    nearest = np.abs(times[:, None] - line.centres[None, :]).argmin(axis=1)
    name = "intrinsic_timeline" if concepts is None else "intrinsic_" + "+".join(concepts)
    return OverTime(name, line.source, times, score[nearest], output=float(line.track_targets[k]),
                    seconds=time.perf_counter() - started,
                    extra={"span": (float(line.centres.min()), float(line.centres.max())),
                           "window_seconds": line.window_seconds, "hop_seconds": line.hop_seconds})


# -- against a per-beat table of states -----------------------------------------------------------------------
def state_shares(times: np.ndarray, relevance: np.ndarray, segments: pd.DataFrame, *,
                 valid: np.ndarray | None = None) -> dict[str, Any]:
    """Share of the positive relevance that falls in each state (``STATES``), over the frames the table
    labels (and ``valid``), beside each state's share of those frames (chance). Shares are NaN where the
    relevance has no positive part."""
    state = states_at(segments, np.asarray(times, dtype=np.float64))
    known = state >= 0
    if valid is not None:
        known &= valid
    positive = np.clip(np.asarray(relevance, dtype=np.float64), 0.0, None) * known
    total = float(positive.sum())
    out: dict[str, Any] = {"positive_total": total, "frames": int(known.sum())}
    for k, name in enumerate(STATES):
        inside = known & (state == k)
        out[f"share_{name}"] = float(positive[inside].sum() / total) if total > 0 else float("nan")
        out[f"time_{name}"] = float(inside.sum() / known.sum()) if known.any() else float("nan")
    return out


def beat_peaks(times: np.ndarray, relevance: np.ndarray, segments: pd.DataFrame, *,
               span: tuple[float, float] | None = None) -> pd.DataFrame:
    """Per beat of the table whose whole cycle lies inside ``span`` (seconds; default the frames'): the
    state at the peak of the relevance inside the cycle (the middle of the peak's plateau, so a value
    spread evenly over a segment peaks at its middle), ``in_systole``, and ``systolic_share`` (systole's
    share of the cycle: the chance that a peak placed at random lies there). A beat over which the
    relevance is flat has no peak (state "none")."""
    times = np.asarray(times, dtype=np.float64)
    relevance = np.asarray(relevance, dtype=np.float64)
    lo, hi = span if span is not None else (times.min(), times.max())
    rows = []
    for beat, s1, s1e, s2, s2e, end in segments[["beat", *_BOUNDARIES]].to_numpy(float):
        inside = np.flatnonzero((times >= s1) & (times < end))
        if s1 < lo or end > hi or len(inside) == 0:
            continue
        values = relevance[inside]
        top = inside[np.flatnonzero(values == values.max())]
        peak = float(times[top[len(top) // 2]])
        flat = bool(values.max() == values.min())
        state = int(np.searchsorted([s1e, s2, s2e], peak, side="right"))
        rows.append({"beat": int(beat), "peak_s": peak, "state": "none" if flat else STATES[state],
                     "in_systole": (not flat) and state == 1, "systolic_share": (s2 - s1e) / (end - s1)})
    return pd.DataFrame(rows, columns=["beat", "peak_s", "state", "in_systole", "systolic_share"])


def time_interleaved(methods: Mapping[str, Callable[[Any], Any]], items: Sequence[Any], repeats: int, *,
                     base: str | Sequence[str] = "intrinsic", warmup: bool = True) -> dict[str, Any]:
    """Median wall seconds per item of each method, repeats interleaved (each repeat runs every method once
    on the item), then the median over items; and each method's median as a ratio to each of ``base``'s."""
    bases = [base] if isinstance(base, str) else list(base)
    if warmup:
        for fn in methods.values():  # first calls pay for imports and allocations
            fn(items[0])
    per_item: dict[str, list[float]] = {m: [] for m in methods}
    for item in items:
        times: dict[str, list[float]] = {m: [] for m in methods}
        for _ in range(repeats):
            for m, fn in methods.items():
                started = time.perf_counter()
                fn(item)
                times[m].append(time.perf_counter() - started)
        for m in methods:
            per_item[m].append(float(np.median(times[m])))
    out: dict[str, Any] = {}
    for m, v in per_item.items():
        out[m] = {"median_s": float(np.median(v)), "per_item_s": v}
        for b in bases:
            out[m][f"ratio_to_{b}"] = float(np.median(v) / np.median(per_item[b]))
    return out
