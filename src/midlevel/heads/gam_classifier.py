"""GAM classifier head: one smooth, optionally monotone, shape function per (class, concept) in logit space.

``logits[n, c] = intercept[c] + sum_k f_ck(concepts[n, k])`` with ``GAMHead``'s P-splines (the
basis, the monotone increments, the centring and ``penalty()`` are ``GAMHead``'s own, inherited);
probabilities are ``softmax(logits)``, as for InterpretML's EBM classifiers. Objective::

    mean_i s_i * cross_entropy_i + 0.5 * lambda * sum_ck |D2 beta[c, k]|^2

(``s_i`` the class weight of row i's class, 1 without ``class_weight``). ``loss(logits, labels)``
is the first term, ``penalty()`` the second (``GAMHead.penalty``, with one lambda for all classes,
since the classes are fitted together), so joint training with ``head.loss(head(c), y) +
head.penalty()`` continues the problem ``fit`` solved. As in ``GAMHead``, lambda multiplies a
*mean*, so it does not depend on the number of rows.

Two classes: as for ``SparseLogisticHead``, class 0 is the reference class with logit 0 (its
increments and intercept are masked to zero, exactly, also in joint training and ONNX, where they
get no gradient) and class 1's curves are the log-odds curves; a ``monotone`` sign therefore
constrains the log-odds, i.e. the probability of class 1 (a sign given for class 0 is turned into
the opposite sign for class 1). With more classes
the curves are in the symmetric (all classes penalised) parameterisation, shifted after the fit so
the classes' curves sum to zero wherever no monotone constraint is set (this changes no probability
and no penalty), and a monotone sign constrains that class's logit term, not its probability, which
depends on the other classes' terms too.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .._extras import require
from .base import check_2d
from .gam import GAMHead, _index
from .logistic import LogitHead, check_labels


def _binary_monotone(monotone: Mapping[Any, Any], target_names: Sequence[str]) -> dict[Any, dict[str, int]]:
    """A monotone spec for two classes, restated on class 1 (the log-odds)."""
    out: dict[Any, dict[str, int]] = {}
    for concept, spec in monotone.items():
        if not isinstance(spec, Mapping):
            spec = {1: spec}  # one sign for "all classes": the log-odds
        sign = None
        for target, s in spec.items():
            if s not in (1, -1):
                raise ValueError(f"monotone sign of {concept!r} must be +1 or -1, not {s!r}")
            s1 = s if _index(target, target_names, "monotone target") == 1 else -s
            if sign is not None and s1 != sign:
                raise ValueError(f"monotone signs of {concept!r} contradict each other: with two classes "
                                 f"{target_names[0]!r} rising is {target_names[1]!r} falling")
            sign = s1
        out[concept] = {target_names[1]: sign}
    return out


class GAMClassifierHead(LogitHead, GAMHead):
    """P-spline shape functions per (class, concept) on the logits; see the module docstring.

    ``smoothness`` is lambda (a number: ``GAMHead``'s "auto" is generalised cross-validation of
    least squares and does not carry over to the log-loss). ``n_basis``, ``degree``,
    ``concept_range`` and ``monotone`` are ``GAMHead``'s. ``class_weight`` as in scikit-learn.
    ``fit`` runs L-BFGS-B until the projected gradient is below ``tol``.
    """

    kind = "gam_logistic"

    def __init__(
        self,
        n_concepts: int,
        n_classes: int,
        *,
        concept_names: Sequence[str] | None = None,
        target_names: Sequence[str] | None = None,
        n_basis: int = 10,
        degree: int = 3,
        smoothness: float = 1e-3,
        concept_range: Sequence[float] = (1.0, 10.0),
        monotone: Mapping[Any, Any] | None = None,
        class_weight: str | Mapping[Any, float] | None = None,
        max_iter: int = 10_000,
        tol: float = 1e-8,
    ) -> None:
        if target_names is None:
            target_names = [f"class_{c}" for c in range(n_classes)]
        if isinstance(smoothness, str) or not float(smoothness) >= 0:
            raise ValueError(f"smoothness must be a number >= 0 (no 'auto' for a classifier); got {smoothness!r}")
        if n_classes == 2 and monotone:
            monotone = _binary_monotone(monotone, list(target_names))
        super().__init__(
            n_concepts, n_classes, concept_names=concept_names, target_names=target_names, n_basis=n_basis,
            degree=degree, smoothness=float(smoothness), concept_range=concept_range, monotone=monotone,
        )
        self._init_classes(class_weight)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        with torch.no_grad():
            self.increments.mul_(self.class_mask[:, None, None])

    def _steps(self) -> torch.Tensor:
        """``GAMHead``'s increments, and for two classes zero for class 0 (the reference, logit 0)."""
        return super()._steps() * self.class_mask.to(self.increments.dtype)[:, None, None]

    def fit(self, concepts: Any, labels: Any) -> "GAMClassifierHead":
        """Minimise the objective (module docstring) over the spline increments and the intercepts.

        Written here rather than delegated: scikit-learn's ``LogisticRegression`` can only put a
        ridge on the coefficients, not the P-spline second-difference penalty (whose null space, a
        straight line per curve, must stay unpenalised), and has no bounds for monotone curves.
        The objective is convex and smooth, so scipy's L-BFGS-B with the exact gradient (and the
        monotone bounds on the increments) reaches its minimum; it is cheap at K * (n_basis - 1)
        coefficients per class.
        """
        require("scipy", "train", "fitting a GAM classifier head")
        from scipy.optimize import Bounds, minimize

        c = check_2d(concepts, self.n_concepts, "concepts")
        y = check_labels(labels, len(c), self.n_classes)
        n, n_classes = len(c), self.n_classes
        design, basis_mean, rough = self._design(c)
        p = design.shape[1]
        free = [1] if n_classes == 2 else list(range(n_classes))  # classes with parameters
        f = len(free)
        lam = float(self.smoothness)
        gram = rough.T @ rough
        weights = self._resolved_class_weights(y)
        row_weight = weights[y] / n
        onehot = np.eye(n_classes)[y]

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            b, s = theta[:f], theta[f:].reshape(f, p)
            logits = np.zeros((n, n_classes))
            logits[:, free] = b + design @ s.T
            top = logits.max(axis=1, keepdims=True)
            lse = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
            resid = (np.exp(logits - lse[:, None]) - onehot)[:, free] * row_weight[:, None]
            rough_s = s @ gram
            value = row_weight @ (lse - logits[np.arange(n), y]) + 0.5 * lam * (rough_s * s).sum()
            return value, np.concatenate([resid.sum(axis=0), (resid.T @ design + lam * rough_s).ravel()])

        shape = self.increments.shape
        lower = np.broadcast_to(self.step_min.cpu().numpy(), shape)[free].reshape(-1)
        upper = np.broadcast_to(self.step_max.cpu().numpy(), shape)[free].reshape(-1)
        log_freq = np.log(np.bincount(y, weights=weights[y], minlength=n_classes))
        start_b = log_freq[free] - (log_freq[0] if n_classes == 2 else log_freq.mean())
        start = np.concatenate([start_b, np.zeros(f * p)])
        result = minimize(
            objective, start, jac=True, method="L-BFGS-B",
            bounds=Bounds(np.r_[np.full(f, -np.inf), lower], np.r_[np.full(f, np.inf), upper]),
            options={"maxiter": self.max_iter, "maxfun": 2 * self.max_iter, "ftol": 1e-15, "gtol": self.tol,
                     "maxcor": 30},
        )
        if result.status == 1:  # iteration limit; other non-success ends are line searches at rounding level
            warnings.warn(f"GAM classifier fit stopped after {result.nit} iterations ({result.message}); "
                          "raise max_iter or smoothness", RuntimeWarning, stacklevel=2)
        bias = np.zeros(n_classes)
        bias[free] = result.x[:f]
        steps = np.zeros(shape)
        steps[free] = result.x[f:].reshape(f, *shape[1:])
        if n_classes > 2:
            bias -= bias.mean()
            # Adding one curve to every class changes no probability; at the optimum the classes'
            # mean curve is a straight line (unpenalised), so removing it changes no penalty either.
            # Only where that keeps every class within its monotone bounds: unconstrained curves.
            free_k = (np.isinf(self.step_min.cpu().numpy()) & np.isinf(self.step_max.cpu().numpy())).all(axis=0)
            steps -= np.where(free_k[None], steps.mean(axis=0, keepdims=True), 0.0)
        with torch.no_grad():
            self.increments.copy_(torch.as_tensor(steps))
            self.bias.copy_(torch.as_tensor(bias))
            self.basis_mean.copy_(torch.as_tensor(basis_mean))
            self.lambdas.fill_(lam)
            self.class_weights.copy_(torch.as_tensor(weights))
        return self

    def init_params(self) -> dict[str, Any]:
        return {
            **super().init_params(),
            "class_weight": self.class_weight,
            "max_iter": self.max_iter,
            "tol": self.tol,
        }
