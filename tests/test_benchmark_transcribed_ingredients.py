"""The transcribed-ingredients benchmark recomputes the corpus's note formulas from note rolls."""

import numpy as np
import pandas as pd
import pytest
from script_loader import load_script
from test_controlled_corpus import SAMPLE_PIECES

from midlevel.datasets.controlled import load_piece, realize
from midlevel.datasets.controlled.build import sample_factors
from midlevel.datasets.controlled.ratings import melody_measures, tonal_measures
from midlevel.datasets.controlled.rolls import ROLL_LOW, ROLL_PITCHES, clip_roll, frame_times

HOP, SR, SECONDS = 704, 22050, 10.0


@pytest.fixture(scope="module")
def bench():
    return load_script("studies/transcribed_ingredients.py")


def test_melody_notes_split_at_pitch_changes_and_rests_and_drop_flicker(bench):
    roll = np.zeros((ROLL_PITCHES, 20), dtype=np.uint8)
    for start, stop, pitch in [(0, 3, 36), (3, 6, 38), (6, 7, 50), (7, 10, 40), (12, 15, 40), (15, 17, 52)]:
        roll[pitch, start:stop] = 1
    roll[30, 0:3] = 1  # a lower note under the first one: the highest row is the melody
    # 50 lasts one frame (flicker, dropped); 40 after a rest is a repeated note
    assert bench.melody_notes(roll).tolist() == [36, 38, 40, 40, 52]
    m = bench.melody_measures(roll, seconds=2.0)
    assert m["m_singability"] == pytest.approx(np.mean([1.0, 1.0, 0.6, 0.2]))  # steps 2, 2, unison, octave
    assert m["m_range"] == 52 - 36 and m["m_notes_per_s"] == pytest.approx(5 / 2.0)


def test_a_modulation_lowers_key_consistency_not_clarity(bench):
    frames = 300
    c_major = [60, 64, 67, 72, 62, 65, 69, 71]
    roll = np.zeros((ROLL_PITCHES, frames), dtype=np.uint8)
    for t in range(frames):
        roll[c_major[t % len(c_major)] - ROLL_LOW, t] = 1
    steady = bench.tonal_measures(roll, seconds=SECONDS)
    moved = roll.copy()
    moved[:, frames * 2 // 3:] = np.roll(roll[:, frames * 2 // 3:], 6, axis=0)  # the last third a tritone away
    modulated = bench.tonal_measures(moved, seconds=SECONDS)
    assert steady["m_key_consistency"] > 0.8
    assert modulated["m_key_consistency"] < steady["m_key_consistency"] - 0.3
    assert steady["m_minor_vs_major"] < 0  # C major, not A minor


def test_true_rolls_reproduce_the_corpus_measurements(bench):
    """Peer check: on the rolls of realised clips, the roll formulas track the corpus's own note formulas."""
    times = frame_times(int(SECONDS * SR / HOP) + 1, HOP, SR)
    rolls, recorded = [], []
    for i, piece_id in enumerate(SAMPLE_PIECES[:16]):
        piece = load_piece(piece_id)
        factors = sample_factors(np.random.default_rng([5, i, 1]), piece, SECONDS)
        clip = realize(piece, factors, SECONDS, key=(5, i))
        rolls.append(clip_roll(clip, times))
        recorded.append({f"m_{k}": v for k, v in (melody_measures(clip) | tonal_measures(clip)).items()})
    ours, theirs = bench.roll_measures(np.stack(rolls), SECONDS), pd.DataFrame(recorded)
    for name in ["m_singability", "m_range", "m_key_clarity", "m_key_consistency", "m_minor_vs_major"]:
        assert np.corrcoef(ours[name], theirs[name])[0, 1] > 0.85, name
    assert np.abs(ours["m_key_clarity"] - theirs["m_key_clarity"]).mean() < 0.06  # same scale, not just correlated


def test_transcribed_measurements_that_carry_the_rating_get_the_gain(bench, rng):
    n = 200
    recorded = pd.DataFrame({m: rng.normal(size=n) for m in bench.MEASURES})
    true = recorded + 0.05 * rng.normal(size=(n, len(bench.MEASURES)))
    transcribed = recorded + 0.3 * rng.normal(size=(n, len(bench.MEASURES)))
    hidden = rng.normal(size=n)
    ratings = {"melodiousness": recorded["m_singability"].to_numpy() + hidden,
               "tonal_stability": hidden.copy(), "minorness": recorded["m_minor_vs_major"].to_numpy()}
    pred = {c: hidden + 0.1 * rng.normal(size=n) for c in ratings}  # hears only the part no measurement explains
    out = bench.measure_table(recorded, true, transcribed, pred, ratings, np.repeat(np.arange(n // 4), 4))
    assert out["measures"]["m_singability"]["r_true_roll"] > 0.99 > out["measures"]["m_singability"]["r_transcribed"] > 0.9
    assert out["concepts"]["melodiousness"]["gain"] > 0.15
    assert abs(out["concepts"]["tonal_stability"]["gain"]) < 0.02
    assert out["concepts"]["minorness"]["r_with_transcribed"] > 0.9
