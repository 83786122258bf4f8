"""GAM head: one smooth, optionally monotone, shape function per (target, concept).

Why hand-written: library GAMs (pygam, interpret) are numpy estimators; none can live inside a
torch network, train jointly with it by autograd, or export to ONNX. Here each shape function
is a cubic P-spline (Eilers & Marx 1996): a B-spline basis on equally spaced knots, evaluated
with the Cox-de Boor recursion in plain tensor ops, plus a second-difference roughness penalty.

Objective, per target t (the same convention as ``SparseLinearHead``)::

    0.5 * mean_n (y[n, t] - output[n, t])**2 + 0.5 * lambda_t * sum_k |D2 beta[t, k]|^2

``fit`` solves it in closed form; ``penalty()`` returns the penalty part (summed over
targets) for joint training with ``0.5 * ((output - y) ** 2).mean(0).sum() + penalty()``.
Because lambda multiplies a *mean* error it does not depend on the number of rows or the batch.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._extras import require
from .base import AdditiveHead, check_2d

SMOOTHNESS_GRID = np.logspace(-6, 1, 22)  # candidates for smoothness="auto"


def _index(key: str | int, names: Sequence[str], what: str) -> int:
    """Resolve a name or an index into ``names``."""
    if isinstance(key, str):
        if key not in names:
            raise ValueError(f"unknown {what} {key!r}; expected one of {list(names)}")
        return names.index(key)
    if not 0 <= int(key) < len(names):
        raise ValueError(f"{what} index {key} out of range 0..{len(names) - 1}")
    return int(key)


class GAMHead(AdditiveHead):
    """``output[t] = intercept[t] + sum_k f_tk(concept_k)`` with P-spline shape functions.

    * ``n_basis=10`` cubic B-splines (7 intervals over 1-10): enough for any shape a 1-10
      rating can carry; smoothness comes from the penalty, not from few knots.
    * ``smoothness``: lambda of the penalty above, or ``"auto"`` (default) to pick it per
      target by generalised cross-validation in ``fit``: noisy targets such as emotion ratings
      need far more smoothing than clean ones. Until ``fit`` runs, "auto" means 1e-3, which
      alone fits smooth curves well on 500-5000 rows of moderately noisy data.
    * ``concept_range``: inputs are clamped to it, so curves extrapolate as constants (and
      concepts outside it get no gradient in joint training).
    * ``monotone``: ``{concept: +1 | -1}`` for all targets or ``{concept: {target: +1 | -1}}``
      (names or indices) makes those curves non-decreasing / non-increasing.

    Spline coefficients are stored as increments (``beta = [0, cumsum(increments)]``; the first
    coefficient is irrelevant once curves are centred) and monotone curves clamp their increments
    to one sign, which keeps the constraint exact in joint training and ONNX. Each curve is
    centred on the fit data (the mean basis row is a buffer, so the offset follows the
    coefficients in joint training): curves have zero mean there, the intercept is the mean target.
    """

    kind = "gam"

    def __init__(
        self,
        n_concepts: int,
        n_targets: int,
        *,
        concept_names: Sequence[str] | None = None,
        target_names: Sequence[str] | None = None,
        n_basis: int = 10,
        degree: int = 3,
        smoothness: float | str = "auto",
        concept_range: Sequence[float] = (1.0, 10.0),
        monotone: Mapping[Any, Any] | None = None,
    ) -> None:
        super().__init__(
            n_concepts, n_targets, concept_names=concept_names, target_names=target_names
        )
        if degree < 1 or n_basis < degree + 2:
            raise ValueError("need degree >= 1 and n_basis >= degree + 2")
        if smoothness != "auto" and not float(smoothness) >= 0:
            raise ValueError("smoothness must be >= 0 or 'auto'")
        lo, hi = (float(v) for v in concept_range)
        if not lo < hi:
            raise ValueError("concept_range must be (low, high) with low < high")
        self.n_basis = int(n_basis)
        self.degree = int(degree)
        self.smoothness = smoothness if smoothness == "auto" else float(smoothness)
        self.concept_range = (lo, hi)
        signs = self._monotone_signs(monotone)
        self.monotone = self._monotone_dict(signs)

        # Equally spaced knots extended by `degree` knots beyond each end of the range.
        knots = lo + (np.arange(n_basis + degree + 1) - degree) * (hi - lo) / (n_basis - degree)
        self.register_buffer("knots", torch.tensor(knots, dtype=torch.float32))
        # Degree-0 pieces: only the intervals inside the range can hold a (clamped) input; the
        # outermost ones are opened to +-inf so every input lands in exactly one interval.
        lefts, rights = knots[:-1].copy(), knots[1:].copy()
        outside = (np.arange(len(lefts)) < degree) | (np.arange(len(lefts)) >= n_basis)
        lefts[outside], rights[outside] = np.inf, -np.inf
        lefts[degree], rights[n_basis - 1] = -np.inf, np.inf
        self.register_buffer("interval_lo", torch.tensor(lefts, dtype=torch.float32))
        self.register_buffer("interval_hi", torch.tensor(rights, dtype=torch.float32))
        for d in range(1, degree + 1):  # 1 / (t[i+d] - t[i]), 0 where the span is empty
            span = knots[d:] - knots[:-d]
            inv = np.divide(1.0, span, out=np.zeros_like(span), where=span > 0)
            self.register_buffer(f"inv_span{d}", torch.tensor(inv, dtype=torch.float32))

        # Bounds on the coefficient increments: [0, inf) increasing, (-inf, 0] decreasing.
        signs_t = torch.tensor(signs, dtype=torch.float32).unsqueeze(-1)
        self.register_buffer("step_min", torch.where(signs_t > 0, 0.0, -torch.inf))
        self.register_buffer("step_max", torch.where(signs_t < 0, 0.0, torch.inf))
        default_lambda = 1e-3 if smoothness == "auto" else self.smoothness
        self.register_buffer("lambdas", torch.full((n_targets,), default_lambda))

        steps = 0.05 * torch.randn(n_targets, n_concepts, n_basis - 1)
        self.increments = nn.Parameter(torch.where(signs_t != 0, signs_t * steps.abs(), steps))
        self.bias = nn.Parameter(torch.zeros(n_targets))
        # Until fit() sees data, centre each curve on a uniform spread over the range.
        self.register_buffer("basis_mean", torch.zeros(n_concepts, n_basis))
        with torch.no_grad():
            grid = torch.linspace(lo, hi, 1001).unsqueeze(1).expand(-1, n_concepts)
            self.basis_mean.copy_(self.basis(grid).mean(0))

    # -- monotone specification ------------------------------------------------------------
    def _monotone_signs(self, monotone: Mapping[Any, Any] | None) -> np.ndarray:
        """(T, K) array of +1 / -1 / 0 from the user's dict."""
        signs = np.zeros((self.n_targets, self.n_concepts))
        for concept, spec in (monotone or {}).items():
            k = _index(concept, self.concept_names, "monotone concept")
            if not isinstance(spec, Mapping):
                spec = dict.fromkeys(range(self.n_targets), spec)
            for target, sign in spec.items():
                if sign not in (1, -1):
                    raise ValueError(f"monotone sign of {concept!r} must be +1 or -1, not {sign!r}")
                signs[_index(target, self.target_names, "monotone target"), k] = sign
        return signs

    def _monotone_dict(self, signs: np.ndarray) -> dict[str, dict[str, int]] | None:
        """Name-keyed form of ``signs``, which survives a JSON round trip."""
        spec = {
            concept: {t: int(signs[i, k]) for i, t in enumerate(self.target_names) if signs[i, k]}
            for k, concept in enumerate(self.concept_names)
        }
        return {c: s for c, s in spec.items() if s} or None

    # -- tensor path -----------------------------------------------------------------------
    def basis(self, concepts: torch.Tensor) -> torch.Tensor:
        """(N, K) -> (N, K, n_basis) B-spline values (Cox-de Boor), inputs clamped to the range."""
        x = concepts.clamp(*self.concept_range).unsqueeze(-1)
        t = self.knots.to(x.dtype)
        b = ((x >= self.interval_lo.to(x.dtype)) & (x < self.interval_hi.to(x.dtype))).to(x.dtype)
        for d in range(1, self.degree + 1):
            inv = getattr(self, f"inv_span{d}").to(x.dtype)
            b = (x - t[: -d - 1]) * inv[:-1] * b[..., :-1] + (t[d + 1 :] - x) * inv[1:] * b[..., 1:]
        return b

    def _steps(self) -> torch.Tensor:
        """Increments with the monotone bounds applied (a projection: identity when feasible)."""
        return torch.clamp(self.increments, self.step_min, self.step_max)

    def _coefficients(self) -> torch.Tensor:
        """(T, K, n_basis) spline coefficients, first one 0."""
        return F.pad(torch.cumsum(self._steps(), dim=-1), (1, 0))

    def contribution_terms(self, concepts: torch.Tensor) -> torch.Tensor:
        centred = self.basis(concepts) - self.basis_mean.to(concepts.dtype)
        return torch.einsum("nkb,tkb->ntk", centred, self._coefficients().to(concepts.dtype))

    @property
    def intercept(self) -> torch.Tensor:
        return self.bias

    def penalty(self) -> torch.Tensor:
        """0.5 * lambda_t * squared second differences, summed; plus a pull back to feasibility.

        The second term is zero for feasible (e.g. freshly fitted) increments. It exists because
        a clamped increment gets no gradient from the data, so without it a monotone increment
        pushed past its bound in joint training could never come back.
        """
        steps = self._steps()
        rough = (steps[..., 1:] - steps[..., :-1]).square().sum(dim=(-1, -2))
        return 0.5 * (self.lambdas * rough).sum() + 0.5 * (self.increments - steps).square().sum()

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, concepts: Any, targets: Any) -> "GAMHead":
        """Penalised least squares per target, in closed form (bounded for monotone curves)."""
        require("scipy", "train", "fitting a GAM head")
        from scipy.optimize import lsq_linear
        c = check_2d(concepts, self.n_concepts, "concepts")
        y = check_2d(targets, self.n_targets, "targets")
        if len(c) != len(y):
            raise ValueError(f"concepts has {len(c)} rows but targets has {len(y)}")
        if len(c) < 2:
            raise ValueError("concepts needs at least 2 rows to fit a GAM")
        n, nb = len(c), self.n_basis
        design, basis_mean, rough = self._design(c)
        y_mean = y.mean(0)
        yc = y - y_mean
        if self.smoothness == "auto":
            lambdas = self._gcv_smoothness(design, rough, yc)
        else:
            lambdas = np.full(self.n_targets, self.smoothness)

        lower = np.broadcast_to(self.step_min.cpu().numpy(), self.increments.shape)
        upper = np.broadcast_to(self.step_max.cpu().numpy(), self.increments.shape)
        steps = np.empty(self.increments.shape)
        for t in range(self.n_targets):
            a = np.vstack([design, np.sqrt(n * lambdas[t]) * rough])
            b = np.concatenate([yc[:, t], np.zeros(len(rough))])
            lo, hi = lower[t].ravel(), upper[t].ravel()
            if np.all(np.isinf(lo)) and np.all(np.isinf(hi)):
                sol = np.linalg.lstsq(a, b, rcond=None)[0]
            else:
                sol = lsq_linear(a, b, bounds=(lo, hi), method="bvls").x
            steps[t] = sol.reshape(self.n_concepts, nb - 1)

        with torch.no_grad():
            self.increments.copy_(torch.as_tensor(steps))
            self.bias.copy_(torch.as_tensor(y_mean))
            self.basis_mean.copy_(torch.as_tensor(basis_mean))
            self.lambdas.copy_(torch.as_tensor(lambdas))
        return self

    def _design(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What a fit solves with, for (N, K) concepts: the design in increment coordinates, centred on
        ``c`` (N, K * (n_basis - 1)); the mean basis row (K, n_basis); the second-difference operator on
        the increments (D2 beta), so the roughness of increments s is ``|rough @ s|^2``."""
        n, nb = len(c), self.n_basis
        with torch.no_grad():
            basis = self.basis(torch.as_tensor(c, device=self.knots.device)).cpu().numpy()
        basis_mean = basis.mean(0)
        to_coef = np.tril(np.ones((nb, nb - 1)), -1)  # beta = to_coef @ increments
        design = np.einsum("nkb,bj->nkj", basis - basis_mean, to_coef).reshape(n, -1)
        rough = np.kron(np.eye(self.n_concepts), np.diff(np.eye(nb - 1), axis=0))  # D2 beta
        return design, basis_mean, rough

    @staticmethod
    def _gcv_smoothness(design: np.ndarray, rough: np.ndarray, yc: np.ndarray) -> np.ndarray:
        """Per target, the ``SMOOTHNESS_GRID`` lambda with the lowest GCV score.

        Demmler-Reinsch: in coordinates where ``design.T @ design`` is the identity the penalty
        is diagonal, so all candidates cost one eigendecomposition. Scored on the unconstrained
        fit, also for monotone curves.
        """
        from scipy.linalg import solve_triangular

        n, p = design.shape
        gram = design.T @ design
        gram += 1e-10 * np.trace(gram) / p * np.eye(p)  # defined even for a constant concept
        whiten = solve_triangular(np.linalg.cholesky(gram), np.eye(p), lower=True)
        eig, rot = np.linalg.eigh(whiten @ rough.T @ rough @ whiten.T)
        z2 = np.square(rot.T @ whiten @ design.T @ yc)  # squared projections of y, (p, T)
        shrink = 1.0 / (1.0 + n * np.outer(SMOOTHNESS_GRID, np.clip(eig, 0, None)))
        rss = np.square(yc).sum(0) - z2.sum(0) + np.square(1 - shrink) @ z2  # (grid, T)
        edf = shrink.sum(1, keepdims=True) + 1  # + intercept
        scores = n * np.clip(rss, 0, None) / np.clip(n - edf, 1.0, None) ** 2
        return SMOOTHNESS_GRID[np.argmin(scores, axis=0)]

    # -- inspection ------------------------------------------------------------------------
    def shape_function(
        self, concept: str | int, grid: Any, target: str | int | None = None
    ) -> np.ndarray:
        """Centred curve f(grid) of one concept: (len(grid), T), or (len(grid),) for one target."""
        k = _index(concept, self.concept_names, "concept")
        g = np.asarray(grid, dtype=np.float64)
        if g.ndim != 1:
            raise ValueError(f"grid must be 1-d; got shape {g.shape}")
        c = np.full((len(g), self.n_concepts), self.concept_range[0])
        c[:, k] = g
        curves = self.contributions(c)[:, :, k]
        return curves if target is None else curves[:, _index(target, self.target_names, "target")]

    @property
    def coef_(self) -> np.ndarray:
        """(T, K, n_basis) centred spline coefficients: ``f_tk(x) = basis(x)[k] @ coef_[t, k]``."""
        with torch.no_grad():
            beta = self._coefficients()
            offset = (beta * self.basis_mean).sum(-1, keepdim=True)
        return (beta - offset).cpu().numpy()

    @property
    def intercept_(self) -> np.ndarray:
        return self.bias.detach().cpu().numpy().copy()

    @property
    def smoothness_(self) -> np.ndarray:
        """(T,) lambda in use per target (chosen by GCV when ``smoothness='auto'``)."""
        return self.lambdas.cpu().numpy().copy()

    def init_params(self) -> dict[str, Any]:
        return {
            "concept_names": list(self.concept_names),
            "target_names": list(self.target_names),
            "n_basis": self.n_basis,
            "degree": self.degree,
            "smoothness": self.smoothness,
            "concept_range": list(self.concept_range),
            "monotone": self.monotone,
        }
