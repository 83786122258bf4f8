"""The register ceiling reads absolute pitch content from note rolls: shares, mean and percentiles."""

import numpy as np
import pytest
from script_loader import load_script

from midlevel.datasets.controlled.rolls import ROLL_LOW, ROLL_PITCHES


@pytest.fixture(scope="module")
def bench():
    return load_script("studies/register_ceiling.py")


def roll_of(notes: dict[int, int], melody: dict[int, int] | None = None, frames: int = 10) -> np.ndarray:
    """(1, 2, pitches, frames) roll where MIDI pitch p sounds for notes[p] frames (melody likewise)."""
    roll = np.zeros((1, 2, ROLL_PITCHES, frames), dtype=np.uint8)
    for channel, chosen in enumerate((notes, melody or {})):
        for pitch, n in chosen.items():
            roll[0, channel, pitch - ROLL_LOW, :n] = 1
    return roll


def test_mean_and_percentiles_weight_pitches_by_sounding_frames(bench):
    shares = bench.pitch_shares(roll_of({48: 1, 60: 6, 72: 3}), channel=0)
    assert shares.sum() == pytest.approx(1.0) and shares[0, 60 - ROLL_LOW] == pytest.approx(0.6)
    mean, p10, p50, p90 = bench.pitch_statistics(shares)[0]
    assert mean == pytest.approx(0.1 * 48 + 0.6 * 60 + 0.3 * 72)
    assert (p10, p50, p90) == (48, 60, 72)


@pytest.mark.parametrize("semitones", [-12, -5, 7])
def test_transposing_every_note_moves_each_statistic_by_as_much(bench, semitones):
    notes, melody = {55: 4, 62: 2, 67: 3, 74: 1}, {74: 5, 76: 5}
    moved = roll_of({p + semitones: n for p, n in notes.items()}, {p + semitones: n for p, n in melody.items()})
    base, shifted = bench.pitch_features(roll_of(notes, melody))[0], bench.pitch_features(moved)[0]
    stats = 1 + len(bench.PERCENTILES)
    for start in (0, stats + ROLL_PITCHES):  # all notes, then the top voice
        np.testing.assert_allclose(shifted[start:start + stats], base[start:start + stats] + semitones)


def test_a_silent_channel_gives_missing_statistics_not_zero_pitch(bench):
    feats = bench.pitch_features(roll_of({60: 4}))[0]  # no top voice
    stats = 1 + len(bench.PERCENTILES)
    assert np.isfinite(feats[:stats]).all()
    assert np.isnan(feats[stats + ROLL_PITCHES:2 * stats + ROLL_PITCHES]).all()
    assert feats.shape == (2 * (stats + ROLL_PITCHES),)
