"""Matplotlib figures for results (``Explanation.plot``) and the PNG writer every figure goes through.

Object-oriented API (``matplotlib.figure.Figure``, never pyplot): no backend is chosen or needed, so it works
without a display and leaves the caller's pyplot state alone. matplotlib comes with the ``report`` extra."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .ioutil import atomic_path


def save_png(fig, path: str | Path | None, dpi: int = 110):
    """Write ``fig`` as PNG atomically when ``path`` is given; return the figure."""
    if path is not None:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    return fig


def plot_contributions(expl, path: str | Path | None = None, *, targets: list[str] | None = None):
    """One horizontal bar panel per target: each concept's signed contribution."""
    names = targets or expl.target_names
    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(3.2 * ncols, 0.35 * len(expl.concept_names) * nrows + 1.6))
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False)
    y = np.arange(len(expl.concept_names))
    for ax, name in zip(axes.flat, names):
        t = expl.target_names.index(name)
        vals = expl.contributions[t]
        ax.barh(y, vals, color=np.where(vals >= 0, "tab:red", "tab:blue"))
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(f"{name} = {expl.targets[t]:.2f}\n(intercept {expl.intercept[t]:.2f})", fontsize=9)
        ax.set_yticks(y, expl.concept_names, fontsize=8)
        ax.invert_yaxis()
        ax.tick_params(axis="x", labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    flags = f" [{', '.join(expl.flags())}]" if expl.flags() else ""
    fig.suptitle(f"Concept contributions: {Path(expl.source).name}{flags}", fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)
