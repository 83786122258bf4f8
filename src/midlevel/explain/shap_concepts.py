"""SHAP over the seven concepts, and what it must equal for an additive head.

For a head ``f(c) = b + sum_j f_j(c_j)`` the interventional SHAP value of concept j against a
background set is ``f_j(c_j) - mean_background f_j``: the head's own contribution, centred on
the background. ``exact_head_shap`` computes that from the head's ``contributions`` (float64);
``linear_head_shap`` asks shap's ``LinearExplainer`` for a linear head, and ``concept_shap`` runs
``PermutationExplainer`` on any concepts -> targets function (a GAM head, or the black-box
``MLPHead``), so the tests can check the two routes agree.

Both explainers get the *full* background: a raw background matrix given to shap is wrapped in
``maskers.Independent`` with ``max_samples=100`` and silently subsampled, which turns the
background mean into an estimate and breaks exactness.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import shap
import torch
from tqdm.auto import tqdm

from ..heads import AdditiveHead, SparseLinearHead


@dataclass
class ConceptShap:
    """Per clip, target and concept: values that sum to output minus expected value."""

    concept_names: list[str]
    target_names: list[str]
    values: np.ndarray  # (N, T, K)
    expected_value: np.ndarray  # (T,) mean output over the background
    output: np.ndarray  # (N, T)
    seconds: float  # wall time of all N explanations

    def additivity_error(self) -> float:
        return float(np.abs(self.expected_value + self.values.sum(-1) - self.output).max())


def full_background(background: Any) -> shap.maskers.Independent:
    """An Independent masker that keeps every background row (shap's default keeps 100)."""
    data = np.asarray(background, dtype=np.float64)
    return shap.maskers.Independent(data, max_samples=len(data))


def head_function(head: AdditiveHead) -> Callable[[np.ndarray], np.ndarray]:
    """``head`` as a numpy function evaluated in float64 (so exactness is not lost to float32)."""
    def predict(concepts: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return head(torch.as_tensor(np.asarray(concepts), dtype=torch.float64)).numpy()
    return predict


def exact_head_shap(head: AdditiveHead, concepts: Any, background: Any) -> np.ndarray:
    """(N, T, K) exact SHAP values of an additive head: contributions centred on the background."""
    with torch.no_grad():
        terms = head.contributions(torch.as_tensor(np.asarray(concepts), dtype=torch.float64))
        reference = head.contributions(torch.as_tensor(np.asarray(background), dtype=torch.float64)).mean(0)
    return (terms - reference).numpy()


def linear_head_shap(head: SparseLinearHead, concepts: Any, background: Any) -> np.ndarray:
    """(N, T, K) SHAP values from shap's ``LinearExplainer`` with the full background."""
    model = (head.coef_.astype(np.float64), head.intercept_.astype(np.float64))
    result = shap.LinearExplainer(model, full_background(background))(np.asarray(concepts, dtype=np.float64))
    return np.asarray(result.values).reshape(len(result.values), head.n_concepts, -1).transpose(0, 2, 1)


def concept_shap(predict: Callable[[np.ndarray], np.ndarray], concepts: Any, background: Any, *,
                 concept_names: list[str], target_names: list[str], max_evals: int | str = "auto",
                 seed: int = 0, progress: bool = True) -> ConceptShap:
    """``PermutationExplainer`` values of ``predict`` over the concepts, one clip at a time.

    Each evaluation costs one ``predict`` call on ``len(background)`` rows. ``"auto"`` gives ten
    antithetic permutations; for an additive ``predict`` a single one is already exact.
    """
    c = np.atleast_2d(np.asarray(concepts, dtype=np.float64))
    started = time.perf_counter()
    masker = full_background(background)
    values, expected = [], None
    for row in tqdm(c, desc="concept SHAP", unit="clip", disable=not progress, leave=False):
        # a fresh explainer per clip draws the same permutations for a clip wherever it sits
        explainer = shap.PermutationExplainer(predict, masker, seed=seed)
        result = explainer(row[None], max_evals=max_evals, silent=True)
        values.append(np.asarray(result.values[0]).reshape(len(row), -1).T)
        expected = np.asarray(result.base_values[0], dtype=np.float64).reshape(-1)
    return ConceptShap(list(concept_names), list(target_names), np.stack(values), expected,
                       np.asarray(predict(c), dtype=np.float64).reshape(len(c), -1),
                       time.perf_counter() - started)
