"""Exactly additive heads: concepts -> targets as a sum of per-concept terms."""

from __future__ import annotations

from typing import Any

from .base import AdditiveHead
from .gam import GAMHead
from .linear import SparseLinearHead

HEADS: dict[str, type[AdditiveHead]] = {"linear": SparseLinearHead, "gam": GAMHead}


def build_head(kind: str, n_concepts: int, n_targets: int, **params: Any) -> AdditiveHead:
    """Build a head by its config name ("linear" or "gam")."""
    try:
        cls = HEADS[kind]
    except KeyError:
        raise ValueError(f"unknown head type {kind!r}; choose from {sorted(HEADS)}") from None
    return cls(n_concepts, n_targets, **params)


__all__ = ["AdditiveHead", "GAMHead", "SparseLinearHead", "HEADS", "build_head"]
