"""The additive contract every head honours.

A head maps K concept values to T targets as an exact sum of per-concept terms::

    output[n, t] = intercept[t] + sum_k contributions(C)[n, t, k]

Everything that explains a two-stage model reads the terms from ``contributions`` rather than
recomputing them, so the explanation is the model, not an approximation of it.

Heads are ``nn.Module`` s (for joint training and ONNX export) that also follow scikit-learn's
estimator conventions: ``__init__`` stores parameters, ``fit(C, Y)`` returns ``self``,
``predict(C)`` works on numpy arrays.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn


def as_tensor(x: Any, *, like: torch.Tensor | None = None) -> torch.Tensor:
    """Convert array-likes to a float tensor (on ``like``'s device and dtype when given)."""
    dtype = like.dtype if like is not None else torch.float32
    device = like.device if like is not None else None
    if isinstance(x, torch.Tensor):
        return x.to(dtype=dtype, device=device)
    return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dtype, device=device)


def check_2d(x: Any, n_columns: int, what: str) -> np.ndarray:
    """Validate a (samples, columns) numeric array and say which argument is wrong if not."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1 and n_columns == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != n_columns:
        raise ValueError(f"{what} must have shape (n_samples, {n_columns}); got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return arr


class AdditiveHead(nn.Module):
    """Base class: subclasses implement ``contributions`` and ``intercept`` and ``fit``."""

    #: short name stored in config.json ("linear", "gam")
    kind: str = ""

    def __init__(
        self,
        n_concepts: int,
        n_targets: int,
        *,
        concept_names: Sequence[str] | None = None,
        target_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if n_concepts < 1 or n_targets < 1:
            raise ValueError("a head needs at least one concept and one target")
        self.n_concepts = int(n_concepts)
        self.n_targets = int(n_targets)
        self.concept_names = list(concept_names) if concept_names is not None else [
            f"concept_{k}" for k in range(n_concepts)
        ]
        self.target_names = list(target_names) if target_names is not None else [
            f"target_{t}" for t in range(n_targets)
        ]
        if len(self.concept_names) != n_concepts or len(self.target_names) != n_targets:
            raise ValueError("concept_names/target_names lengths must match n_concepts/n_targets")

    # -- the additive contract -------------------------------------------------------------
    def contribution_terms(self, concepts: torch.Tensor) -> torch.Tensor:
        """(N, K) tensor -> (N, T, K) tensor of per-concept terms. Subclasses implement."""
        raise NotImplementedError

    @property
    def intercept(self) -> torch.Tensor:
        """(T,) tensor. Subclasses implement."""
        raise NotImplementedError

    def contributions(self, concepts: Any) -> Any:
        """One term per (sample, target, concept); numpy in -> numpy out, tensor in -> tensor out."""
        if isinstance(concepts, torch.Tensor):
            return self.contribution_terms(concepts)
        c = check_2d(concepts, self.n_concepts, "concepts")
        with torch.no_grad():
            terms = self.contribution_terms(as_tensor(c, like=self.intercept))
        return terms.cpu().numpy()

    def forward(self, concepts: torch.Tensor) -> torch.Tensor:
        return self.contribution_terms(concepts).sum(dim=-1) + self.intercept

    # -- scikit-learn style ----------------------------------------------------------------
    def fit(self, concepts: Any, targets: Any) -> "AdditiveHead":
        raise NotImplementedError

    def predict(self, concepts: Any) -> np.ndarray:
        c = check_2d(concepts, self.n_concepts, "concepts")
        with torch.no_grad():
            out = self.forward(as_tensor(c, like=self.intercept))
        return out.cpu().numpy()

    def penalty(self) -> torch.Tensor:
        """Regulariser added to the loss during joint training (zero by default)."""
        return self.intercept.new_zeros(())

    def init_params(self) -> dict[str, Any]:
        """JSON-serialisable keyword arguments that rebuild this head (weights aside)."""
        raise NotImplementedError
