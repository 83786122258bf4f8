"""Sparse linear head: one elastic-net weight per (target, concept).

``fit`` delegates to scikit-learn's ``ElasticNet`` (one independent fit per target, the same
objective for each), and ``penalty()`` is scikit-learn's penalty term, so for every target t

    0.5 * mean_n (y[n, t] - output[n, t])**2 + penalty_t

is exactly the objective ``ElasticNet`` minimises. Joint training that uses
``0.5 * ((output - y) ** 2).mean(0).sum() + head.penalty()`` therefore continues the same
optimisation problem the two-stage fit solved (torch's ``mse_loss`` averages over targets too,
so it equals ``0.5 * T * mse_loss + penalty()``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .._extras import require
from .base import AdditiveHead, check_2d


class SparseLinearHead(AdditiveHead):
    """``output = weight @ concepts + bias`` with an elastic-net penalty on ``weight``.

    ``alpha`` is the sparsity knob (larger -> fewer concepts per target); ``l1_ratio`` mixes
    lasso (1.0) and ridge (0.0). The default 0.5 keeps exact zeros while the ridge part keeps
    the choice between correlated concepts (e.g. melodiousness vs dissonance) stable.
    ``alpha=0.01`` only drops concepts whose effect is negligible on 1-10 concept ratings.
    """

    kind = "linear"

    def __init__(
        self,
        n_concepts: int,
        n_targets: int,
        *,
        concept_names: Sequence[str] | None = None,
        target_names: Sequence[str] | None = None,
        alpha: float = 0.01,
        l1_ratio: float = 0.5,
        fit_intercept: bool = True,
        max_iter: int = 10_000,
        tol: float = 1e-6,
    ) -> None:
        super().__init__(
            n_concepts, n_targets, concept_names=concept_names, target_names=target_names
        )
        if alpha < 0 or not 0.0 <= l1_ratio <= 1.0:
            raise ValueError("alpha must be >= 0 and l1_ratio in [0, 1]")
        self.alpha = float(alpha)
        self.l1_ratio = float(l1_ratio)
        self.fit_intercept = bool(fit_intercept)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        bound = 1.0 / math.sqrt(n_concepts)  # nn.Linear's default scale
        self.weight = nn.Parameter(torch.empty(n_targets, n_concepts).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(n_targets), requires_grad=self.fit_intercept)

    def contribution_terms(self, concepts: torch.Tensor) -> torch.Tensor:
        return self.weight.unsqueeze(0) * concepts.unsqueeze(1)

    @property
    def intercept(self) -> torch.Tensor:
        return self.bias

    def fit(self, concepts: Any, targets: Any) -> "SparseLinearHead":
        require("sklearn", "train", "fitting a linear head")
        from sklearn.linear_model import ElasticNet

        c = check_2d(concepts, self.n_concepts, "concepts")
        y = check_2d(targets, self.n_targets, "targets")
        if len(c) != len(y):
            raise ValueError(f"concepts has {len(c)} rows but targets has {len(y)}")
        # A 2-d y makes ElasticNet solve each column separately with the same objective.
        model = ElasticNet(
            alpha=self.alpha,
            l1_ratio=self.l1_ratio,
            fit_intercept=self.fit_intercept,
            max_iter=self.max_iter,
            tol=self.tol,
        ).fit(c, y)
        with torch.no_grad():
            self.weight.copy_(torch.as_tensor(np.reshape(model.coef_, self.weight.shape)))
            intercept = np.broadcast_to(model.intercept_, self.bias.shape).copy()
            self.bias.copy_(torch.as_tensor(intercept))
        return self

    def penalty(self) -> torch.Tensor:
        """scikit-learn's ``alpha * (l1_ratio * |w|_1 + 0.5 * (1 - l1_ratio) * |w|_2^2)``.

        Summed over targets; see the module docstring for the matching data term.
        """
        w = self.weight
        l1 = w.abs().sum()
        l2 = (w * w).sum()
        return self.alpha * (self.l1_ratio * l1 + 0.5 * (1.0 - self.l1_ratio) * l2)

    @property
    def coef_(self) -> np.ndarray:
        """(T, K) weights as numpy (current values, so also after joint training)."""
        return self.weight.detach().cpu().numpy().copy()

    @property
    def intercept_(self) -> np.ndarray:
        return self.bias.detach().cpu().numpy().copy()

    @property
    def sparsity_(self) -> float:
        """Fraction of (target, concept) weights that are exactly zero."""
        return float((self.weight == 0).float().mean())

    def used_concepts(self, tol: float = 0.0) -> dict[str, dict[str, float]]:
        """Per target, the concepts with ``|weight| > tol`` and their weights.

        ``tol=0`` is right after ``fit`` (the lasso gives exact zeros); after joint training
        with a gradient optimiser weights only get close to zero, so pass a small ``tol``.
        """
        w = self.coef_
        return {
            target: {
                concept: float(w[t, k])
                for k, concept in enumerate(self.concept_names)
                if abs(w[t, k]) > tol
            }
            for t, target in enumerate(self.target_names)
        }

    def init_params(self) -> dict[str, Any]:
        return {
            "concept_names": list(self.concept_names),
            "target_names": list(self.target_names),
            "alpha": self.alpha,
            "l1_ratio": self.l1_ratio,
            "fit_intercept": self.fit_intercept,
            "max_iter": self.max_iter,
            "tol": self.tol,
        }
