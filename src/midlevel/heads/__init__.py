"""Exactly additive heads: concepts -> targets as a sum of per-concept terms.

Regression heads ("linear", "gam") output target values; classification heads ("logistic",
"gam_logistic") output one logit per class, additive in logit space (``heads.logistic``).
"""

from __future__ import annotations

from typing import Any

from .base import AdditiveHead
from .gam import GAMHead
from .gam_classifier import GAMClassifierHead
from .linear import SparseLinearHead
from .logistic import LogitHead, SparseLogisticHead

HEADS: dict[str, type[AdditiveHead]] = {
    "linear": SparseLinearHead,
    "gam": GAMHead,
    "logistic": SparseLogisticHead,
    "gam_logistic": GAMClassifierHead,
}


def build_head(kind: str, n_concepts: int, n_targets: int, **params: Any) -> AdditiveHead:
    """Build a head by its config name ("linear", "gam", "logistic" or "gam_logistic")."""
    try:
        cls = HEADS[kind]
    except KeyError:
        raise ValueError(f"unknown head type {kind!r}; choose from {sorted(HEADS)}") from None
    return cls(n_concepts, n_targets, **params)


__all__ = ["AdditiveHead", "GAMClassifierHead", "GAMHead", "LogitHead", "SparseLinearHead", "SparseLogisticHead",
           "HEADS", "build_head"]
