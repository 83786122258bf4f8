"""Classification heads: exact additivity in logit space, agreement with scikit-learn, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from midlevel import ModelConfig, TwoStageModel
from midlevel.heads import GAMClassifierHead, SparseLogisticHead, build_head
from midlevel.heads.logistic import sklearn_penalty_kwargs

K = 5
KINDS = ["logistic", "gam_logistic"]


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def sample(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    """One class per row drawn from softmax(logits)."""
    u = rng.uniform(size=(len(logits), 1))
    return (u > np.cumsum(softmax(logits), axis=1)).sum(axis=1).clip(max=logits.shape[1] - 1)


def linear_problem(rng: np.random.Generator, n_classes: int, n: int = 400):
    """Concepts on the 1-10 scale, class logits linear in them; the last concept is useless."""
    x = rng.uniform(1, 10, (n, K))
    w = np.array([[1.0, -0.5, 0.0, 0.3, 0.0], [0.0, 0.6, -0.4, 0.0, 0.0], [-0.6, 0.0, 0.5, -0.3, 0.0]])
    logits = (x - 5.5) @ w[:n_classes].T
    if n_classes == 2:
        logits[:, 0] = 0.0
    return x, sample(rng, logits)


def u_shape(v: np.ndarray) -> np.ndarray:
    return ((v - 5.5) / 2.25) ** 2 - 1.2


def u_problem(rng: np.random.Generator, n: int):
    """Binary labels whose log-odds are U-shaped in concept 0 and linear in concept 1."""
    x = rng.uniform(1, 10, (n, K))
    log_odds = 1.5 * u_shape(x[:, 0]) + 0.4 * (x[:, 1] - 5.5)
    return x, (rng.uniform(size=n) < 1 / (1 + np.exp(-log_odds))).astype(int)


def sklearn_reference(x, y, *, C, penalty, l1_ratio=0.5, class_weight=None, tol=1e-10):
    return LogisticRegression(**sklearn_penalty_kwargs(penalty, C, l1_ratio), class_weight=class_weight,
                              tol=tol, max_iter=10_000, random_state=0).fit(x, y)


# -- (a) the additive contract ------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("trained", [False, True])
def test_contributions_add_up_to_the_logits(kind, n_classes, trained):
    rng = np.random.default_rng(1)
    torch.manual_seed(1)
    head = build_head(kind, K, n_classes)
    if trained:
        head.fit(*linear_problem(rng, n_classes))
    c = rng.uniform(-2, 13, (64, K))  # also outside the 1-10 range
    logits = head.decision_function(c)
    assert logits.shape == (64, n_classes) and np.array_equal(head.predict(c), logits)
    terms = head.contributions(c)
    assert terms.shape == (64, n_classes, K)
    assert np.abs(terms.sum(-1) + head.intercept_ - logits).max() <= 1e-6
    ct = torch.as_tensor(c, dtype=torch.float32)
    with torch.no_grad():
        tensor_sum = head.contribution_terms(ct).sum(-1) + head.intercept
        assert (tensor_sum - head(ct)).abs().max() <= 1e-6
    np.testing.assert_allclose(head.predict_proba(c), softmax(logits.astype(np.float64)), atol=1e-12)
    assert np.array_equal(head.predict_class(c), logits.argmax(1))
    if n_classes == 2:  # class 0 is the reference: its logit is exactly 0
        assert not terms[:, 0].any() and head.intercept_[0] == 0


# -- (b) SparseLogisticHead is scikit-learn's LogisticRegression -------------------------------
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("penalty", ["l2", "elasticnet"])
def test_logistic_fit_is_sklearns(n_classes, penalty):
    x, y = linear_problem(np.random.default_rng(2), n_classes)
    ref = sklearn_reference(x, y, C=0.5, penalty=penalty, l1_ratio=0.6)
    head = SparseLogisticHead(K, n_classes, C=0.5, penalty=penalty, l1_ratio=0.6, tol=1e-10).double().fit(x, y)
    coef = head.coef_[1:] if n_classes == 2 else head.coef_  # binary: logits [0, z]
    intercept = head.intercept_[1:] if n_classes == 2 else head.intercept_
    assert np.abs(coef - ref.coef_).max() <= 1e-9
    assert np.abs(intercept - ref.intercept_).max() <= 1e-9
    x_new = np.random.default_rng(3).uniform(1, 10, (200, K))
    assert np.abs(head.predict_proba(x_new) - ref.predict_proba(x_new)).max() <= 1e-9
    assert np.array_equal(head.predict_class(x_new), ref.predict(x_new))
    if n_classes == 2:
        assert np.abs(head.decision_function(x_new)[:, 1] - ref.decision_function(x_new)).max() <= 1e-9
    # the default float32 head: the same up to float32 storage of the weights
    single = SparseLogisticHead(K, n_classes, C=0.5, penalty=penalty, l1_ratio=0.6, tol=1e-10).fit(x, y)
    assert np.abs(single.predict_proba(x_new) - ref.predict_proba(x_new)).max() <= 1e-5


def test_logistic_class_weight_is_sklearns():
    x, y = linear_problem(np.random.default_rng(4), 3)
    keep = (y != 1) | (np.arange(len(y)) % 4 == 0)  # make class 1 rare
    x, y = x[keep], y[keep]
    for spec, ref_spec in [("balanced", "balanced"), ({"class_1": 3.0, 0: 0.5}, {0: 0.5, 1: 3.0, 2: 1.0})]:
        ref = sklearn_reference(x, y, C=0.5, penalty="l2", class_weight=ref_spec)
        head = SparseLogisticHead(K, 3, C=0.5, penalty="l2", class_weight=spec, tol=1e-10).double().fit(x, y)
        assert np.abs(head.coef_ - ref.coef_).max() <= 1e-9


# -- (c) joint training continues the same problem ---------------------------------------------
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_torch_objective_is_stationary_at_the_fitted_weights(n_classes, class_weight):
    """``head.loss + head.penalty()`` is scikit-learn's objective / (C * N): zero gradient at its fit."""
    x, y = linear_problem(np.random.default_rng(5), n_classes)
    head = SparseLogisticHead(K, n_classes, C=0.3, penalty="l2", class_weight=class_weight, tol=1e-12)
    head = head.double().fit(x, y)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)

    def gradient(penalty_factor: float) -> float:
        head.zero_grad()
        (head.loss(head(xt), yt) + penalty_factor * head.penalty()).backward()
        return max(head.weight.grad.abs().max().item(), head.bias.grad.abs().max().item())

    assert gradient(1.0) <= 1e-5
    assert gradient(2.0) >= 1e-3  # the check has power: another scaling of the penalty is not stationary


@pytest.mark.parametrize("n_classes", [2, 3])
def test_gam_classifier_objective_is_stationary_at_its_fit(n_classes):
    x, y = linear_problem(np.random.default_rng(6), n_classes, n=600)
    head = GAMClassifierHead(K, n_classes, smoothness=1e-2).double().fit(x, y)
    head.zero_grad()
    (head.loss(head(torch.as_tensor(x)), torch.as_tensor(y)) + head.penalty()).backward()
    assert head.increments.grad.abs().max() <= 1e-6 and head.bias.grad.abs().max() <= 1e-6


# -- (d) sparsity ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n_classes", [2, 3])
def test_strong_l1_drops_a_useless_concept_for_every_class(n_classes):
    x, y = linear_problem(np.random.default_rng(7), n_classes, n=600)
    head = SparseLogisticHead(K, n_classes, C=0.005, penalty="l1").fit(x, y)
    assert np.all(head.coef_[:, K - 1] == 0)
    assert np.any(head.coef_ != 0)
    used = head.used_concepts()
    assert all(head.concept_names[K - 1] not in terms for terms in used.values())
    for c, name in enumerate(head.target_names):
        assert set(used[name]) == {head.concept_names[k] for k in np.flatnonzero(head.coef_[c])}


# -- (e) the GAM classifier ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def u_data():
    rng = np.random.default_rng(8)
    return u_problem(rng, 2000), u_problem(rng, 2000)


def test_gam_classifier_recovers_a_u_shaped_log_odds_and_beats_the_linear_head(u_data):
    (x, y), (x_test, y_test) = u_data
    gam = GAMClassifierHead(K, 2).fit(x, y)
    grid = np.linspace(1, 10, 60)
    assert np.corrcoef(gam.shape_function(0, grid, target=1), u_shape(grid))[0, 1] > 0.9
    assert np.corrcoef(gam.shape_function(1, grid, target=1), grid)[0, 1] > 0.9
    linear = SparseLogisticHead(K, 2, penalty="l2").fit(x, y)
    ours, theirs = log_loss(y_test, gam.predict_proba(x_test)), log_loss(y_test, linear.predict_proba(x_test))
    assert ours < theirs - 0.05


def test_gam_classifier_monotone_log_odds(u_data):
    (x, y), _ = u_data
    grid = np.linspace(0, 11, 200)
    falling = GAMClassifierHead(K, 2, concept_names=list("abcde"), target_names=["normal", "murmur"],
                                monotone={"a": {"normal": 1}}).fit(x, y)  # normal rising = murmur falling
    assert falling.monotone == {"a": {"murmur": -1}}
    curve = falling.shape_function("a", grid, target="murmur")
    assert np.diff(curve).max() <= 1e-5 and np.ptp(curve) > 0.5  # float32 rounding of values ~3
    assert not falling.contributions(x)[:, 0].any()
    with pytest.raises(ValueError, match="contradict"):
        GAMClassifierHead(K, 2, monotone={0: {0: 1, 1: 1}})


def test_gam_classifier_three_classes_sum_to_zero_per_concept(u_data):
    rng = np.random.default_rng(9)
    x = rng.uniform(1, 10, (1500, K))
    y = sample(rng, np.stack([np.zeros(1500), 1.5 * u_shape(x[:, 0]), 0.5 * (x[:, 1] - 5.5)], 1))
    head = GAMClassifierHead(K, 3, smoothness=1e-2).fit(x, y)
    grid = np.linspace(1, 10, 60)
    curves = head.shape_function(0, grid)  # (60, 3)
    assert np.corrcoef(curves[:, 1] - curves[:, 0], u_shape(grid))[0, 1] > 0.9
    assert np.abs(curves.sum(1)).max() <= 1e-5 and abs(head.intercept_.sum()) <= 1e-5


# -- (f) persistence ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_classes", [2, 3])
def test_head_params_survive_json(kind, n_classes):
    x, y = linear_problem(np.random.default_rng(10), n_classes)
    names = [f"c{i}" for i in range(n_classes)]
    params = {"target_names": names, "class_weight": {names[1]: 2.0}}
    if kind == "gam_logistic":
        params["monotone"] = {1: {names[-1]: 1}}
    head = build_head(kind, K, n_classes, **params).fit(x, y)
    rebuilt = build_head(kind, K, n_classes, **json.loads(json.dumps(head.init_params())))
    rebuilt.load_state_dict(head.state_dict())
    c = torch.as_tensor(np.random.default_rng(11).uniform(0, 11, (32, K)), dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(rebuilt(c), head(c))
        assert torch.equal(rebuilt.penalty(), head.penalty())
    assert rebuilt.init_params() == head.init_params()


@pytest.mark.parametrize("kind", KINDS)
def test_two_stage_model_with_a_classification_head_round_trips(kind, tmp_path):
    torch.manual_seed(0)
    classes = ["normal", "murmur", "artifact"]
    config = ModelConfig(head=kind, task="classification", target_names=classes, name=f"test-{kind}",
                         head_params={"class_weight": "balanced"})
    model = TwoStageModel(config).eval()
    rng = np.random.default_rng(12)
    x = rng.uniform(1, 10, (400, len(config.concept_names)))
    model.head.fit(x, sample(rng, 0.5 * (x[:, :3] - 5.5)))
    model.save_pretrained(tmp_path / "m")
    loaded = TwoStageModel.from_pretrained(tmp_path / "m")
    assert type(loaded.head) is type(model.head) and loaded.config.to_dict() == model.config.to_dict()
    wave = torch.from_numpy((np.random.default_rng(13).standard_normal((2, 22050 * 2)) * 0.1).astype(np.float32))
    with torch.no_grad():
        for a, b in zip(model(wave), loaded(wave)):
            assert torch.equal(a, b)
        assert torch.equal(loaded.head.penalty(), model.head.penalty())
    assert torch.equal(loaded.head.class_weights, model.head.class_weights)
    _, logits, terms = loaded(wave)
    assert logits.shape == (2, 3) and terms.shape == (2, 3, model.head.n_concepts)


# -- (g) bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_bad_labels_and_concepts_get_one_clear_error_each(kind):
    x, y = linear_problem(np.random.default_rng(14), 3)
    head = build_head(kind, K, 3)
    cases = [
        (y + 1, r"class indices 0\.\.2; got \[3\]"),
        (y - 1, r"class indices 0\.\.2; got \[-1\]"),
        (y.astype(float), "integer class indices"),
        (np.zeros_like(y), "single class"),
        (np.where(y == 2, 0, y), r"never contain class\(es\) \[2\]"),
        (np.eye(3, dtype=int)[y], "1-d array"),
        (y[:-5], "rows"),
    ]
    for labels, message in cases:
        with pytest.raises(ValueError, match=message):
            head.fit(x, labels)
    with pytest.raises(ValueError, match="concepts contains NaN"):
        head.fit(np.where(np.eye(len(x), K) > 0, np.nan, x), y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        build_head(kind, K, 1)
    with pytest.raises(ValueError, match="class_weight"):
        build_head(kind, K, 3, class_weight={"nope": 1.0})


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="penalty"):
        SparseLogisticHead(K, 3, penalty="l3")
    with pytest.raises(ValueError, match="C must be"):
        SparseLogisticHead(K, 3, C=0)
    with pytest.raises(ValueError, match="smoothness"):
        GAMClassifierHead(K, 3, smoothness="auto")
