"""The speech-explanations benchmark runs with one command on a tiny synthesised corpus and untrained models,
and writes its tables, figure and listenable parts; its pieces keep the sums they promise."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("captum")
pytest.importorskip("parselmouth")

import torch  # noqa: E402

from script_loader import load_script  # noqa: E402

from midlevel.datasets.spoken_corpus import load_spoken_corpus  # noqa: E402
from midlevel.model import BlackBoxModel, TwoStageModel  # noqa: E402
from midlevel.training.speech import speech_config  # noqa: E402


def bench():
    return load_script("benchmarks/speech_explanations.py")


def test_slots_keep_each_methods_sum():
    b = bench()
    frames = np.random.default_rng(0).normal(size=121)
    assert b.slots_from_frames(frames, 120).sum() == pytest.approx(frames.sum())


def test_placement_shares_of_a_relevance_inside_one_span():
    b = bench()
    scores = np.zeros(120)
    scores[55:60] = 1.0  # 0.55-0.60 s
    row = pd.Series({"offset_s": 0.5, "word_s": 0.4, "sibilant_start_s": 0.54, "sibilant_end_s": 0.61,
                     "nasal_start_s": 0.8, "nasal_end_s": 0.9})
    p = b.placement(scores, row)
    assert p["in_word"] == 1.0 and p["share_sibilant"] == 1.0 and p["share_nasal"] == 0.0
    assert p["duration_share_sibilant"] == pytest.approx(0.07 / 0.4)
    assert 0.1 < p["centre_in_word"] < 0.25


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng missing (scripts/install-system-deps.sh)")
def test_one_command_writes_results_figure_and_listenable_parts(tmp_path):
    from midlevel.datasets.spoken_digits import build_spoken_digits
    from midlevel.datasets.spoken_digits.voices import Voice

    voices = [Voice("espeak-ng", "en-us", v, "female" if v.startswith("f") else "male") for v in ("m1", "f1", "m2")]
    corpus = tmp_path / "corpus"
    build_spoken_digits(corpus, reps=1, seed=0, voices=voices, progress=False)
    labels = pd.read_csv(corpus / "labels.csv")
    labels["split"] = labels["speaker"].map(dict(zip([v.speaker for v in voices], ("train", "val", "test"))))
    labels.to_csv(corpus / "labels.csv", index=False)
    torch.manual_seed(0)
    explainable = TwoStageModel(speech_config("digit"))
    train = load_spoken_corpus(corpus, "digit")["train"]
    explainable.head.fit(train.concepts, train.classes)  # a head on the true concepts: enough to run
    explainable.save_pretrained(tmp_path / "explainable")
    BlackBoxModel(speech_config("digit", "black_box")).save_pretrained(tmp_path / "black_box")
    BlackBoxModel(replace(speech_config("digit", "black_box", "raw_waveform"), name="raw")).save_pretrained(tmp_path / "raw")
    out = tmp_path / "results"
    bench().main(["--corpus", str(corpus), "--explainable", str(tmp_path / "explainable"),
                  "--black-box", str(tmp_path / "black_box"), "--raw-black-box", str(tmp_path / "raw"),
                  "--per-class", "1", "--sevens", "1", "--timing-clips", "1", "--repeats", "1", "--shap-time", "4",
                  "--shap-freq", "2", "--shap-evals", "40", "--random-orders", "1", "--delete-steps", "3",
                  "--out", str(out)])
    r = json.loads((out / "speech_explanations.json").read_text())
    assert r["summary"]["n_clips"] == 10 and set(r["models"]) == {"explainable", "black_box", "raw_black_box"}
    assert all(len(m["weights_sha256"]) == 64 for m in r["models"].values())
    assert set(r["cost"]) >= {"intrinsic", "lrp_spectrogram", "lrp_waveform", "shap_permutation", "shap_deep"}
    assert r["cost"]["intrinsic"]["ratio_to_intrinsic"] == 1.0
    assert "seven" in r["summary"]["methods"]["lrp_spectrogram"]
    assert (out / "speech_explanations.md").read_text().startswith("# Speech explanations")
    assert (out / "speech_explanations.png").stat().st_size > 0
    assert sorted(p.name for p in (out / "speech_explanations_listen").glob("*.wav"))
