"""The controlled phonocardiogram corpus: read by the real PhysioNet 2016 loader, its labels checked against
the audio by measurements that know nothing of the simulator (heart rate from an envelope's
autocorrelation, sound positions from its peaks, murmur energy), its label rules, determinism and resume."""

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("scipy")
pytest.importorskip("tqdm")

from midlevel.audio import load_audio  # noqa: E402
from midlevel.cli import main  # noqa: E402
from midlevel.datasets import load_physionet2016  # noqa: E402
from midlevel.datasets.heart_sounds import build_pcg_corpus  # noqa: E402
from midlevel.datasets.heart_sounds.build import CONCEPTS, LABEL_NOISE, draw_record, header_text  # noqa: E402
from midlevel.datasets.heart_sounds.conditions import talk_source  # noqa: E402
from midlevel.datasets.heart_sounds.physiology import (ABNORMAL_RULES, SAMPLE_RATE, abnormal_rules,  # noqa: E402
                                                      lvet_s, murmur_grade)

SR = SAMPLE_RATE
SECONDS = 15.0


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("pcg") / "clean"
    build_pcg_corpus(out, 24, seed=5, noise="clean", seconds=SECONDS, progress=False)
    return out, pd.read_csv(out / "concepts.csv")


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    out = tmp_path_factory.mktemp("pcg") / "noisy"
    build_pcg_corpus(out, 24, seed=5, seconds=SECONDS, progress=False)
    return out, pd.read_csv(out / "concepts.csv")


def audio(out, row) -> np.ndarray:
    return load_audio(str(out / f"training-{row['database']}" / f"{row['name']}.wav"), SR).samples.astype(np.float64)


def envelope(x: np.ndarray, smooth_s: float = 0.02) -> np.ndarray:
    """Shannon energy (Liang et al. 1997) of the peak-normalised signal, smoothed over ``smooth_s``."""
    x = x / max(np.abs(x).max(), 1e-12)
    energy = -(x ** 2) * np.log(x ** 2 + 1e-12)
    k = int(smooth_s * SR)
    return np.convolve(energy, np.ones(k) / k, mode="same")


def heart_rate_from_audio(x: np.ndarray) -> float:
    """60 over the beat period read from the autocorrelation of a 50 ms Shannon envelope (at 100 Hz): the
    strongest peak at 35-170 bpm, then the centroid of that peak above 30% of its top (heart-rate
    variability spreads the peak over the intervals; its centroid follows their mean, its top their mode)."""
    env = envelope(x, 0.05)[:: SR // 100]
    env = env - env.mean()
    ac = np.correlate(env, env, "full")[len(env) - 1:]
    lo, hi = int(100 * 60 / 170), int(100 * 60 / 35)
    k = lo + int(np.argmax(ac[lo:hi]))
    i, j = k, k
    while i > 1 and ac[i - 1] > 0.3 * ac[k]:
        i -= 1
    while j < len(ac) - 2 and ac[j + 1] > 0.3 * ac[k]:
        j += 1
    weight = ac[i:j + 1] - 0.3 * ac[k]
    return 60.0 * 100 / (np.sum(np.arange(i, j + 1) * weight) / np.sum(weight))


def test_the_corpus_is_read_by_the_physionet_loader_with_its_labels_and_quality(clean, noisy):
    for out, concepts in (clean, noisy):
        data = load_physionet2016(out)  # refuses any problem
        assert len(data) == 24 and data.databases == list("abcdef")
        frame = data.frame()
        by_name = concepts.set_index("name")
        assert (frame["raw_label"] == by_name.loc[frame.index, "label"]).all()
        assert (frame["quality"] == by_name.loc[frame.index, "quality"]).all()
        assert (frame["duration"] == SECONDS).all() and {r.n_signals for r in data.records} == {1}
        assert (out / "training-a" / "a0001.hea").read_text() == header_text("a0001", int(SECONDS * SR))
        assert set(concepts.columns) >= set(CONCEPTS) | {"label_flipped", "abnormal_rules"}
    # the same patients, beats and labels in both; only the conditions differ
    (_, c), (_, r) = clean, noisy
    for column in [k for k in CONCEPTS if k != "noise_level"] + ["label", "label_flipped", "abnormal_rules"]:
        pd.testing.assert_series_equal(c[column], r[column])
    assert (c["cond_level"] == "clean").all() and (c["cond_band"] == "none").all() and c["snr_db"].min() > 30
    assert r["noise_level"].mean() > 10 * c["noise_level"].mean() and r["cond_level"].nunique() > 1
    assert (r["quality"] == (r["snr_db"] >= 0).astype(int)).all()
    talking = r[r["cond_talking_db"] > -120]
    assert (talking["cond_talk_source"] == talk_source()).all()


def test_heart_rate_measured_from_the_audio_matches_the_label_on_clean_regular_recordings(clean):
    out, concepts = clean
    regular = concepts[(concepts["irregular_rhythm"] == 0) & (concepts["ectopic_fraction"] == 0)]
    assert len(regular) >= 12 and regular["heart_rate_bpm"].max() - regular["heart_rate_bpm"].min() > 25
    errors = {row["name"]: heart_rate_from_audio(audio(out, row)) - row["heart_rate_bpm"]
              for _, row in regular.iterrows()}
    assert max(abs(e) for e in errors.values()) < 5, errors


def test_s1_and_s2_segments_line_up_with_the_envelope_peaks(clean):
    out, concepts = clean
    plain = concepts[(concepts["systolic_murmur"] == 0) & (concepts["diastolic_murmur"] == 0) &
                     (concepts["s3"] == 0) & (concepts["s4"] == 0)]
    assert len(plain) >= 5
    checked = 0
    for _, row in plain.iterrows():
        env = envelope(audio(out, row))
        segs = pd.read_csv(out / "segments" / f"{row['name']}.csv")
        assert len(segs) == row["beats"]
        assert (segs["s1_start"] < segs["s1_end"]).all() and (segs["s1_end"] < segs["s2_start"]).all()
        assert (segs["s2_start"] < segs["s2_end"]).all() and (segs["s2_end"] < segs["diastole_end"]).all()
        assert np.allclose(segs["s1_start"].to_numpy()[1:], segs["diastole_end"].to_numpy()[:-1], atol=1e-4)
        previous_s2_end = np.concatenate([[0.0], segs["s2_end"].to_numpy()[:-1]])
        for seg, s2_before in zip(segs.itertuples(), previous_s2_end):
            if seg.diastole_end > SECONDS - 0.05:
                continue
            # each sound's window reaches 60 ms beyond it, but stops half the smoothing (10 ms) short of its neighbours
            for lo, hi, before, after in ((seg.s1_start, seg.s1_end, max(seg.s1_start - 0.06, s2_before + 0.01),
                                           seg.s2_start - 0.01),
                                          (seg.s2_start, seg.s2_end, seg.s1_end + 0.01,
                                           min(seg.s2_end + 0.06, seg.diastole_end - 0.01))):
                window = env[int(max(before, 0) * SR):int(after * SR)]
                peak = max(before, 0) + np.argmax(window) / SR
                assert lo - 0.005 <= peak <= hi, (row["name"], seg.beat, lo, hi, peak)
            systole = env[int((seg.s1_end + 0.01) * SR):int((seg.s2_start - 0.01) * SR)]
            assert env[int(seg.s1_start * SR):int(seg.s1_end * SR)].max() > 10 * np.median(systole)
            checked += 1
    assert checked > 40


def first(seed, condition, n=200):
    return next(r for r in (draw_record(seed, i) for i in range(n)) if condition(r))


def test_a_murmur_puts_energy_in_systole_and_leaves_everything_else_alone():
    r = first(5, lambda r: r.concepts["systolic_murmur_grade"] >= 2)
    beats = r.beats[(r.beats["s1_start"] > 0) & (r.beats["diastole_end"] < r.seconds)]
    with_murmur, without = r.render(), r.render(omit={"systolic_murmur"})
    assert np.array_equal(r.render(patient=r.patient.without("systolic_murmur")), without)

    def energy(x, start, end):
        return sum(float(np.sum(x[int(a * SR):int(b * SR)] ** 2)) for a, b in zip(beats[start], beats[end]))

    assert energy(with_murmur, "s1_end", "s2_start") > 2 * energy(without, "s1_end", "s2_start")
    assert energy(with_murmur, "s2_end", "diastole_end") == pytest.approx(energy(without, "s2_end", "diastole_end"))
    # and through the recording conditions, drawn the same for both renders
    recorded, recorded_without = r.record(with_murmur)[0], r.record(without)[0]
    assert energy(recorded, "s1_end", "s2_start") > 1.5 * energy(recorded_without, "s1_end", "s2_start")
    d = first(5, lambda r: r.concepts["diastolic_murmur"] > 0)
    assert d.render().std() > d.render(omit={"diastolic_murmur"}).std()
    beats = d.beats[(d.beats["s1_start"] > 0) & (d.beats["diastole_end"] < d.seconds)]
    assert energy(d.render(), "s2_end", "diastole_end") > 2 * energy(d.render(omit={"diastolic_murmur"}),
                                                                        "s2_end", "diastole_end")


def test_systole_follows_weisslers_ejection_time():
    r = first(5, lambda r: r.patient.rhythm == "regular")
    b = r.beats
    assert np.allclose(b["s2_start"] - b["s1_start"], lvet_s(60 / b["rr_prev"]), atol=0.006)
    assert 0.3 < r.concepts["systolic_fraction"] < 0.45
    assert lvet_s(70) / (60 / 70) == pytest.approx(0.34, abs=0.01)


def test_labels_follow_the_rules_and_a_set_share_is_flipped():
    records = [draw_record(11, i, seconds=SECONDS) for i in range(400)]  # draws only: nothing rendered
    for r in records:
        assert r.label_true == (1 if abnormal_rules(r.concepts) else -1)
        assert r.label == (-r.label_true if r.label_flipped else r.label_true)
    flipped = np.mean([r.label_flipped for r in records])
    assert abs(flipped - LABEL_NOISE) < 3 * np.sqrt(LABEL_NOISE * (1 - LABEL_NOISE) / len(records))
    abnormal = np.mean([r.label_true == 1 for r in records])
    assert 0.25 < abnormal < 0.65
    healthy = [r for r in records if not r.patient.pathologies]
    assert np.mean([r.label_true == -1 for r in healthy]) > 0.95
    fired = {rule for r in records for rule in r.rules}
    assert fired == set(ABNORMAL_RULES), set(ABNORMAL_RULES) - fired
    # each rule on its own
    normal = dict(systolic_murmur_grade=2, systolic_murmur_shape="diamond", diastolic_murmur=0.0, s3=0.3,
                  age_group="child", s4=0.0, heart_rate_bpm=80.0, irregular_rhythm=0, ectopic_fraction=0.05,
                  s2_split_ms=30.0)
    assert abnormal_rules(normal) == []
    for change, rule in ((dict(systolic_murmur_grade=3), "systolic_murmur_grade_3"),
                         (dict(systolic_murmur_shape="holosystolic"), "holosystolic_murmur"),
                         (dict(diastolic_murmur=0.06), "diastolic_murmur"), (dict(age_group="adult"), "s3_adult"),
                         (dict(s4=0.2), "s4"), (dict(heart_rate_bpm=48.0), "heart_rate_out_of_range"),
                         (dict(heart_rate_bpm=112.0), "heart_rate_out_of_range"),
                         (dict(irregular_rhythm=1), "irregular_rhythm"),
                         (dict(ectopic_fraction=0.12), "frequent_ectopy"),
                         (dict(s2_split_ms=45.0), "wide_split_s2")):
        assert abnormal_rules({**normal, **change}) == [rule]
    assert [murmur_grade(x) for x in (0.0, 0.05, 0.07, 0.12, 0.25, 0.5)] == [0, 1, 1, 2, 3, 4]


def test_a_recording_does_not_depend_on_the_others_and_the_build_is_deterministic_and_resumable(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    build_pcg_corpus(a, 8, seed=2, seconds=5.0, progress=False)
    build_pcg_corpus(b, 8, seed=2, seconds=5.0, workers=2, progress=False)

    def files(root):
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    reference = files(a)
    assert files(b) == reference and len(reference) == 8 * 4 + 6 * 2 + 2
    stamps = {p: p.stat().st_mtime_ns for p in a.rglob("*.wav")}
    (a / "rows" / "c0001.json").unlink()
    (a / "training-c" / "c0001.wav").unlink()
    summary = build_pcg_corpus(a, 8, seed=2, seconds=5.0, progress=False)
    assert (summary["built"], summary["skipped"]) == (1, 7) and files(a) == reference
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p.name != "c0001.wav")
    more = build_pcg_corpus(a, 10, seed=2, seconds=5.0, progress=False)  # two more; the first eight unchanged
    assert (more["built"], more["skipped"]) == (2, 8)
    now = files(a)
    assert all(now[k] == v for k, v in reference.items() if k.suffix in (".wav", ".hea") or k.parts[0] == "rows")
    assert len(load_physionet2016(a)) == 10
    with pytest.raises(ValueError, match="other settings"):
        build_pcg_corpus(a, 10, seed=3, seconds=5.0, progress=False)
    with pytest.raises(ValueError, match="at least that"):
        build_pcg_corpus(a, 4, seed=2, seconds=5.0, progress=False)
    assert json.loads((a / "build.json").read_text())["n"] == 10
    other = draw_record(3, 0, seconds=5.0)
    assert other.render().tobytes() != draw_record(2, 0, seconds=5.0).render().tobytes()


def test_the_command(capsys, tmp_path):
    out = tmp_path / "cli"
    assert main(["corpus", "heart", "--out", str(out), "--n", "6", "--seed", "1", "--seconds", "5",
                 "--noise", "clean"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["recordings"] == 6 and summary["built"] == 6
    assert main(["corpus", "heart", "--out", str(out), "--n", "6", "--seed", "2", "--seconds", "5"]) == 2
    assert "other settings" in capsys.readouterr().err
