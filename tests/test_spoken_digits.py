"""The controlled spoken-digit corpus: real synthesisers (espeak-ng, flite, festival), labels checked against
Praat (parselmouth) on the written files, against the lexicon, and against the phones' timing."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("parselmouth")
pytest.importorskip("librosa")
if not all(shutil.which(p) for p in ("espeak-ng", "flite", "festival")):
    pytest.skip("speech synthesisers missing (scripts/install-system-deps.sh)", allow_module_level=True)

from midlevel.audio import load_audio  # noqa: E402
from midlevel.datasets.spoken_digits import build_spoken_digits  # noqa: E402
from midlevel.datasets.speaker_measures import speaker_measures  # noqa: E402
from midlevel.datasets.spoken_digits.build import SAMPLE_RATE, speaker_splits  # noqa: E402
from midlevel.datasets.spoken_digits.phonetics import DIGIT_WORDS, PHONE_CLASSES, lexicon_phones, phone_class  # noqa: E402
from midlevel.datasets.spoken_digits.voices import available_voices  # noqa: E402

VOICES = available_voices()


def pick(engine: str, sex: str):
    return next(v for v in VOICES if v.engine == engine and v.sex == sex)


SMALL = [pick("espeak-ng", "male"), pick("espeak-ng", "female"), pick("flite", "female"), pick("festival", "male")]


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    out = tmp_path_factory.mktemp("speech") / "dry"
    summary = build_spoken_digits(out, reps=1, seed=3, conditions="dry", voices=SMALL, progress=False)
    return out, summary, pd.read_csv(out / "labels.csv")


def test_every_voice_says_every_digit_and_the_phonetic_labels_follow_the_lexicon(dry):
    out, summary, labels = dry
    assert summary["clips"] == 40 and summary["built"] == 40
    assert sorted(labels["digit"].value_counts()) == [4] * 10
    for _, row in labels.iterrows():
        classes = {phone_class(p) for p in lexicon_phones(row["word"])}
        assert {c for c in PHONE_CLASSES if row[c] == 1} == classes - {None}, row["word"]
    seven = labels[labels["word"] == "seven"].iloc[0]
    assert seven["sibilant"] == seven["nasal"] == seven["fricative"] == 1 and seven["plosive"] == 0
    assert seven["syllables"] == 2 and labels[labels["word"] == "six"].iloc[0]["syllables"] == 1
    assert (out / seven["file"]).is_file() and seven["file"].startswith(f"audio/{seven['speaker']}/7_")


def test_the_sibilant_of_seven_is_timed_in_the_words_first_quarter_and_the_nasal_at_its_end(dry):
    _, _, labels = dry
    seven = labels[labels["word"] == "seven"]
    start = (seven["sibilant_start_s"] - seven["offset_s"]) / seven["word_s"]
    end_nasal = (seven["nasal_end_s"] - seven["offset_s"]) / seven["word_s"]
    assert (start < 0.25).all(), start.tolist()
    assert (end_nasal > 0.6).all(), end_nasal.tolist()
    assert (seven["sibilant_end_s"] < seven["nasal_start_s"]).all()
    # and the hiss really is there: the sibilant span carries more energy above 4 kHz than the nasal span
    for _, row in seven.iterrows():
        x = load_audio(str(dry[0] / row["file"]), SAMPLE_RATE).samples

        def high_share(lo, hi):
            seg = x[int(lo * SAMPLE_RATE):int(hi * SAMPLE_RATE)]
            spec = np.abs(np.fft.rfft(seg)) ** 2
            f = np.fft.rfftfreq(len(seg), 1 / SAMPLE_RATE)
            return spec[f > 4000].sum() / spec.sum()

        assert high_share(row["sibilant_start_s"], row["sibilant_end_s"]) > \
            3 * high_share(row["nasal_start_s"], row["nasal_end_s"]), row["speaker"]


def test_speaker_labels_agree_with_praat_on_the_written_files_and_tell_the_sexes_apart(dry):
    out, _, labels = dry
    for _, row in labels.iloc[::7].iterrows():  # a dry clip's file is the measured clip, 16-bit
        again = speaker_measures(load_audio(str(out / row["file"]), SAMPLE_RATE).samples, SAMPLE_RATE)
        assert again["f0_median_hz"] == pytest.approx(row["f0_median_hz"], rel=0.02)
        assert again["f2_hz"] == pytest.approx(row["f2_hz"], rel=0.05)
    f0 = labels.groupby("sex")["f0_median_hz"].median()
    assert f0["female"] > 1.3 * f0["male"]


def test_splits_hold_out_whole_voices_stratified_by_synthesiser_and_sex():
    splits = speaker_splits(VOICES, seed=0)
    assert set(splits) == {v.speaker for v in VOICES} and set(splits.values()) == {"train", "val", "test"}
    held = [v for v in VOICES if splits[v.speaker] == "test"]
    assert {v.sex for v in held} == {"male", "female"} and "espeak-ng" in {v.engine for v in held}
    assert splits == speaker_splits(VOICES, seed=0) and splits != speaker_splits(VOICES, seed=1)


def test_randomised_conditions_change_the_audio_not_the_labels_and_a_rerun_resumes(dry, tmp_path):
    _, _, dry_labels = dry
    out = tmp_path / "rand"
    build_spoken_digits(out, reps=1, seed=3, voices=SMALL[:2], progress=False)
    labels = pd.read_csv(out / "labels.csv")
    same = dry_labels[dry_labels["speaker"].isin(labels["speaker"])].reset_index(drop=True)
    for column in ("digit", "rate", "f0_target_hz", "offset_s", "sibilant_start_s", "f0_median_hz"):
        pd.testing.assert_series_equal(labels[column], same[column], check_dtype=False)
    assert labels["cond_level_db"].std() > 3
    a = load_audio(str(out / labels["file"][0]), SAMPLE_RATE).samples
    b = load_audio(str(dry[0] / same["file"][0]), SAMPLE_RATE).samples
    assert not np.allclose(a, b, atol=1e-3)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    again = build_spoken_digits(out, reps=1, seed=3, voices=SMALL[:2], progress=False)
    assert again["skipped"] == 20 and {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")} == before
    with pytest.raises(ValueError, match="other settings"):
        build_spoken_digits(out, reps=2, seed=3, voices=SMALL[:2], progress=False)
    assert json.loads((out / "build.json").read_text())["reps"] == 1


def test_every_espeak_accent_applies_its_variant_so_female_variants_sound_higher():
    """espeak-ng drops the variant of some voice names (``en-gb+f2`` is plain en-gb); a corpus built so would
    label one male voice as several speakers of both sexes."""
    from midlevel.datasets.spoken_digits.voices import ESPEAK_ACCENTS, synthesize

    by_accent = {}
    for v in VOICES:
        if v.engine == "espeak-ng" and v.variant in ("m1", "f2"):
            by_accent.setdefault(v.name, {})[v.variant] = v
    assert set(by_accent) == set(ESPEAK_ACCENTS)
    for accent, pair in by_accent.items():
        male, _, _ = synthesize(pair["m1"], "nine")
        female, sr, _ = synthesize(pair["f2"], "nine")
        f0 = {sex: speaker_measures(x, sr)["f0_median_hz"] for sex, x in (("male", male), ("female", female))}
        assert f0["female"] > 1.3 * f0["male"], (accent, f0)
