"""One clip's explanations side by side: concept-level maps on top, segment-level SHAP below."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ..plotting import save_png
from ..results import Explanation
from .shap_baseline import ADDITIVITY_TOLERANCE, SegmentShap


def _diverging(ax, values: np.ndarray, **kwargs):
    """imshow with a colour scale symmetric around 0 (red adds, blue removes)."""
    limit = float(np.abs(values).max()) or 1.0
    return ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto", **kwargs)


def _concept_panel(ax, values: np.ndarray, expl: Explanation, title: str) -> None:
    image = _diverging(ax, values)
    ax.set_xticks(range(len(expl.concept_names)), expl.concept_names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(expl.target_names)), expl.target_names, fontsize=7)
    for (t, k), v in np.ndenumerate(values):
        ax.text(k, t, f"{v:.2f}", ha="center", va="center", fontsize=5)
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(image, ax=ax, fraction=0.046)


def _segment_panel(ax, s: SegmentShap, target: str) -> None:
    image = _diverging(ax, s.grid(target), origin="lower")
    times = [name.split(" ")[0] for name in s.segment_names[::s.n_freq]]
    bands = [name.split(" ")[1] for name in s.segment_names[:s.n_freq]]
    ax.set_xticks(range(s.n_time), times, rotation=60, ha="right", fontsize=6)
    ax.set_yticks(range(s.n_freq), bands, fontsize=6)
    t = s.target_names.index(target)
    total = s.expected_value[t] + s.values[t].sum()
    # expected gradients add up only in expectation: say so instead of printing an equation that fails
    sums = (f"{s.output[t]:.2f} = {s.expected_value[t]:.2f} + sum" if abs(total - s.output[t]) <= ADDITIVITY_TOLERANCE else
            f"{s.output[t]:.2f}, but {s.expected_value[t]:.2f} + sum = {total:.2f}")
    ax.set_title(f"{s.model_name}: {s.method} SHAP, {target}\n{sums} ({s.seconds:.1f} s)", fontsize=8)
    ax.figure.colorbar(image, ax=ax, fraction=0.046)


def plot_side_by_side(intrinsic: Explanation, segment_shaps: Sequence[SegmentShap], path: str | Path | None = None,
                      *, target: str | None = None, concept_maps: Mapping[str, np.ndarray] | None = None):
    """Top row: the intrinsic concept terms (targets x concepts) and any other concept-level maps
    (e.g. ``{"MLP head + SHAP": values}``); bottom row: each segment SHAP of one ``target``
    (bands x time). Saved as PNG if ``path``."""
    target = target or intrinsic.target_names[0]
    top = {f"{intrinsic.model_name}: intrinsic concept terms": intrinsic.contributions, **(concept_maps or {})}
    ncols = max(len(top), len(segment_shaps), 1)
    nrows = 2 if segment_shaps else 1
    fig = Figure(figsize=(4.2 * ncols, 4.0 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (title, values) in zip(axes[0], top.items()):
        _concept_panel(ax, np.asarray(values), intrinsic, title)
    for ax, s in zip(axes[1] if segment_shaps else [], segment_shaps):
        _segment_panel(ax, s, target)
    for ax in axes[0][len(top):]:
        ax.axis("off")
    for ax in (axes[1][len(segment_shaps):] if segment_shaps else []):
        ax.axis("off")
    fig.suptitle(f"Explanations of {Path(intrinsic.source).name}", fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)
