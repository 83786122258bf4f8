"""Explanations over time: concepts, targets and each concept's contribution per window.

What holds exactly, and why it is not "the mean of the timeline":

* Per window, ``outputs[w] == intercept + contributions[w].sum(-1)``: the head's additive
  contract applied to that window's concepts.
* The track result is ``model.explain`` itself (``Timeline.track``): the head applied to the
  mean of the model's own windows' concepts.
* For a linear head the mean over windows of the per-window contributions equals the track's
  contributions (when the timeline uses the model's windows). For a GAM head it does not:
  ``mean_w f(c_w) != f(mean_w c_w)`` for a curved ``f``. The timeline shows how the head reads
  each window; the track value is what the model reports.

Windows are streamed through the network ``batch_size`` at a time, so memory stays at the
decoded audio plus one batch, whatever the track's length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._extras import require
from ..model import AudioModel, TwoStageModel, window_starts
from ..results import Explanation


@dataclass(frozen=True)
class Timeline:
    """Per-window values of one track; ``concepts``/``contributions`` are None for black boxes."""

    source: str
    model_name: str
    target_names: list[str]
    concept_names: list[str]
    starts: np.ndarray  # (W,) seconds
    window_seconds: float
    hop_seconds: float
    duration: float  # seconds of audio before padding
    outputs: np.ndarray  # (W, T) targets per window
    concepts: np.ndarray | None = None  # (W, K)
    contributions: np.ndarray | None = None  # (W, T, K)
    intercept: np.ndarray | None = None  # (T,)
    track: Explanation | None = None  # model.explain on the same audio (two-stage models)
    track_targets: np.ndarray | None = None  # (T,) what the model reports for the whole track

    @property
    def ends(self) -> np.ndarray:
        return self.starts + self.window_seconds

    @property
    def centres(self) -> np.ndarray:
        return (self.starts + self.ends) / 2

    def series(self, name: str) -> np.ndarray:
        """(W,) values of one target or concept over the windows."""
        if name in self.target_names:
            return self.outputs[:, self.target_names.index(name)]
        if self.concepts is not None and name in self.concept_names:
            return self.concepts[:, self.concept_names.index(name)]
        raise KeyError(f"{name!r} is neither a target {self.target_names} nor a concept {self.concept_names}")

    def to_frame(self) -> pd.DataFrame:
        """One row per (window, target): start/end, intercept, each concept's term, output.

        Rows sum: ``intercept + concept columns == output`` (two-stage models). Black boxes
        have only the output column.
        """
        w, t = np.meshgrid(np.arange(len(self.starts)), np.arange(len(self.target_names)), indexing="ij")
        frame = pd.DataFrame({
            "window": w.ravel(), "start_s": self.starts[w.ravel()], "end_s": self.ends[w.ravel()],
            "target": np.asarray(self.target_names)[t.ravel()],
        })
        if self.contributions is not None:
            frame["intercept"] = self.intercept[t.ravel()]
            terms = self.contributions.reshape(-1, len(self.concept_names))
            frame = pd.concat([frame, pd.DataFrame(terms, columns=self.concept_names)], axis=1)
        frame["output"] = self.outputs.ravel()
        return frame

    def concept_frame(self) -> pd.DataFrame:
        """One row per window: start/end and the window's concept values."""
        if self.concepts is None:
            raise ValueError(f"{self.model_name} is a black box: it has no concepts")
        frame = pd.DataFrame(self.concepts, columns=self.concept_names)
        frame.insert(0, "end_s", self.ends)
        frame.insert(0, "start_s", self.starts)
        return frame

    def plot(self, path: str | Path | None = None, *, targets: list[str] | None = None):
        """Stacked contributions per target over time, concept curves beneath."""
        require("matplotlib", "report", "Timeline.plot")
        from .views_plotting import plot_timeline

        return plot_timeline(self, path, targets=targets)


def timeline(model: AudioModel, audio: Any, *, window_seconds: float | None = None,
             hop_seconds: float | None = None, sample_rate: int | None = None,
             batch_size: int = 8) -> Timeline:
    """Per-window concepts, targets and contributions of a track (default: the model's windows).

    A small hop (e.g. 2 s windows every 0.5 s) localises where a concept rises; the track
    result stays ``model.explain`` on the model's own windows either way.
    """
    cfg = model.config
    clip = model.read_audio(audio, sample_rate=sample_rate)
    window = cfg.window_samples if window_seconds is None else int(round(window_seconds * cfg.sample_rate))
    hop = cfg.hop_samples if hop_seconds is None else int(round(hop_seconds * cfg.sample_rate))
    if window <= 0 or hop <= 0:
        raise ValueError(f"window and hop must be positive; got {window_seconds} s and {hop_seconds} s")
    same_windows = (window, hop) == (cfg.window_samples, cfg.hop_samples)
    starts = np.asarray(window_starts(max(len(clip.samples), window), window, hop)) / cfg.sample_rate
    common = dict(source=clip.source, model_name=model.name, target_names=list(cfg.target_names),
                  concept_names=list(cfg.concept_names), starts=starts, window_seconds=window / cfg.sample_rate,
                  hop_seconds=hop / cfg.sample_rate, duration=clip.duration)
    if not isinstance(model, TwoStageModel):
        outputs = model.outputs_per_window(clip.samples, window, hop, batch_size=batch_size)
        track = outputs if same_windows else model.outputs_per_window(
            clip.samples, cfg.window_samples, cfg.hop_samples, batch_size=batch_size)
        common["concept_names"] = []
        return Timeline(**common, outputs=outputs, track_targets=track.mean(axis=0))
    track = model.explain(clip, batch_size=batch_size)
    concepts = track.window_concepts if same_windows else model.outputs_per_window(clip.samples, window, hop, batch_size=batch_size)
    contributions = model.head.contributions(concepts).astype(np.float64)
    with torch.inference_mode():
        outputs = model.head(torch.as_tensor(concepts, dtype=torch.float32)).double().numpy()
    return Timeline(**common, outputs=outputs, concepts=concepts, contributions=contributions,
                    intercept=track.intercept, track=track, track_targets=track.targets)
