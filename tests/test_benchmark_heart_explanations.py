"""The heart-explanations benchmark: its credit-per-state bookkeeping on hand-made cases, the post-hoc readings'
promised sums checked against direct computation, and one command end to end on a tiny simulated corpus with
untrained models."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("captum")
pytest.importorskip("shap")

from script_loader import load_script  # noqa: E402

from midlevel.explain.over_time import (beat_peaks, occlusion_over_time, shap_over_time, state_shares,  # noqa: E402
                                        timeline_over_time)
from midlevel.model import BlackBoxModel, TwoStageModel  # noqa: E402
from midlevel.training.heart import heart_config  # noqa: E402

#: two beats of 1 s: S1 0.1 s, systole 0.3 s, S2 0.1 s, diastole 0.5 s
SEGMENTS = pd.DataFrame({"beat": [0, 1], "s1_start": [0.5, 1.5], "s1_end": [0.6, 1.6], "s2_start": [0.9, 1.9],
                         "s2_end": [1.0, 2.0], "diastole_end": [1.5, 2.5]})
TIMES = np.arange(301) * 0.01  # 0-3 s, frames every 10 ms


def test_credit_only_inside_systole_is_all_systole_and_time_shares_are_the_states_durations():
    systole = ((TIMES >= 0.6 - 1e-9) & (TIMES < 0.9 - 1e-9)) | ((TIMES >= 1.6 - 1e-9) & (TIMES < 1.9 - 1e-9))
    relevance = np.where(systole, 1.0, 0.0) - 3.0 * (TIMES > 2.6)  # negative credit outside the table: ignored
    s = state_shares(TIMES, relevance, SEGMENTS)
    assert s["share_systole"] == 1.0 and s["share_S1"] == s["share_S2"] == s["share_diastole"] == 0.0
    assert s["frames"] == 200  # 0.5-2.5 s
    assert [s[f"time_{k}"] for k in ("S1", "systole", "S2", "diastole")] == pytest.approx([0.1, 0.3, 0.1, 0.5])
    # half the positive credit in S2 of the first beat, half in diastole of the second
    other = np.zeros_like(TIMES)
    other[(TIMES >= 0.9) & (TIMES < 0.95)] = 2.0  # 5 frames x 2
    other[(TIMES >= 2.1) & (TIMES < 2.2)] = 1.0  # 10 frames x 1
    s = state_shares(TIMES, other, SEGMENTS)
    assert s["share_S2"] == pytest.approx(0.5) and s["share_diastole"] == pytest.approx(0.5)
    assert np.isnan(state_shares(TIMES, -np.ones_like(TIMES), SEGMENTS)["share_systole"])  # no positive credit
    valid = TIMES < 1.5  # only the first beat's frames
    assert state_shares(TIMES, other, SEGMENTS, valid=valid)["share_S2"] == 1.0


def test_beat_peaks_name_the_state_of_each_beats_peak_and_skip_flat_and_uncovered_beats():
    relevance = np.zeros_like(TIMES)
    relevance[(TIMES >= 0.7) & (TIMES < 0.8)] = 1.0  # a plateau in beat 0's systole
    relevance[(TIMES >= 2.2) & (TIMES < 2.25)] = 0.5  # beat 1: peak in diastole
    peaks = beat_peaks(TIMES, relevance, SEGMENTS)
    assert list(peaks["state"]) == ["systole", "diastole"] and list(peaks["in_systole"]) == [True, False]
    assert peaks["peak_s"].iloc[0] == pytest.approx(0.75)  # the plateau's middle
    assert peaks["systolic_share"].tolist() == pytest.approx([0.3, 0.3])
    flat = beat_peaks(TIMES, np.ones_like(TIMES), SEGMENTS)
    assert list(flat["state"]) == ["none", "none"] and not flat["in_systole"].any()
    assert list(beat_peaks(TIMES, relevance, SEGMENTS, span=(0.2, 2.0))["beat"]) == [0]  # beat 1 ends at 2.5 s


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    black_box = BlackBoxModel(heart_config("black_box")).eval()
    explainable = TwoStageModel(heart_config()).eval()
    rng = np.random.default_rng(0)
    concepts = rng.uniform(0, 1, size=(60, 10))
    explainable.head.fit(concepts, (concepts[:, 5] > 0.5).astype(int))  # the systolic murmur decides
    wave = (0.1 * rng.standard_normal(30000)).astype(np.float32)  # 15 s at 2 kHz: two windows, 5-10 s shared
    return black_box, explainable, wave


def test_occlusion_over_time_is_the_mean_over_windows_of_each_patchs_log_odds_drop(models):
    black_box, _, wave = models
    o = occlusion_over_time(black_box, wave, target=1, versus=0, patch_seconds=0.5, stride_seconds=0.5,
                            sample_rate=2000)
    assert len(o.times) == 1501 and o.extra["windows"] == 2
    window = black_box.config.window_samples
    with torch.no_grad():
        specs = black_box.frontend(torch.from_numpy(np.stack([wave[:window], wave[10000:10000 + window]])))
        baseline = specs.mean(dim=(0, 3), keepdim=True).expand_as(specs)
        odds = lambda s: (lambda y: (y[:, 1] - y[:, 0]).double().numpy())(black_box.outputs_from_spectrogram(s))  # noqa: E731
        full = odds(specs)
        # track frame 600 (6.0 s) lies in window 0's patch of frames 600-649 and window 1's of frames 100-149
        masked = specs.clone()
        masked[0, ..., 600:650] = baseline[0, ..., 600:650]
        masked[1, ..., 100:150] = baseline[1, ..., 100:150]
        drop = (full - odds(masked)).mean()
        # track frame 100 (1 s) is in window 0 only
        early = specs.clone()
        early[0, ..., 100:150] = baseline[0, ..., 100:150]
        drop_early = (full[0] - odds(early)[0]) / 2
    assert o.relevance[600] == pytest.approx(drop, abs=1e-5)
    assert o.relevance[649] == pytest.approx(drop, abs=1e-5)
    assert o.relevance[100] == pytest.approx(drop_early, abs=1e-5)
    assert o.output == pytest.approx(full.mean(), abs=1e-5)


def test_shap_over_time_frames_add_up_to_the_log_odds_and_the_timeline_takes_the_nearest_window(models):
    black_box, explainable, wave = models
    s = shap_over_time(black_box, wave, target=1, versus=0, n_time=10, max_evals=21, sample_rate=2000)
    assert s.reference + s.relevance.sum() == pytest.approx(s.output, abs=1e-4)
    assert s.extra["additivity_error"] < 1e-4
    on_frames = np.add.reduceat(s.relevance, np.flatnonzero(np.r_[True, np.diff(s.relevance) != 0]))
    assert on_frames.sum() == pytest.approx(s.extra["segment_values"].sum(), abs=1e-6)
    t = timeline_over_time(explainable, wave, hop_seconds=0.1, sample_rate=2000)
    m = timeline_over_time(explainable, wave, hop_seconds=0.1, sample_rate=2000, concepts=["systolic_murmur"])
    assert t.extra["span"] == pytest.approx((0.15, 14.85))
    from midlevel.explain.timeline import timeline

    line = timeline(explainable, wave, window_seconds=0.3, hop_seconds=0.1, sample_rate=2000)
    w = int(np.argmin(np.abs(line.centres - 3.0)))
    assert t.relevance[300] == pytest.approx(line.outputs[w, 1] - line.intercept[1], abs=1e-5)
    assert m.relevance[300] == pytest.approx(line.contributions[w, 1, 5])


def test_one_command_writes_results_and_figure(tmp_path, models):
    from midlevel.datasets.heart_corpus import load_heart_corpus
    from midlevel.datasets.heart_sounds import build_pcg_corpus

    corpus = tmp_path / "pcg"
    build_pcg_corpus(corpus, 8, seed=3, progress=False)  # systolic murmur grades 4, 0, 0, 4, 2, 0, 4, 1
    black_box, explainable, _ = models
    data = load_heart_corpus(corpus, fractions=(0.0, 0.0, 1.0))["test"]
    explainable.head.fit(data.concepts, data.labels_true)
    explainable.save_pretrained(tmp_path / "explainable")
    black_box.save_pretrained(tmp_path / "black_box")
    out = tmp_path / "results"
    bench = load_script("benchmarks/heart_explanations.py")
    threads = torch.get_num_threads()  # the benchmark runs on one thread: restored for the other tests
    bench.main(["--corpus", str(corpus), "--explainable", str(tmp_path / "explainable"),
                "--black-box", str(tmp_path / "black_box"), "--murmur", "2", "--without", "1", "--hop", "0.1",
                "--patch", "0.5", "--stride", "0.5", "--shap-time", "10", "--shap-evals", "21",
                "--timing-recordings", "1", "--repeats", "1", "--max-load", "1000", "--out", str(out)])
    torch.set_num_threads(threads)
    r = json.loads((out / "heart_explanations.json").read_text())
    assert [x["group"] for x in r["recordings"]] == ["murmur", "murmur", "without"]
    assert all(x["systolic_murmur_grade"] >= 2 for x in r["recordings"][:2])
    assert r["recordings"][2]["systolic_murmur_grade"] == 0
    assert all(len(m["weights_sha256"]) == 64 for m in r["models"].values())
    assert set(r["cost"]) == {"intrinsic", "intrinsic_timeline", "occlusion", "shap_permutation", "black_box_forward"}
    assert r["cost"]["intrinsic"]["ratio_to_intrinsic"] == 1.0
    assert r["cost"]["intrinsic_timeline"]["ratio_to_intrinsic_timeline"] == 1.0
    assert len(r["environment"]["load_average_before_timing"]) == 3
    murmur = r["summary"]["murmur"]
    for m in ("intrinsic_all", "intrinsic_systolic_murmur", "occlusion", "shap_permutation"):
        times = [murmur[m][f"time_{k}"] for k in ("S1", "systole", "S2", "diastole")]
        assert sum(times) == pytest.approx(1.0) and murmur[m]["beats"] > 10
        assert 0.0 <= murmur[m]["peaks_in_systole"] <= 1.0
    assert murmur["shap_permutation"]["max_additivity_error"] < 1e-4
    assert (out / "heart_explanations.md").read_text().startswith("# Heart-sound explanations")
    assert (out / "heart_explanations.png").stat().st_size > 0
