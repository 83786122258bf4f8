"""Sparse logistic head: concepts -> class logits, an exact sum of per-concept terms in logit space.

For C classes the head's outputs ("targets" to the rest of the library) are the C logits::

    logits[n, c] = intercept[c] + sum_k weight[c, k] * concepts[n, k]

and probabilities are ``softmax(logits)``. As with InterpretML's EBM classifiers, the explanation
is additive in logit space (log-odds for two classes), not in probability.

``fit`` delegates to scikit-learn's ``LogisticRegression``, whose objective is (``s_i`` the class
weight of row i's class, 1 without ``class_weight``; ``r`` the penalty on the weights, intercepts
unpenalised)::

    C * sum_i s_i * logloss_i + r(W),   r = l1_ratio * |W|_1 + 0.5 * (1 - l1_ratio) * |W|_2^2

Divided by ``C * N`` (which does not move the minimum) that is

    mean_i s_i * logloss_i + r(W) / (C * N)

``loss(logits, labels)`` is the first term and ``penalty()`` the second, with ``N`` the number of
rows ``fit`` saw (the ``n_fit_rows`` buffer, saved with the weights; 1 before any fit). So joint
training with ``head.loss(head(concepts), labels) + head.penalty()`` on the same data continues
exactly the problem ``fit`` solved, and its gradient is zero at the fitted weights. (torch's
``cross_entropy(weight=...)`` averages by the sum of the weights, not by N: use ``head.loss``.)

Two classes. scikit-learn fits one weight vector ``w`` (log-odds of class 1). The head still gives
two logits, so every head has C outputs and one code path, and maps the fit exactly to
``logits = [0, z]``, ``z = b + w @ concepts``: class 0 is the reference class whose logit is 0 at
all times (its row of ``weight`` and ``bias`` is masked, also in joint training and ONNX), and
class 1's terms are the log-odds terms scikit-learn's ``decision_function`` and EBM report.
``[-z/2, z/2]`` would give the same probabilities, but would halve every reported term and change
the l2 part of the penalty, whereas with ``[0, z]`` ``penalty()`` is exactly scikit-learn's ``r(w)``.

``predict`` returns the logits (N, C), like every head's ``predict`` returns its outputs: the
library (training loops, evaluation, attribution, the interactive report) reads a head's outputs
through ``predict``, and a two-stage model's "targets" are these logits. scikit-learn's names are
there too: ``decision_function`` (the logits), ``predict_proba`` and ``predict_class`` (argmax index).
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._extras import require
from .base import AdditiveHead, check_2d

PENALTIES = ("l2", "l1", "elasticnet", None)


def check_labels(labels: Any, n_rows: int, n_classes: int) -> np.ndarray:
    """Integer class indices 0..C-1, one per row, every class present; else one clear ValueError."""
    arr = np.asarray(labels)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"labels must be a 1-d array of class indices 0..{n_classes - 1}, one per row; got shape "
                         f"{arr.shape} (one-hot or probability matrices are not accepted: pass labels.argmax(1))")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices 0..{n_classes - 1}; got dtype {arr.dtype} "
                         "(whole-number floats: pass labels.astype(int); names: map them to indices)")
    if len(arr) != n_rows:
        raise ValueError(f"concepts has {n_rows} rows but labels has {len(arr)}")
    outside = np.unique(arr[(arr < 0) | (arr >= n_classes)])
    if len(outside):
        raise ValueError(f"labels must be class indices 0..{n_classes - 1}; got {outside[:5].tolist()}")
    present = np.unique(arr)
    if len(present) == 1:
        raise ValueError(f"labels hold a single class ({present[0]}); a classifier needs rows of at least two")
    missing = sorted(set(range(n_classes)) - set(present.tolist()))
    if missing:
        raise ValueError(f"labels never contain class(es) {missing}; every class 0..{n_classes - 1} needs rows "
                         "to be fitted (or build the head with fewer classes)")
    return arr.astype(np.int64)


class LogitHead:
    """What the classification heads share (a mixin for ``AdditiveHead`` subclasses).

    Outputs are C logits; for C == 2 class 0's logit is held at 0 (module docstring). Subclasses
    call ``_init_classes`` after ``nn.Module.__init__`` and keep their intercept in ``self.bias``.
    """

    n_targets: int
    target_names: list[str]
    bias: nn.Parameter

    def _init_classes(self, class_weight: str | Mapping[Any, float] | None) -> None:
        c = self.n_targets
        if c < 2:
            raise ValueError(f"a classification head needs at least 2 classes; got {c}")
        if class_weight is not None and class_weight != "balanced":
            if not isinstance(class_weight, Mapping):
                raise ValueError("class_weight must be None, 'balanced' or a {class: weight} mapping")
            weights = {}
            for key, value in class_weight.items():
                k = int(key) if isinstance(key, str) and key.isdigit() and key not in self.target_names else key
                index = self.target_names.index(k) if isinstance(k, str) and k in self.target_names else k
                if not isinstance(index, (int, np.integer)) or not 0 <= int(index) < c:
                    raise ValueError(f"class_weight: unknown class {key!r}; expected one of {self.target_names}")
                if not float(value) > 0:
                    raise ValueError(f"class_weight of {key!r} must be positive; got {value!r}")
                weights[self.target_names[int(index)]] = float(value)
            class_weight = weights
        self.class_weight = class_weight
        mask = torch.ones(c)
        if c == 2:
            mask[0] = 0.0  # class 0 is the reference class: logit 0
        self.register_buffer("class_mask", mask, persistent=False)  # type: ignore[attr-defined]
        #: per-class weight of the data term: ones, or what ``fit`` resolved ``class_weight`` to
        self.register_buffer("class_weights", torch.ones(c))  # type: ignore[attr-defined]

    @property
    def n_classes(self) -> int:
        return self.n_targets

    @property
    def classes_(self) -> np.ndarray:
        """The class indices 0..C-1 (scikit-learn's name); ``target_names`` names them."""
        return np.arange(self.n_targets)

    @property
    def intercept(self) -> torch.Tensor:
        return self.bias * self.class_mask.to(self.bias.dtype)

    @property
    def intercept_(self) -> np.ndarray:
        return self.intercept.detach().cpu().numpy().copy()

    def _resolved_class_weights(self, labels: np.ndarray) -> np.ndarray:
        """(C,) weights; "balanced" is scikit-learn's ``N / (C * count)``."""
        c = self.n_targets
        if self.class_weight is None:
            return np.ones(c)
        if self.class_weight == "balanced":
            return len(labels) / (c * np.bincount(labels, minlength=c))
        out = np.ones(c)
        for name, value in self.class_weight.items():
            out[self.target_names.index(name)] = value
        return out

    # -- outputs ---------------------------------------------------------------------------------
    def decision_function(self, concepts: Any) -> np.ndarray:
        """(N, C) logits (scikit-learn's name; the same as ``predict``)."""
        return AdditiveHead.predict(self, concepts)  # type: ignore[arg-type]

    def predict_proba(self, concepts: Any) -> np.ndarray:
        """(N, C) class probabilities, the softmax of the logits (in float64)."""
        logits = self.decision_function(concepts).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict_class(self, concepts: Any) -> np.ndarray:
        """(N,) index of the most likely class (``target_names[i]`` names it)."""
        return self.decision_function(concepts).argmax(axis=1)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``mean_i s_i * cross_entropy_i``: the data term of the fitting objective (module docstring)."""
        labels = labels.long()
        per_row = F.cross_entropy(logits, labels, reduction="none")
        return (per_row * self.class_weights.to(per_row.dtype)[labels]).mean()


def _sklearn_version() -> tuple[int, int]:
    import sklearn

    found = re.match(r"(\d+)\.(\d+)", sklearn.__version__)
    return (int(found[1]), int(found[2])) if found else (0, 0)


def sklearn_penalty_kwargs(penalty: str | None, C: float, l1_ratio: float) -> dict[str, Any]:
    """``LogisticRegression`` keywords for a penalty, solver included, on this scikit-learn.

    scikit-learn 1.8 deprecated ``penalty`` (``l1_ratio`` alone says it, ``C=inf`` means none).
    lbfgs solves the smooth cases; l1 and the elastic net need saga.
    """
    ratio = {"l2": 0.0, "l1": 1.0, None: 0.0}.get(penalty, l1_ratio)
    solver = "lbfgs" if ratio == 0.0 else "saga"
    if _sklearn_version() >= (1, 8):
        return {"C": np.inf if penalty is None else C, "l1_ratio": ratio, "solver": solver}
    extra = {"l1_ratio": l1_ratio} if penalty == "elasticnet" else {}
    return {"C": C, "penalty": penalty, "solver": solver, **extra}


class SparseLogisticHead(LogitHead, AdditiveHead):
    """``logits = weight @ concepts + bias`` with scikit-learn's logistic-regression penalty.

    ``C`` is scikit-learn's inverse regularisation strength (smaller -> sparser, smaller weights),
    ``penalty`` one of "elasticnet" (default, mixed by ``l1_ratio``), "l1", "l2" or None.
    ``class_weight``: None, "balanced" or ``{class name or index: weight}``, as in scikit-learn.
    """

    kind = "logistic"

    def __init__(
        self,
        n_concepts: int,
        n_classes: int,
        *,
        concept_names: Sequence[str] | None = None,
        target_names: Sequence[str] | None = None,
        C: float = 1.0,
        penalty: str | None = "elasticnet",
        l1_ratio: float = 0.5,
        class_weight: str | Mapping[Any, float] | None = None,
        fit_intercept: bool = True,
        max_iter: int = 10_000,
        tol: float = 1e-6,
    ) -> None:
        if target_names is None:
            target_names = [f"class_{c}" for c in range(n_classes)]
        super().__init__(n_concepts, n_classes, concept_names=concept_names, target_names=target_names)
        if penalty not in PENALTIES:
            raise ValueError(f"penalty must be one of {list(PENALTIES)}; got {penalty!r}")
        if not float(C) > 0 or not 0.0 <= l1_ratio <= 1.0:
            raise ValueError("C must be > 0 and l1_ratio in [0, 1]")
        self.C = float(C)
        self.penalty_kind = penalty
        self.l1_ratio = float(l1_ratio)
        self.fit_intercept = bool(fit_intercept)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self._init_classes(class_weight)
        bound = 1.0 / np.sqrt(n_concepts)
        weight = torch.empty(n_classes, n_concepts).uniform_(-bound, bound) * self.class_mask[:, None]
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(n_classes), requires_grad=self.fit_intercept)
        #: rows the last fit saw: the N of penalty() = r(W) / (C * N)
        self.register_buffer("n_fit_rows", torch.tensor(1.0))

    def _weight(self) -> torch.Tensor:
        return self.weight * self.class_mask.to(self.weight.dtype)[:, None]

    def contribution_terms(self, concepts: torch.Tensor) -> torch.Tensor:
        return self._weight().unsqueeze(0) * concepts.unsqueeze(1)

    def fit(self, concepts: Any, labels: Any) -> "SparseLogisticHead":
        """Fit by scikit-learn's ``LogisticRegression`` (same penalty, ``random_state=0``)."""
        require("sklearn", "train", "fitting a logistic head")
        from sklearn.linear_model import LogisticRegression

        c = check_2d(concepts, self.n_concepts, "concepts")
        y = check_labels(labels, len(c), self.n_classes)
        weights = self._resolved_class_weights(y)
        model = LogisticRegression(
            **sklearn_penalty_kwargs(self.penalty_kind, self.C, self.l1_ratio),
            class_weight=None if self.class_weight is None else dict(enumerate(weights)),
            fit_intercept=self.fit_intercept, max_iter=self.max_iter, tol=self.tol, random_state=0,
        ).fit(c, y)
        coef = np.asarray(model.coef_, dtype=np.float64)
        intercept = np.broadcast_to(np.asarray(model.intercept_, dtype=np.float64), (len(coef),)).copy()
        if self.n_classes == 2:  # one log-odds vector -> logits [0, z]
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.array([0.0, intercept[0]])
        with torch.no_grad():
            self.weight.copy_(torch.as_tensor(coef))
            self.bias.copy_(torch.as_tensor(intercept))
            self.n_fit_rows.fill_(float(len(c)))
            self.class_weights.copy_(torch.as_tensor(weights))
        return self

    def penalty(self) -> torch.Tensor:
        """scikit-learn's ``r(W) / (C * N)`` (module docstring); 0 for ``penalty=None``.

        ``r = l1_ratio * |W|_1 + 0.5 * (1 - l1_ratio) * |W|_2^2`` over all (class, concept) weights
        ("l1": l1_ratio 1, "l2": 0); for two classes W is class 1's row, the log-odds weights.
        """
        if self.penalty_kind is None:
            return self.weight.new_zeros(())
        ratio = {"l2": 0.0, "l1": 1.0}.get(self.penalty_kind, self.l1_ratio)
        w = self._weight()
        r = ratio * w.abs().sum() + 0.5 * (1.0 - ratio) * (w * w).sum()
        return r / (self.C * self.n_fit_rows.to(w.dtype))

    @property
    def coef_(self) -> np.ndarray:
        """(C, K) logit weights (class 0's row is zero for two classes)."""
        return self._weight().detach().cpu().numpy().copy()

    @property
    def sparsity_(self) -> float:
        """Fraction of the fitted (class, concept) weights that are exactly zero (class 1 only, for two)."""
        w = self.coef_[1:] if self.n_classes == 2 else self.coef_
        return float((w == 0).mean())

    def used_concepts(self, tol: float = 0.0) -> dict[str, dict[str, float]]:
        """Per class, the concepts with ``|weight| > tol`` and their logit weights.

        For two classes class 0 (the reference) uses none and class 1's are the log-odds weights.
        ``tol=0`` is right after ``fit``; after joint training pass a small ``tol``.
        """
        w = self.coef_
        return {
            name: {concept: float(w[c, k]) for k, concept in enumerate(self.concept_names) if abs(w[c, k]) > tol}
            for c, name in enumerate(self.target_names)
        }

    def init_params(self) -> dict[str, Any]:
        return {
            "concept_names": list(self.concept_names),
            "target_names": list(self.target_names),
            "C": self.C,
            "penalty": self.penalty_kind,
            "l1_ratio": self.l1_ratio,
            "class_weight": self.class_weight,
            "fit_intercept": self.fit_intercept,
            "max_iter": self.max_iter,
            "tol": self.tol,
        }
