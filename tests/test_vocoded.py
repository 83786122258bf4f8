"""Phase-vocoder variants of a built corpus (datasets.controlled.vocoded): audio moved as labelled."""

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pedalboard")

from midlevel.datasets.controlled import build_corpus  # noqa: E402
from midlevel.datasets.controlled.vocoded import build_vocoded_corpus, draw_variant, render_variant  # noqa: E402
from midlevel.datasets.controlled_labels import outside_ratings  # noqa: E402
from midlevel.training.data import load_splits  # noqa: E402

SR = 22050


def peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * SR / len(x))


def test_a_shift_moves_a_tone_by_its_semitones_and_a_stretch_speeds_a_pulse_by_its_factor():
    t = np.arange(4 * SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    up = render_variant(tone, SR, {"kind": "shift", "semitones": 3, "stretch": 1.0, "formants": False})
    assert len(up) == len(tone)
    assert peak_hz(up[SR:3 * SR]) == pytest.approx(440.0 * 2 ** (3 / 12), rel=0.01)
    back = render_variant(tone, SR, {"kind": "round_trip", "semitones": 3, "stretch": 1.0, "formants": True})
    assert peak_hz(back[SR:3 * SR]) == pytest.approx(440.0, rel=0.01)
    # clicks at 2 per second, played 1.25x as fast: 2.5 per second, the loop continuing the pulse
    clicks = np.zeros(4 * SR, np.float32)
    clicks[:: SR // 2] = 1.0
    fast = render_variant(clicks, SR, {"kind": "stretch", "semitones": 0, "stretch": 1.25, "formants": True})
    env = np.abs(fast[: int(3.2 * SR)]).reshape(-1, 441).max(axis=1)  # 20 ms frames over the stretched part
    ac = np.correlate(env - env.mean(), env - env.mean(), "full")[len(env) - 1:]
    lag = np.argmax(ac[10:]) + 10  # frames between clicks
    assert lag * 0.02 == pytest.approx(0.4, abs=0.02)


def test_draws_keep_the_moved_labels_inside_the_corpus_ranges():
    rng = np.random.default_rng(0)
    for _ in range(300):
        transpose, bpm = int(rng.integers(-12, 13)), float(np.exp(rng.uniform(np.log(50), np.log(170))))
        v = draw_variant(rng, transpose, bpm, max_semitones=4, max_stretch=1.4)
        assert -12 <= transpose + (v["semitones"] if v["kind"] == "shift" else 0) <= 12
        assert 50 - 1e-6 <= bpm * v["stretch"] <= 170 + 1e-6 and 1 / 1.4 - 1e-9 <= v["stretch"] <= 1.4 + 1e-9


def test_a_vocoded_corpus_adds_training_variants_with_their_labels_moved(tmp_path):
    src = tmp_path / "src"
    build_corpus(src, 5, seconds=3.0, seed=5, progress=False)
    out = tmp_path / "pv"
    summary = build_vocoded_corpus(src, out, seed=1, share=1.0, progress=False)
    first = summary["vocoder"]["first_song_id"]
    factors = pd.read_csv(out / "factors.csv", index_col="song_id")
    source_factors = pd.read_csv(src / "factors.csv", index_col="song_id")
    n_train = int((source_factors["split"] == "train").sum())
    assert n_train >= 1 and len(factors) == 5 + n_train == summary["n"]
    ratings = pd.read_csv(out / "metadata_annotations" / "annotations.csv", index_col="song_id")
    emotions = pd.read_csv(out / "mean_ratings_set1.csv", index_col="number")
    conditions = pd.read_csv(out / "conditions.csv", index_col="song_id")
    outside = pd.DataFrame(outside_ratings(factors), index=factors.index, columns=["loudness", "tempo", "register"])
    for sid in factors.index[factors.index >= first]:
        rec = json.loads((out / "records" / f"{sid}.json").read_text())
        src_id, kind = rec["source_song_id"], conditions.loc[sid, "vocoder"]
        assert factors.loc[sid, "split"] == "train" and factors.loc[sid, "piece_id"] == factors.loc[src_id, "piece_id"]
        moved = outside.loc[sid] - outside.loc[src_id]
        if kind == "shift":
            assert moved["register"] == pytest.approx(9 / 24 * conditions.loc[sid, "vocoder_semitones"])
        elif kind == "stretch":
            assert moved["tempo"] == pytest.approx(9 * np.log(conditions.loc[sid, "vocoder_stretch"]) / np.log(170 / 50), abs=2e-3)
        else:
            assert np.allclose(moved, 0) and (emotions.loc[sid] == emotions.loc[src_id]).all()
        assert moved["loudness"] == 0
        same = [f for f in ratings.columns if f != "melodiousness"]
        assert (ratings.loc[sid, same] == ratings.loc[src_id, same]).all()
    splits = load_splits(out, concepts=["melodiousness", "register", "tempo"])
    assert all(int(i) < first for name in ("val", "test") for i in splits[name].ids)
    assert len(splits["train"].ids) == 2 * n_train
