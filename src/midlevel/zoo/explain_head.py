"""What a fitted head says, globally: directions per (concept, target) and shape-function plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..heads import AdditiveHead

#: generating weights at least this large (on standardised ratings) must be matched in sign
SIGN_THRESHOLD = 0.2


def head_slopes(head: AdditiveHead, concepts: np.ndarray) -> np.ndarray:
    """(T, K) least-squares slope of each concept's contribution against the concept's value.

    For a linear head this is the weight itself; for a GAM head it is the shape function's
    overall direction over the concept values actually seen.
    """
    terms = head.contributions(concepts)  # (N, T, K)
    c = concepts - concepts.mean(axis=0)
    t = terms - terms.mean(axis=0)
    return np.einsum("ntk,nk->tk", t, c) / (c ** 2).sum(axis=0)


def true_weight(truth: dict[str, Any], concept: str, target: str) -> float:
    """The generating weight of ``concept`` on ``target`` per standard deviation of the concept.

    A mid-level concept's is ``truth['W']``; an outside concept's (loudness, tempo, register) is
    its factor's ``B``: its rating is an increasing affine map of that factor, so a standard
    deviation of the rating is one of the factor and the sign is the same.
    """
    if concept in truth["W"]:
        return float(truth["W"][concept][target])
    outside = truth.get("outside_terms", {})
    if concept in outside:
        return float(outside[concept]["B"][target])
    raise KeyError(f"ground truth has no generating weight for concept {concept!r} "
                   f"(knows {sorted(truth['W']) + sorted(outside)})")


def head_directions(head: AdditiveHead, concepts: np.ndarray, truth: dict[str, Any]) -> dict[str, Any]:
    """Sign agreement of the head's directions with the corpus's generating weights (``true_weight``)."""
    slopes = head_slopes(head, concepts)
    checked, disagree = 0, []
    for t, target in enumerate(head.target_names):
        for k, concept in enumerate(head.concept_names):
            w = true_weight(truth, concept, target)
            if abs(w) >= SIGN_THRESHOLD:
                checked += 1
                if np.sign(slopes[t, k]) != np.sign(w):
                    disagree.append({"concept": concept, "target": target, "true": w, "slope": float(slopes[t, k])})
    return {"threshold": SIGN_THRESHOLD, "checked": checked, "agree": checked - len(disagree),
            "disagreements": disagree,
            "slopes": {tg: dict(zip(head.concept_names, map(float, slopes[t]))) for t, tg in enumerate(head.target_names)}}


def plot_shape_functions(head, concepts: np.ndarray, path: str | Path) -> None:
    """One panel per concept: every target's centred shape function, with a rug of seen values."""
    from .._extras import require

    require("matplotlib", "report", "plotting shape functions")
    from matplotlib.figure import Figure

    from ..plotting import save_png

    k = len(head.concept_names)
    fig = Figure(figsize=(2.6 * k, 3.2))
    axes = fig.subplots(1, k, sharey=True)
    for j, (ax, name) in enumerate(zip(axes, head.concept_names)):
        lo, hi = np.percentile(concepts[:, j], [1, 99])
        grid = np.linspace(lo, hi, 60)
        curves = head.shape_function(j, grid)  # (len(grid), T)
        for t, target in enumerate(head.target_names):
            ax.plot(grid, curves[:, t], label=target)
        ax.plot(concepts[:, j], np.full(len(concepts), curves.min()), "|", color="grey", alpha=0.3)
        ax.set_title(name, fontsize=9)
        ax.axhline(0, color="black", linewidth=0.6)
    axes[0].set_ylabel("contribution (emotion points)")
    axes[-1].legend(fontsize=7, loc="best")
    fig.suptitle("GAM shape functions: contribution of each concept (x: concept rating) to each emotion", fontsize=10)
    fig.tight_layout()
    save_png(fig, path, dpi=100)
