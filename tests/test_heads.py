"""Tests of the additive heads: exact additivity, agreement with reference fits, export."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
import torch
from scipy.interpolate import BSpline
from sklearn.linear_model import ElasticNet

from midlevel.heads import AdditiveHead, GAMHead, SparseLinearHead, build_head

K, T = 7, 3

# Seven known shape functions on the 1-10 rating scale (the last one is zero on purpose).
TRUE_FUNCTIONS = [
    np.sin,
    lambda x: ((x - 5.5) / 3) ** 2,
    lambda x: np.tanh(x - 5),
    np.log,
    lambda x: 0.3 * x,
    lambda x: 1 / (1 + np.exp(-2 * (x - 6))),  # smooth step
    np.zeros_like,
]


def additive_truth(x: np.ndarray) -> np.ndarray:
    return sum(f(x[:, j]) for j, f in enumerate(TRUE_FUNCTIONS))


def r2(truth: np.ndarray, pred: np.ndarray) -> float:
    return 1 - np.square(truth - pred).sum() / np.square(truth - truth.mean()).sum()


def fitted(kind: str, rng: np.random.Generator, **params) -> AdditiveHead:
    x = rng.uniform(1, 10, (400, K))
    y = np.stack([np.sin(x[:, 0]) + 0.3 * x[:, 1] * t - 0.2 * x[:, t] for t in range(T)], 1)
    return build_head(kind, K, T, **params).fit(x, y + rng.normal(0, 0.3, y.shape))


@pytest.fixture(scope="module")
def additive_data():
    """3000 noisy training rows (noise sd 1.0, signal sd ~1.7) and 1000 noiseless test rows."""
    rng = np.random.default_rng(0)
    x, x_test = rng.uniform(1, 10, (3000, K)), rng.uniform(1, 10, (1000, K))
    y = additive_truth(x) + rng.normal(0, 1.0, len(x))
    return x, y, x_test, additive_truth(x_test)


@pytest.fixture(scope="module")
def additive_gam(additive_data):
    x, y, _, _ = additive_data
    return GAMHead(K, 1).fit(x, y[:, None])


# -- the additive contract, both heads --------------------------------------------------------
@pytest.mark.parametrize("kind", ["linear", "gam"])
@pytest.mark.parametrize("trained", [False, True])
def test_contributions_add_up_to_the_output(kind, trained):
    rng = np.random.default_rng(1)
    torch.manual_seed(1)
    head = fitted(kind, rng) if trained else build_head(kind, K, T)
    c = rng.uniform(-2, 13, (64, K))  # also outside the 1-10 range
    numpy_sum = head.contributions(c).sum(-1) + head.intercept_
    assert np.abs(numpy_sum - head.predict(c)).max() <= 1e-5
    ct = torch.as_tensor(c, dtype=torch.float32)
    with torch.no_grad():
        tensor_sum = head.contribution_terms(ct).sum(-1) + head.intercept
        assert (tensor_sum - head(ct)).abs().max() <= 1e-5
    assert head.contributions(c).shape == (64, T, K)


@pytest.mark.parametrize("kind", ["linear", "gam"])
def test_state_dict_round_trip_through_json_params(kind):
    rng = np.random.default_rng(2)
    params = {"concept_names": list("abcdefg"), "target_names": ["valence", "energy", "tension"]}
    if kind == "gam":
        params |= {"monotone": {1: 1, "c": {"energy": -1}}}
    head = fitted(kind, rng, **params)
    rebuilt = build_head(kind, K, T, **json.loads(json.dumps(head.init_params())))
    rebuilt.load_state_dict(head.state_dict())
    c = torch.as_tensor(rng.uniform(0, 11, (32, K)), dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(rebuilt(c), head(c))
        assert torch.equal(rebuilt.penalty(), head.penalty())


@pytest.mark.parametrize("kind", ["linear", "gam"])
def test_bad_input_names_the_argument(kind):
    head = build_head(kind, K, T)
    x, y = np.ones((20, K)), np.ones((20, T))
    with pytest.raises(ValueError, match="concepts"):
        head.fit(x[:, :5], y)
    with pytest.raises(ValueError, match="targets"):
        head.fit(x, y[:, :2])
    with pytest.raises(ValueError, match="concepts"):
        head.fit(np.where(np.eye(20, K) > 0, np.nan, x), y)
    with pytest.raises(ValueError, match="targets"):
        head.fit(x, np.full_like(y, np.inf))
    with pytest.raises(ValueError, match="rows"):
        head.fit(x, y[:10])
    with pytest.raises(ValueError, match="concepts"):
        head.predict(np.ones((3, K + 1)))


@pytest.mark.parametrize("kind", ["linear", "gam"])
def test_joint_training_through_an_upstream_network(kind):
    """Adam on 0.5 * per-target MSE + penalty lowers the loss and moves the upstream weights."""
    torch.manual_seed(3)
    z = torch.randn(256, 10)
    y = torch.stack([torch.sin(z[:, 0] * 2), z[:, 1] ** 2, z[:, 2] - z[:, 3]], 1)
    upstream = torch.nn.Linear(10, K)  # stands in for the CNN that predicts concepts
    head = build_head(kind, K, T)
    first_layer = upstream.weight.detach().clone()
    optimiser = torch.optim.Adam([*upstream.parameters(), *head.parameters()], lr=0.02)

    def loss_fn():
        concepts = 1 + 9 * torch.sigmoid(upstream(z))  # ratings on the 1-10 scale
        return 0.5 * (head(concepts) - y).square().mean(0).sum() + head.penalty(), concepts

    initial = loss_fn()[0].item()
    for _ in range(300):
        optimiser.zero_grad()
        loss, _ = loss_fn()
        loss.backward()
        optimiser.step()
    final, concepts = loss_fn()
    assert final.item() < 0.5 * initial
    assert not torch.allclose(upstream.weight, first_layer)
    with torch.no_grad():
        additive = head.contribution_terms(concepts).sum(-1) + head.intercept
        assert (additive - head(concepts)).abs().max() <= 1e-5


@pytest.mark.parametrize("kind", ["linear", "gam"])
def test_onnx_export_matches_torch(kind, tmp_path):
    params = {"monotone": {0: 1}} if kind == "gam" else {}
    head = fitted(kind, np.random.default_rng(4), **params).eval()
    path = tmp_path / "head.onnx"
    torch.onnx.export(
        head,
        (torch.rand(4, K) * 9 + 1,),
        path,
        dynamo=True,
        input_names=["concepts"],
        output_names=["targets"],
        dynamic_shapes={"concepts": {0: torch.export.Dim("batch")}},
    )
    c = torch.rand(37, K) * 13 - 2  # another batch size, values beyond the range too
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"concepts": c.numpy()})
    with torch.no_grad():
        assert np.abs(out - head(c).numpy()).max() <= 1e-5


# -- SparseLinearHead --------------------------------------------------------------------------
def sparse_problem(rng: np.random.Generator, n: int = 500):
    """Independent concepts, per target a weight vector with graded magnitudes and true zeros."""
    x = rng.uniform(1, 10, (n, K))
    w = np.array([[1.0, -0.5, 0.25, 0.12, 0.06, 0.0, 0.0],
                  [0.0, 0.8, 0.0, -0.3, 0.0, 0.1, 0.03],
                  [-0.2, 0.0, 0.6, 0.0, 0.4, 0.0, -0.05]])
    return x, x @ w.T + np.array([1.0, 5.0, -2.0]) + rng.normal(0, 0.5, (n, T))


def test_linear_fit_matches_elasticnet_per_target():
    x, y = sparse_problem(np.random.default_rng(5))
    head = SparseLinearHead(K, T, alpha=0.05, l1_ratio=0.7).fit(x, y)
    for t in range(T):
        ref = ElasticNet(alpha=0.05, l1_ratio=0.7, max_iter=10_000, tol=1e-6).fit(x, y[:, t])
        assert np.abs(head.coef_[t] - ref.coef_).max() <= 1e-4
        assert abs(head.intercept_[t] - ref.intercept_) <= 1e-4


def test_larger_alpha_uses_fewer_concepts_and_reports_them():
    x, y = sparse_problem(np.random.default_rng(6))
    counts = []
    for alpha in [1e-3, 0.01, 0.1, 0.5, 1.0, 3.0]:
        head = SparseLinearHead(K, T, alpha=alpha, l1_ratio=1.0).fit(x, y)
        used = head.used_concepts()
        for t, target in enumerate(head.target_names):
            nonzero = {head.concept_names[k] for k in np.flatnonzero(head.coef_[t])}
            assert set(used[target]) == nonzero
            for concept in nonzero:
                assert used[target][concept] == head.coef_[t, head.concept_names.index(concept)]
        counts.append(sum(len(v) for v in used.values()))
    assert counts == sorted(counts, reverse=True)
    assert counts[0] >= 15 and counts[-1] <= 5  # the sweep really goes from dense to sparse
    assert head.sparsity_ == pytest.approx(1 - counts[-1] / (K * T))


def test_torch_objective_is_minimal_at_the_fitted_weights():
    """0.5 * per-target MSE + penalty() is the objective ElasticNet minimised (KKT holds)."""
    x, y = sparse_problem(np.random.default_rng(7))
    alpha, l1_ratio = 0.2, 0.6
    head = SparseLinearHead(K, T, alpha=alpha, l1_ratio=l1_ratio, tol=1e-10).fit(x, y).double()
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)

    def objective():
        return 0.5 * (head(xt) - yt).square().mean(0).sum() + head.penalty()

    best = objective()
    best.backward()
    w, grad = head.weight.detach(), head.weight.grad
    zero = w == 0
    assert zero.any() and not zero.all()
    # stationary where the penalty is differentiable (up to the float32 storage of the weights)
    assert grad[~zero].abs().max() <= 1e-5
    assert grad[zero].abs().max() <= alpha * l1_ratio  # subgradient condition at exact zeros
    assert head.bias.grad.abs().max() <= 1e-5

    rng = np.random.default_rng(8)
    with torch.no_grad():
        for _ in range(200):
            step = torch.as_tensor(rng.normal(0, 1e-3, w.shape))
            head.weight.add_(step)
            assert objective() >= best - 1e-12
            head.weight.sub_(step)


# -- GAMHead ------------------------------------------------------------------------------------
def test_basis_matches_scipy_and_clamps_outside_the_range():
    head = GAMHead(2, 1)
    x = np.linspace(1, 10, 91)
    ours = head.basis(torch.as_tensor(np.stack([x, x], 1))).numpy()[:, 1]
    ref = BSpline.design_matrix(x, head.knots.double().numpy(), head.degree).toarray()
    assert np.abs(ours - ref).max() <= 1e-6
    assert np.abs(ours.sum(1) - 1).max() <= 1e-6
    outside = head.basis(torch.tensor([[-5.0, 1.0], [30.0, 10.0]])).numpy()
    assert np.array_equal(outside[:, 0], outside[:, 1])


def test_gam_recovers_an_additive_function_like_pygam(additive_data, additive_gam):
    """R^2 against the noiseless truth on 1000 held-out rows, ours and pygam's LinearGAM."""
    pygam = pytest.importorskip("pygam")
    x, y, x_test, truth = additive_data
    ours = r2(truth, additive_gam.predict(x_test)[:, 0])
    terms = pygam.s(0)
    for j in range(1, K):
        terms += pygam.s(j)
    reference = pygam.LinearGAM(terms).fit(x, y)
    theirs = r2(truth, reference.predict(x_test))
    assert ours >= 0.98
    assert ours >= theirs - 0.02


def test_gam_shape_functions_recover_each_true_curve(additive_data, additive_gam):
    x = additive_data[0]
    grid = np.linspace(1, 10, 60)
    for j, f in enumerate(TRUE_FUNCTIONS[:-1]):
        curve = additive_gam.shape_function(j, grid, target=0)
        assert np.corrcoef(curve, f(grid))[0, 1] > 0.99, f"concept {j}"
    assert np.abs(additive_gam.shape_function(K - 1, grid, target=0)).max() < 0.15
    # centred on the fit data, so the intercept is the mean prediction there
    on_data = additive_gam.contributions(x)[:, 0, :].mean(0)
    assert np.abs(on_data).max() <= 1e-4


def test_monotone_constraint_holds_on_noisy_non_monotone_data():
    rng = np.random.default_rng(9)
    x = rng.uniform(1, 10, (1500, K))
    wavy = 0.2 * x[:, 0] + np.sin(2 * x[:, 0])  # rising on average, not monotone
    y = np.stack([wavy, -wavy], 1) + x[:, 1:2] + rng.normal(0, 0.5, (1500, 2))
    grid = np.linspace(0, 11, 400)
    free = GAMHead(K, 2).fit(x, y).shape_function(0, grid)
    assert (np.diff(free, axis=0) < -0.01).any(axis=0).all()  # the data alone are not monotone
    head = GAMHead(K, 2, concept_names=list("abcdefg"), target_names=["up", "down"],
                   monotone={"a": {"up": 1, 1: -1}}).fit(x, y)
    curves = head.shape_function("a", grid)
    assert np.diff(curves[:, 0]).min() >= -1e-6 and np.ptp(curves[:, 0]) > 1
    assert np.diff(curves[:, 1]).max() <= 1e-6 and np.ptp(curves[:, 1]) > 1


def test_penalty_revives_monotone_increments_pushed_past_their_bound():
    """A clamped increment gets no data gradient; penalty()'s feasibility term pulls it back."""
    torch.manual_seed(10)
    c = 1 + 9 * torch.rand(512, 1)
    y = torch.log(c)  # increasing
    head = GAMHead(1, 1, monotone={0: 1})
    with torch.no_grad():
        head.increments.fill_(-1.0)  # infeasible: the curve is flat and gets no data gradient
    assert head.penalty() > 0
    optimiser = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(300):
        optimiser.zero_grad()
        (0.5 * (head(c) - y).square().mean() + head.penalty()).backward()
        optimiser.step()
    curve = head.shape_function(0, np.linspace(1, 10, 50), target=0)
    assert np.diff(curve).min() >= -1e-6 and np.ptp(curve) > 1.5


def test_gam_targets_are_fitted_independently():
    rng = np.random.default_rng(11)
    x = rng.uniform(1, 10, (800, K))
    y = np.stack([np.sin(x[:, 0]), x[:, 1] ** 0.5, np.cos(x[:, 2]) * 3], 1)
    y += rng.normal(0, [0.1, 1.0, 3.0], y.shape)  # different noise -> different smoothness
    joint = GAMHead(K, T).fit(x, y)
    assert len(set(joint.smoothness_)) > 1
    x_new = rng.uniform(1, 10, (100, K))
    for t in range(T):
        alone = GAMHead(K, 1).fit(x, y[:, t])
        assert np.abs(joint.predict(x_new)[:, t] - alone.predict(x_new)[:, 0]).max() <= 1e-4
