"""The minorness ceiling reads mode from note rolls with transposition-invariant, checkable features."""

import numpy as np
import pytest
from script_loader import load_script

from midlevel.datasets.controlled.rolls import ROLL_LOW, ROLL_PITCHES
from midlevel.datasets.controlled.theory import best_key, pc_profile


@pytest.fixture(scope="module")
def bench():
    return load_script("studies/minorness_ceiling.py")


def roll_of(notes: dict[int, int], frames: int = 8) -> np.ndarray:
    """(1, 2, pitches, frames) roll where MIDI pitch p sounds for notes[p] frames."""
    roll = np.zeros((1, 2, ROLL_PITCHES, frames), dtype=np.uint8)
    for pitch, n in notes.items():
        roll[0, 0, pitch - ROLL_LOW, :n] = 1
    return roll


def test_profiles_fold_octaves_and_weight_by_sounding_frames(bench):
    prof = bench.pitch_class_profiles(roll_of({60: 3, 72: 3, 64: 2}))[0]  # C4, C5 three frames each, E4 two
    assert prof[0] == pytest.approx(0.75) and prof[4] == pytest.approx(0.25) and prof.sum() == pytest.approx(1.0)


def test_invariant_features_ignore_transposition_but_not_the_scale(bench):
    rng = np.random.default_rng(0)
    x = rng.dirichlet(np.ones(12), size=5)
    feats = bench.invariant_features(x)
    for k in (1, 5, 11):
        np.testing.assert_allclose(bench.invariant_features(np.roll(x, k, axis=1)), feats, atol=1e-12)
    major = pc_profile(np.array([0, 2, 4, 5, 7, 9, 11]), np.ones(7))
    harmonic_minor = pc_profile(np.array([0, 2, 3, 5, 7, 8, 11]), np.ones(7))
    assert np.abs(bench.invariant_features(major[None]) - bench.invariant_features(harmonic_minor[None])).max() > 0.01


@pytest.mark.parametrize("pitches, weights", [
    ([60, 64, 67, 62, 65, 69, 71], [4, 3, 3, 1, 1, 1, 1]),  # C major, tonic triad stressed
    ([57, 60, 64, 59, 62, 65, 68], [4, 3, 3, 1, 1, 1, 1]),  # A harmonic minor, tonic triad stressed
    ([62, 65, 69, 64, 67, 70, 73], [4, 3, 3, 1, 1, 1, 1]),  # D harmonic minor
])
def test_kk_rule_agrees_with_the_corpus_key_finder(bench, pitches, weights):
    roll = roll_of(dict(zip(pitches, weights)))
    evidence = bench.kk_minor_evidence(bench.pitch_class_profiles(roll))[0]
    _, mode, _ = best_key(pc_profile(np.array(pitches), np.array(weights, dtype=float)))
    assert (evidence > 0) == (mode == "minor")


def test_classification_scores_a_perfect_and_a_one_class_split(bench):
    label = np.array([0.0, 0.0, 1.0, 1.0])
    perfect = bench.classification(label, np.array([-1.0, -0.5, 0.5, 1.0]), 0.0)
    assert perfect["accuracy"] == 1.0 and perfect["auc"] == 1.0 and perfect["r"] > 0.9
    one_class = bench.classification(np.ones(3), np.array([0.2, 0.4, 0.9]), 0.5)
    assert one_class["accuracy"] == pytest.approx(1 / 3) and one_class["auc"] is None and one_class["r"] is None
