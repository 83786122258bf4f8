"""The syncopation benchmark counts off-beat onsets that leave the next beat empty, on performed times."""

import numpy as np
import pytest
from script_loader import load_script
from test_controlled_corpus import SAMPLE_PIECES

from midlevel.datasets.controlled import load_piece, realize
from midlevel.datasets.controlled.build import sample_factors
from midlevel.datasets.controlled.ratings import rhythm_measures

BEATS = np.arange(8) * 0.5  # 120 beats/min


@pytest.fixture(scope="module")
def bench():
    return load_script("studies/syncopation_from_onsets.py")


def test_only_an_off_beat_onset_that_leaves_the_next_beat_empty_counts(bench):
    assert bench.syncopation_count(BEATS, BEATS) == 0.0  # every onset on a beat
    # an eighth off the beat, each followed by an onset on the next beat: not syncopated
    assert bench.syncopation_count(np.concatenate([BEATS, BEATS[:-1] + 0.25]), BEATS) == 0.0
    # after the last beat the grid goes on at the same period: an eighth there leaves the next beat empty
    assert bench.syncopation_count(np.concatenate([BEATS, BEATS + 0.25]), BEATS) == pytest.approx(1 / len(BEATS))
    # the off-beat onset at 1.25 s ties over the beat at 1.5 s (no onset there); the one at 2.25 s does not
    onsets = np.array([0.0, 0.5, 1.0, 1.25, 2.0, 2.25, 2.5])
    assert bench.syncopation_count(onsets, BEATS) == pytest.approx(1 / len(BEATS))
    # small timing deviations keep an onset on its beat; the count ignores duplicates of one onset
    assert bench.syncopation_count(np.concatenate([BEATS + 0.03, BEATS - 0.004]), BEATS) == 0.0
    assert bench.off_beat_share(onsets, BEATS) == pytest.approx(2 / 7)
    assert bench.syncopation_count(onsets, BEATS[:1]) == 0.0  # no beat period to measure against


def test_the_beat_tracker_finds_a_steady_pulse(bench):
    clicks = np.arange(0, 10, 0.5)
    beats = bench.tracked_beats(clicks, seconds=10.0)
    assert np.median(np.diff(beats)) == pytest.approx(0.5, abs=0.02)
    assert bench.syncopation_count(clicks, beats) == 0.0


def test_performed_beats_follow_the_tempo_and_the_count_tracks_the_corpus_rule(bench):
    """Without rubato or jitter a beat is played at its score position times the clip's tempo; per layer
    against those beats, the count rises with the corpus's own syncopation measure over real realised clips."""
    piece = load_piece(SAMPLE_PIECES[6])  # a jig: off-beat onsets in plenty
    factors = sample_factors(np.random.default_rng([3, 0, 1]), piece, 10.0).replace(rubato=0.0, jitter=0.0)
    clip = realize(piece, factors, 10.0, key=(3, 0))
    beats = bench.performed_beats(clip)
    assert len(beats) == len(clip.beats) and len(beats) > 4
    assert beats == pytest.approx(clip.beats / clip.beat_ql * 60.0 / factors.tempo_bpm, abs=1e-3)
    per_layer, pooled, corpus = [], [], []
    for i, ref in enumerate(SAMPLE_PIECES[:10]):
        piece = load_piece(ref)
        clip = realize(piece, sample_factors(np.random.default_rng([4, i, 1]), piece, 10.0), 10.0, key=(4, i))
        counts = bench.clip_counts(clip)
        per_layer.append(counts["per_layer_true_grid"])
        pooled.append(counts["pooled_true_grid"])
        corpus.append(rhythm_measures(clip)["syncopation"])
    # the parts separated, the count follows the corpus's; pooled, a part's off-beat onset hides behind another's
    assert np.corrcoef(per_layer, corpus)[0, 1] > 0.8
    assert np.corrcoef(pooled, corpus)[0, 1] < np.corrcoef(per_layer, corpus)[0, 1] - 0.3
