"""Intrinsic explanation of a two-stage model beside post-hoc SHAP of its black-box counterpart.

The two answer different questions on purpose: the two-stage model says which *concepts* made
each target (exactly, from its head), SHAP says which *parts of the input* made the black box's
output (estimated, from many masked forward passes). Shown together with their wall times, they
make the cost and the kind of answer of each approach concrete. ``cli.py`` wires this into
``midlevel explain --baseline shap``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._extras import require
from ..config import ConfigError
from ..model import AudioModel, BlackBoxModel, TwoStageModel
from ..results import Explanation

if TYPE_CHECKING:
    from .shap_baseline import SegmentShap

#: ``shap_baseline.METHODS``, repeated so that building the CLI's parser does not import shap
METHODS = ("permutation", "partition", "deep", "gradient")


def min_evals(method: str, n_segments: int) -> int:
    """The smallest ``max_evals`` a method accepts: the permutation explainer evaluates each segment on and
    off along at least one permutation (``2 * n_segments + 1``); partition, at least one evaluation (its
    answer is the coarser the fewer); deep and gradient do not use it."""
    return 2 * n_segments + 1 if method == "permutation" else 1 if method == "partition" else 0


@dataclass
class SideBySide:
    intrinsic: Explanation
    intrinsic_seconds: float
    shap: SegmentShap

    @property
    def time_ratio(self) -> float:
        """How many times longer the SHAP explanation took than the intrinsic one."""
        return self.shap.seconds / self.intrinsic_seconds

    def plot(self, path: str | Path | None = None, *, target: str | None = None):
        """Concept terms beside the SHAP map of one target (PNG if ``path``)."""
        require("matplotlib", "report", "plotting the SHAP comparison")
        from .shap_plot import plot_side_by_side

        return plot_side_by_side(self.intrinsic, [self.shap], path, target=target)

    def to_dict(self) -> dict[str, Any]:
        return {"intrinsic": {**self.intrinsic.to_dict(), "seconds": self.intrinsic_seconds},
                "shap": self.shap.to_dict(), "shap_time_over_intrinsic": self.time_ratio}


def explain_with_baseline(model: AudioModel, audio: Any, baseline_model: AudioModel | None = None, *,
                          method: str = "permutation", n_time: int = 8, n_freq: int = 4,
                          max_evals: int = 500, seed: int = 0, progress: bool = True,
                          sample_rate: int | None = None) -> SideBySide:
    """``model.explain(audio)`` and SHAP of ``baseline_model`` (a black box) on the same audio."""
    require("shap", "shap", "the SHAP baseline")
    if max_evals < min_evals(method, n_time * n_freq):
        raise ConfigError(f"max_evals must be at least {min_evals(method, n_time * n_freq)} for the {method} method "
                          f"with {n_time}x{n_freq} segments; got {max_evals}")
    if not isinstance(model, TwoStageModel):
        raise ConfigError(f"{model.name} is a black box with no intrinsic explanation; pass a two-stage "
                          "model as the model and the black box as the baseline model")
    if baseline_model is None:
        raise ConfigError("--baseline shap needs --baseline-model: the black-box (A2E) counterpart, "
                          "as a model folder or zoo name")
    if not isinstance(baseline_model, BlackBoxModel):
        raise ConfigError(f"the baseline model {baseline_model.name} must be a black box (A2E), "
                          f"not a {type(baseline_model).__name__}")
    if list(baseline_model.config.target_names) != list(model.config.target_names):
        raise ConfigError(f"{model.name} and {baseline_model.name} predict different targets")
    from .shap_baseline import explain_segments

    started = time.perf_counter()
    intrinsic = model.explain(audio, sample_rate=sample_rate)
    intrinsic_seconds = time.perf_counter() - started
    shap_values = explain_segments(baseline_model, audio, method=method, n_time=n_time, n_freq=n_freq,
                                   max_evals=max_evals, seed=seed, progress=progress, sample_rate=sample_rate)
    return SideBySide(intrinsic, intrinsic_seconds, shap_values)


def _terms(names: list[str], values: np.ndarray, top: int) -> str:
    order = np.argsort(-np.abs(values), kind="stable")[:top]
    return "  ".join(f"{names[j]} {values[j]:+.3f}" for j in order)


def format_side_by_side(side: SideBySide, *, top: int = 3) -> str:
    """Per target: the prediction's exact decomposition, then the black box's SHAP decomposition."""
    e, s = side.intrinsic, side.shap
    lines = [f"== {e.source}",
             f"   intrinsic: {e.model_name}, concept terms from the head, {side.intrinsic_seconds:.3f} s",
             f"   post-hoc:  {s.model_name}, {s.method} SHAP over {s.n_time} x {s.n_freq} time-frequency "
             f"segments (baseline: the clip's mean spectrum), {s.seconds:.2f} s, {s.n_evaluations} evaluations",
             f"   SHAP took {side.time_ratio:.0f}x as long as the intrinsic explanation",
             "", f"top {top} terms per target (intrinsic: prediction = intercept + concept terms; "
                 "SHAP: output = expected value + segment values):"]
    width = max(map(len, e.target_names))
    for t, name in enumerate(e.target_names):
        lines.append(f"{name:<{width}}  intrinsic {e.targets[t]:5.2f} = {e.intercept[t]:5.2f} + ... | "
                     + _terms(e.concept_names, e.contributions[t], top))
        lines.append(f"{'':<{width}}  SHAP      {s.output[t]:5.2f} = {s.expected_value[t]:5.2f} + ... | "
                     + _terms(s.segment_names, s.values[t], top))
    return "\n".join(lines)
