"""A black-box head on the same concepts: the "black-box head + SHAP" side of the comparison.

An MLP can use interactions between concepts that an additive head cannot, so it bounds what
interpretability costs *at the head*; but nothing in it can be read as "this concept added
this much", so it needs post-hoc SHAP (``shap_concepts.concept_shap``) to be explained.
Concepts and targets are standardised around the network (shared scales, but not spreads).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.compose import TransformedTargetRegressor
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..heads.base import check_2d


class MLPHead(RegressorMixin, BaseEstimator):
    """K concepts -> T targets through a small ReLU MLP (scikit-learn estimator).

    ``alpha`` is the L2 penalty; early stopping on a 10% validation split keeps the fit honest
    on a few hundred clips.
    """

    def __init__(self, concept_names: Sequence[str], target_names: Sequence[str], *,
                 hidden: tuple[int, ...] = (32, 32), alpha: float = 1e-3, max_iter: int = 2000,
                 seed: int = 0) -> None:
        self.concept_names = concept_names
        self.target_names = target_names
        self.hidden = hidden
        self.alpha = alpha
        self.max_iter = max_iter
        self.seed = seed

    def fit(self, concepts: Any, targets: Any) -> "MLPHead":
        c = check_2d(concepts, len(self.concept_names), "concepts")
        y = check_2d(targets, len(self.target_names), "targets")
        if len(c) != len(y):
            raise ValueError(f"concepts has {len(c)} rows but targets has {len(y)}")
        mlp = MLPRegressor(hidden_layer_sizes=self.hidden, alpha=self.alpha, max_iter=self.max_iter,
                           early_stopping=True, n_iter_no_change=30, random_state=self.seed)
        self.model_ = TransformedTargetRegressor(make_pipeline(StandardScaler(), mlp),
                                                 transformer=StandardScaler()).fit(c, y)
        return self

    def predict(self, concepts: Any) -> np.ndarray:
        """(N, T) targets; always 2-d, also for one target."""
        c = check_2d(concepts, len(self.concept_names), "concepts")
        return self.model_.predict(c).reshape(len(c), len(self.target_names))
