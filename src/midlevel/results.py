"""What a user gets back from a two-stage model: values, and exactly where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class Prediction:
    """Track-level concepts and targets, plus how the track was read.

    ``concepts`` is the mean of the per-window concepts, each clipped to the concept scale;
    ``targets`` is the head applied to that mean (not the mean of per-window targets), so the
    explanation stays exact. ``flags()`` lists what makes the values less trustworthy than usual
    (``padded``, ``silent``, ``extra_flags``); ``notes`` say why, in words.
    """

    source: str
    concept_names: list[str]
    target_names: list[str]
    concepts: np.ndarray  # (K,)
    targets: np.ndarray  # (T,)
    window_concepts: np.ndarray  # (W, K)
    window_starts: np.ndarray  # (W,) seconds
    duration: float  # seconds of audio before padding
    padded: bool  # shorter than one window: zero-padded
    silent: bool  # below the silence threshold: values describe silence, not music
    model_name: str = ""
    notes: list[str] = field(default_factory=list)
    #: (K,) mean of the windows' concepts before clipping; differs from ``concepts`` where clipped
    raw_concepts: np.ndarray | None = None
    #: out-of-distribution distance / the calibration threshold (above 1: flagged); None: not calibrated
    ood_score: float | None = None
    #: flags beyond padded/silent: over_full_scale, truncated, concepts_out_of_scale, targets_out_of_scale,
    #: out_of_distribution
    extra_flags: list[str] = field(default_factory=list)
    #: a classifier's class probabilities, softmax of ``targets`` (its logits); None for ratings
    probabilities: np.ndarray | None = None

    @property
    def predicted_class(self) -> str | None:
        """A classifier's most probable class (None for ratings)."""
        return None if self.probabilities is None else self.target_names[int(np.argmax(self.probabilities))]

    def concept_series(self) -> pd.Series:
        return pd.Series(self.concepts, index=self.concept_names, name="concept_value")

    def target_series(self) -> pd.Series:
        return pd.Series(self.targets, index=self.target_names, name="prediction")

    def flags(self) -> list[str]:
        return [name for name, on in (("padded", self.padded), ("silent", self.silent)) if on] + list(self.extra_flags)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "model": self.model_name,
            "duration_s": round(float(self.duration), 4),
            "padded": bool(self.padded),
            "silent": bool(self.silent),
            "flags": self.flags(),
            "notes": list(self.notes),
            "ood_score": None if self.ood_score is None else float(self.ood_score),
            "n_windows": int(len(self.window_starts)),
            "concepts": {n: float(v) for n, v in zip(self.concept_names, self.concepts)},
            "targets": {n: float(v) for n, v in zip(self.target_names, self.targets)},
            **({} if self.raw_concepts is None else
               {"raw_concepts": {n: float(v) for n, v in zip(self.concept_names, self.raw_concepts)}}),
            **({} if self.probabilities is None else
               {"class": self.predicted_class,
                "probabilities": {n: float(v) for n, v in zip(self.target_names, self.probabilities)}}),
        }


@dataclass
class Explanation(Prediction):
    """A prediction plus the head's exact decomposition: target = intercept + sum of terms."""

    contributions: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (T, K)
    intercept: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (T,)

    def to_frame(self) -> pd.DataFrame:
        """Targets as rows; one column per concept's contribution, then intercept and prediction."""
        frame = pd.DataFrame(self.contributions, index=pd.Index(self.target_names, name="target"),
                             columns=self.concept_names)
        frame["intercept"] = self.intercept
        frame["prediction"] = self.targets
        return frame

    def top(self, k: int = 3, target: str | None = None) -> pd.DataFrame:
        """The k concepts with the largest absolute contribution to each target (or to one)."""
        names = [target] if target is not None else self.target_names
        rows = []
        for name in names:
            if name not in self.target_names:
                raise KeyError(f"unknown target {name!r}; targets are {self.target_names}")
            t = self.target_names.index(name)
            order = np.argsort(-np.abs(self.contributions[t]), kind="stable")[:k]
            for rank, j in enumerate(order, start=1):
                rows.append({"target": name, "rank": rank, "concept": self.concept_names[j],
                             "concept_value": float(self.concepts[j]),
                             "contribution": float(self.contributions[t, j])})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["intercepts"] = {n: float(v) for n, v in zip(self.target_names, self.intercept)}
        data["contributions"] = {
            t: {c: float(self.contributions[i, j]) for j, c in enumerate(self.concept_names)}
            for i, t in enumerate(self.target_names)
        }
        return data

    def plot(self, path: str | Path | None = None, *, targets: list[str] | None = None):
        """Bar chart of each concept's contribution, one panel per target; saved as PNG if ``path``.
        Needs matplotlib (the ``report`` extra)."""
        from ._extras import require

        require("matplotlib", "report", "Explanation.plot")
        from .plotting import plot_contributions

        return plot_contributions(self, path, targets=targets)
