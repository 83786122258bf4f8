"""Post-hoc SHAP baselines, checked against shap's own explainers and exact values."""

import argparse
import json

import numpy as np
import pytest
import shap
import soundfile as sf
import torch

from conftest import sine
from midlevel.config import ConfigError, ModelConfig
from midlevel.datasets import DatasetError
from midlevel.explain.mlp_head import MLPHead
from midlevel.explain.shap_baseline import explain_segments, gradient_based_method, segment_hierarchy
from midlevel.explain.shap_concepts import concept_shap, exact_head_shap, head_function, linear_head_shap
from midlevel.explain.shap_measures import (concept_value, cosine_similarity, deletion_auc, perturb,
                                            read_generating_coefficients, truth_agreement)
from midlevel.explain.shap_segments import TimeFrequencySegments
from midlevel.explain import shap_baseline, shap_side_by_side
from midlevel.cli import add_baseline_arguments, explain_from_args
from midlevel.explain.shap_side_by_side import explain_with_baseline, format_side_by_side
from midlevel.heads import GAMHead, SparseLinearHead
from midlevel.model import BlackBoxModel, TwoStageModel

SHORT = {"window_seconds": 2.0, "hop_seconds": 1.0}  # small spectrograms keep SHAP runs fast
CONCEPTS = [f"c{k}" for k in range(7)]
TARGETS = [f"t{t}" for t in range(3)]
EXACT_METHODS = ("permutation", "partition", "deep")  # additive by construction; "gradient" in expectation


@pytest.fixture(scope="module")
def concept_data():
    rng = np.random.default_rng(0)
    c = rng.uniform(1, 10, size=(240, 7))
    y = np.stack([0.5 * c[:, 0] - 0.3 * c[:, 1], np.sin(c[:, 2]) + 0.1 * c[:, 3] ** 2,
                  np.tanh(c[:, 4] - 5) * c[:, 5] / 5], axis=1) + rng.normal(0, 0.1, (240, 3))
    return c, y


@pytest.fixture(scope="module")
def black_box():
    torch.manual_seed(0)
    model = BlackBoxModel(ModelConfig(kind="black_box", **SHORT)).eval()
    with torch.no_grad():  # spread the outputs of an untrained model so differences are visible
        model.target_layer.weight.mul_(50)
    return model


@pytest.fixture(scope="module")
def clip():
    """3.3 s: two windows plus an end-aligned third, with sound that changes over time and pitch."""
    return np.concatenate([sine(220, 1.1), sine(1760, 1.1), sine(440, 1.1, amp=0.1)])


# -- exactness on concepts ---------------------------------------------------------------------
def test_linear_explainer_with_full_background_equals_centred_contributions(concept_data):
    c, y = concept_data
    head = SparseLinearHead(7, 3, alpha=0.01).fit(c, y)
    exact = exact_head_shap(head, c[:50], c)
    via_shap = linear_head_shap(head, c[:50], c)
    assert np.abs(via_shap - exact).max() <= 1e-6
    # shap's default for a raw background keeps 100 rows: the mean, and the values, drift
    default = shap.LinearExplainer((head.coef_.astype(float), head.intercept_.astype(float)), c)(c[:50])
    assert np.abs(default.values.transpose(0, 2, 1) - exact).max() > 1e-3


def test_permutation_shap_of_a_gam_head_equals_centred_shape_functions(concept_data):
    c, y = concept_data
    head = GAMHead(7, 3).fit(c, y)
    clips, background = c[:20], c[::2]
    exact = exact_head_shap(head, clips, background)
    by_shape = np.stack([head.shape_function(k, clips[:, k]) - head.shape_function(k, background[:, k]).mean(0)
                         for k in range(7)], axis=-1)
    assert np.abs(by_shape - exact).max() <= 1e-5  # shape_function runs in float32
    result = concept_shap(head_function(head), clips, background, concept_names=CONCEPTS,
                          target_names=TARGETS, max_evals=15, progress=False)
    assert np.abs(result.values - exact).max() <= 1e-6
    assert result.additivity_error() <= 1e-9


def test_mlp_head_learns_interactions_and_needs_shap_to_be_read(concept_data):
    c, y = concept_data
    mlp = MLPHead(CONCEPTS, TARGETS).fit(c[:200], y[:200])
    r = [np.corrcoef(mlp.predict(c[200:])[:, t], y[200:, t])[0, 1] for t in range(3)]
    assert min(r) > 0.8
    result = concept_shap(mlp.predict, c[200:205], c[:200], concept_names=CONCEPTS, target_names=TARGETS,
                          progress=False)
    assert result.values.shape == (5, 3, 7)
    assert result.additivity_error() <= 1e-9
    assert np.allclose(result.expected_value, mlp.predict(c[:200]).mean(0))
    assert np.abs(result.values[:, 2, 4]).mean() > np.abs(result.values[:, 2, 0]).mean()  # t2 uses c4, not c0


# -- input segments ----------------------------------------------------------------------------
def test_segments_tile_the_track_and_reproduce_the_model_output(black_box, clip):
    seg = TimeFrequencySegments.from_audio(black_box, clip, n_time=4, n_freq=3, sample_rate=22050)
    assert seg.spectrograms.shape[0] == 3 and len(seg.names) == 12
    assert set(seg.segment_of.unique().tolist()) == set(range(12))
    everything, nothing = seg.value(black_box, np.array([np.ones(12), np.zeros(12)]))
    assert np.abs(everything - black_box.predict_targets(clip, sample_rate=22050)).max() <= 1e-5
    with torch.no_grad():
        baseline_output = black_box.outputs_from_spectrogram(seg.baseline[:1])[0].double().numpy()
    assert np.abs(nothing - baseline_output).max() <= 1e-5
    assert np.allclose(seg.pool(np.ones((3, *seg.segment_of.shape[1:], 1))).sum(), seg.segment_of[0].numel())


def test_permutation_shap_of_two_segments_is_the_exact_shapley_value(black_box, clip):
    result = explain_segments(black_box, clip, method="permutation", n_time=2, n_freq=1, max_evals=10,
                              progress=False, sample_rate=22050)
    seg = TimeFrequencySegments.from_audio(black_box, clip, n_time=2, n_freq=1, sample_rate=22050)
    v = {(a, b): seg.value(black_box, np.array([[a, b]]))[0] for a in (0, 1) for b in (0, 1)}
    shapley = [(v[1, 0] - v[0, 0] + v[1, 1] - v[0, 1]) / 2, (v[0, 1] - v[0, 0] + v[1, 1] - v[1, 0]) / 2]
    # an antithetic pair covers both orders; float32 outputs vary ~1e-7 with batch composition
    assert np.abs(result.values - np.stack(shapley, axis=1)).max() <= 1e-6


@pytest.mark.parametrize("method", EXACT_METHODS)
def test_every_segment_method_is_additive_around_the_same_baseline(black_box, clip, method):
    result = explain_segments(black_box, clip, method=method, n_time=4, n_freq=3, max_evals=40,
                              progress=False, sample_rate=22050)
    seg = TimeFrequencySegments.from_audio(black_box, clip, n_time=4, n_freq=3, sample_rate=22050)
    assert result.values.shape == (8, 12)
    assert np.abs(result.expected_value - seg.value(black_box, np.zeros((1, 12)))[0]).max() <= 1e-5
    assert np.abs(result.output - black_box.predict_targets(clip, sample_rate=22050)).max() <= 1e-5
    assert result.additivity_error() <= 1e-4
    assert np.abs(result.output - result.expected_value).max() > 1e-2  # not trivially additive
    assert result.n_evaluations > 0 and result.seconds > 0
    assert len(result.top(2)) == 16 and json.dumps(result.to_dict())


def test_gradient_shap_is_additive_in_expectation_and_serves_backbones_deepshap_cannot_read(black_box, clip):
    errors = []
    for n in (4, 64):
        result = explain_segments(black_box, clip, method="gradient", n_time=4, n_freq=3, progress=False,
                                  sample_rate=22050, gradient_samples=n, seed=1)
        errors.append(result.additivity_error() / np.abs(result.output - result.expected_value).max())
        assert result.n_evaluations == 3 * 8 * n  # windows x targets x samples
    assert errors[1] <= 0.15 and errors[1] < errors[0], errors  # sampling error shrinks with the samples
    torch.manual_seed(0)
    music = BlackBoxModel(ModelConfig(kind="black_box", backbone="compact_music", **SHORT)).eval()
    assert gradient_based_method(music) == "gradient" and gradient_based_method(black_box) == "deep"
    with pytest.raises(ValueError, match="PitchClassFeatures.*method='gradient'"):
        explain_segments(music, clip, method="deep", progress=False, sample_rate=22050)
    result = explain_segments(music, clip, method="gradient", n_time=4, n_freq=3, progress=False,
                              sample_rate=22050, gradient_samples=8)
    assert np.isfinite(result.values).all() and np.abs(result.values).sum() > 0


def test_segment_hierarchy_merges_every_segment_once():
    tree = segment_hierarchy(4, 3)
    assert tree.shape == (11, 4) and tree[-1, 3] == 12


# -- side by side and CLI arguments ------------------------------------------------------------
def test_side_by_side_prints_both_explanations_and_loads_the_baseline_by_folder(black_box, clip, tmp_path):
    torch.manual_seed(1)
    two_stage = TwoStageModel(ModelConfig(**SHORT, name="two-stage")).eval()
    black_box.save_pretrained(tmp_path / "a2e")
    sf.write(tmp_path / "clip.wav", clip, 22050)
    parser = argparse.ArgumentParser()
    add_baseline_arguments(parser)
    args = parser.parse_args(["--baseline", "shap", "--baseline-model", str(tmp_path / "a2e"),
                              "--shap-segments", "3x2", "--shap-max-evals", "20"])
    side = explain_from_args(two_stage, tmp_path / "clip.wav", args)
    assert side.shap.values.shape == (8, 6) and side.time_ratio > 1
    text = format_side_by_side(side, top=2)
    assert all(name in text for name in two_stage.config.target_names) and "permutation SHAP" in text
    json.dumps(side.to_dict())
    side.plot(tmp_path / "side.png")
    assert (tmp_path / "side.png").stat().st_size > 1000
    assert shap_side_by_side.METHODS == shap_baseline.METHODS  # the CLI's choices, kept free of the shap import
    with pytest.raises(ConfigError, match="--baseline-model"):
        explain_with_baseline(two_stage, clip)
    with pytest.raises(ConfigError, match="black box"):
        explain_with_baseline(black_box, clip, black_box)
    with pytest.raises(ConfigError, match="8x4"):
        explain_from_args(two_stage, clip, parser.parse_args(["--baseline", "shap", "--shap-segments", "8"]))


# -- benchmark measures ------------------------------------------------------------------------
def test_deletion_order_of_an_exact_explanation_beats_every_random_order(concept_data):
    c, y = concept_data
    head = SparseLinearHead(7, 3, alpha=0.01).fit(c, y)
    exact = exact_head_shap(head, c[:1], c)[0]
    value = concept_value(head_function(head), c[0], c)
    everything, nothing = value(np.array([np.ones(7), np.zeros(7)]))
    assert np.allclose(everything - nothing, exact.sum(-1))  # the value function SHAP explains
    ranked, random = deletion_auc(value, exact, n_random=50)
    assert ranked.shape == random.shape == (3,)
    assert np.all(ranked >= random) and np.all(ranked - random > 1e-3)
    single_random, _ = deletion_auc(value, np.random.default_rng(1).normal(size=(3, 7)), n_random=1)
    assert np.all(ranked >= single_random - 1e-12)  # optimal, not just better on average
    worst, _ = deletion_auc(value, -exact, n_random=1)
    assert np.all(worst <= random)


def test_perturbations_are_the_documented_small_changes():
    x = sine(440, 1.0)
    noisy = perturb(x, 22050, "noise_30db")
    assert len(noisy) == len(x)
    assert 10 * np.log10(np.mean(x ** 2) / np.mean((noisy - x) ** 2)) == pytest.approx(30, abs=0.2)
    assert np.allclose(perturb(x, 22050, "gain_3db"), x * 10 ** (3 / 20))
    shifted, delay = perturb(x, 22050, "shift_50ms"), round(0.05 * 22050)
    assert len(shifted) == len(x) and np.all(shifted[:delay] == 0) and np.allclose(shifted[delay:], x[:-delay])
    assert cosine_similarity(np.ones((2, 3)), 2 * np.ones((2, 3))) == pytest.approx(1.0)
    assert cosine_similarity(np.zeros(3), np.zeros(3)) == 1.0


def test_ground_truth_reader_accepts_either_orientation_and_names_bad_files(tmp_path):
    coef = np.arange(21, dtype=float).reshape(7, 3) - 10
    by_concept = {"W": {c: dict(zip(TARGETS, map(float, coef[k]))) for k, c in enumerate(CONCEPTS)}}
    (tmp_path / "ground_truth.json").write_text(json.dumps(by_concept))
    assert np.array_equal(read_generating_coefficients(tmp_path, CONCEPTS, TARGETS), coef)
    by_target = {"weights": {t: dict(zip(CONCEPTS, map(float, coef[:, i]))) for i, t in enumerate(TARGETS)}}
    (tmp_path / "gt2.json").write_text(json.dumps(by_target))
    assert np.array_equal(read_generating_coefficients(tmp_path / "gt2.json", CONCEPTS, TARGETS), coef)
    (tmp_path / "bad.json").write_text(json.dumps({"intercept": 5}))
    with pytest.raises(DatasetError, match="no generating coefficients"):
        read_generating_coefficients(tmp_path / "bad.json", CONCEPTS, TARGETS)
    assert np.allclose(truth_agreement(np.abs(coef).T, coef), 1.0)
    flat = np.abs(coef).T.copy()
    flat[1] = 1.0  # an explanation that ranks nothing for one target
    assert np.isnan(truth_agreement(flat, coef)[1])


def test_segment_panel_title_states_the_sum_only_when_it_holds():
    """Expected gradients add up only in expectation: the plot must not print a false equation."""
    import matplotlib.pyplot as plt

    from midlevel.explain.shap_baseline import SegmentShap
    from midlevel.explain.shap_plot import _segment_panel

    names = [f"t{i} f{j}" for i in range(2) for j in range(2)]
    titles = []
    for output in (1.0, 1.5):  # expected 0.2 + sum 0.8 = 1.0: holds, then misses by 0.5
        s = SegmentShap(source="clip", model_name="bb", method="gradient", segment_names=names, target_names=["valence"],
                        values=np.full((1, 4), 0.2), expected_value=np.array([0.2]), output=np.array([output]),
                        n_time=2, n_freq=2, seconds=1.0, n_evaluations=4)
        fig, ax = plt.subplots()
        _segment_panel(ax, s, "valence")
        titles.append(ax.get_title())
        plt.close(fig)
    assert "1.00 = 0.20 + sum" in titles[0]
    assert "1.50, but 0.20 + sum = 1.00" in titles[1] and "=" not in titles[1].split(",")[0]


def test_ground_truth_reader_finds_the_outside_concepts_weights(tmp_path):
    """Ten-concept models (loudness, tempo, register named as concepts) are scored against their factors' B,
    as the cards' sign check reads them."""
    from midlevel.concepts import EMOTIONS, MIDLEVEL_FEATURES, OUTSIDE_CONCEPTS
    from midlevel.datasets.controlled.emotions import ground_truth
    from midlevel.zoo.explain_head import true_weight

    truth = ground_truth()
    (tmp_path / "ground_truth.json").write_text(json.dumps(truth))
    names = list(MIDLEVEL_FEATURES) + list(OUTSIDE_CONCEPTS)
    coef = read_generating_coefficients(tmp_path, names, list(EMOTIONS))
    assert coef.shape == (10, 8)
    assert np.array_equal(coef, [[true_weight(truth, c, t) for t in EMOTIONS] for c in names])
    assert np.abs(coef[7:]).max() > 0  # not zeros filled in
    with pytest.raises(DatasetError, match="expected the concepts"):
        read_generating_coefficients(tmp_path, [*names, "brightness"], list(EMOTIONS))
