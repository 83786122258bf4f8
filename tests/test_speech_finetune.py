"""Fine-tuning a speech entry on AudioMNIST (issue 33): a miniature in the published layout whose clips are
real synthesised speech, read as a speech model's training data (concepts from the lexicon for digits, from
Praat for sex) and used to fine-tune the zoo's digit entry and its black box."""

import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from midlevel.datasets.spoken_corpus import DIGIT_PHONE_CLASSES, DIGITS, PHONETIC_CONCEPTS
from midlevel.zoo import DEFAULTS, REGISTRY

pytest.importorskip("parselmouth")
pytest.importorskip("librosa")
if not all(shutil.which(p) for p in ("espeak-ng", "flite")):
    pytest.skip("speech synthesisers missing (scripts/install-system-deps.sh)", allow_module_level=True)

from midlevel.datasets.spoken_digits.voices import Voice, synthesize  # noqa: E402
from midlevel.training.speech import load_speech_clips, train_speech_models  # noqa: E402

#: AudioMNIST speaker -> the synthetic voice saying its digits (3 men, 2 women, as the meta file says)
SPEAKERS = {1: Voice("espeak-ng", "en-us", "m2", "male"), 2: Voice("espeak-ng", "en-029", "f3", "female"),
            3: Voice("espeak-ng", "en-gb-scotland", "m6", "male"), 4: Voice("espeak-ng", "en-gb-x-rp", "f1", "female"),
            5: Voice("espeak-ng", "en-gb-x-gbcwmd", "m4", "male")}


@pytest.fixture(scope="module")
def audiomnist(tmp_path_factory):
    import soxr

    root = tmp_path_factory.mktemp("audiomnist")
    meta = {f"{n:02d}": {"accent": "synthetic", "age": "30", "gender": v.sex, "native speaker": "no",
                         "origin": "espeak-ng", "recordingdate": "26-12-05-00-00-00", "recordingroom": "none"}
            for n, v in SPEAKERS.items()}
    (root / "data").mkdir()
    (root / "data" / "audioMNIST_meta.txt").write_text(json.dumps(meta, indent=4))
    for n, voice in SPEAKERS.items():
        (root / "data" / f"{n:02d}").mkdir()
        for digit, word in enumerate(DIGITS):
            for rep in range(2):
                samples, sr, _ = synthesize(voice, word, rate=0.9 + 0.2 * rep)
                sf.write(root / "data" / f"{n:02d}" / f"{digit}_{n:02d}_{rep}.wav",
                         soxr.resample(samples, sr, 48000), 48000, subtype="PCM_16")  # AudioMNIST's rate
    return root


def test_the_digit_table_a_recording_is_labelled_with_is_the_lexicons():
    from midlevel.datasets.spoken_digits.phonetics import lexicon_phones, phonetic_labels

    for word, classes in DIGIT_PHONE_CLASSES.items():
        labels = phonetic_labels(lexicon_phones(word))
        wanted = {c for c in PHONETIC_CONCEPTS if c != "two_syllables" and labels[c] == 1}
        if labels["syllables"] == 2:
            wanted.add("two_syllables")
        assert classes == wanted, word


def test_audiomnist_is_read_as_speaker_disjoint_clips_with_lexicon_and_praat_concepts(audiomnist, tmp_path):
    digits = load_speech_clips(audiomnist, "digit", tmp_path)
    speakers = [set(digits[s].speakers) for s in ("train", "val", "test")]
    assert not (speakers[0] & speakers[1]) and not (speakers[0] & speakers[2]) and not (speakers[1] & speakers[2])
    for split in digits.values():
        for word, row in zip(split.words, split.concepts):
            assert {c for c, v in zip(PHONETIC_CONCEPTS, row) if v == 1} == DIGIT_PHONE_CLASSES[word]
    sex = load_speech_clips(audiomnist, "sex", tmp_path)
    measured = tmp_path / "praat-sex.csv"
    assert measured.is_file()
    pitch = {s: [] for s in ("male", "female")}
    for split in sex.values():
        for cls, row in zip(split.classes, split.concepts):
            pitch[("male", "female")[cls]].append(row[0])
    assert np.median(pitch["female"]) > np.median(pitch["male"])  # Praat hears the women higher
    stamp = os.stat(measured).st_mtime_ns
    load_speech_clips(audiomnist, "sex", tmp_path)  # measured once: read back, not measured again
    assert os.stat(measured).st_mtime_ns == stamp


@pytest.mark.skipif("digit-cnn-logistic-phon9-synth4k" not in REGISTRY, reason="no digit entry in the zoo yet")
def test_the_zoo_digit_entry_fine_tunes_on_audiomnist_with_its_black_box(audiomnist, tmp_path):
    import midlevel

    base = DEFAULTS["spoken-digit"]
    results = train_speech_models(audiomnist, tmp_path / "ft", task="digit", epochs=1, init_from=base,
                                  black_box=["black_box"], progress=False)
    assert results["init_from"] == base and results["models"]["black_box"]["fine_tuned"]
    tuned = midlevel.load(tmp_path / "ft" / "models" / "explainable")
    zoo = midlevel.load(base)
    # started from the entry: same front-end statistics, the timeline window kept
    assert tuned.config.metadata["timeline_window_seconds"] == zoo.config.metadata["timeline_window_seconds"]
    np.testing.assert_array_equal(tuned.frontend.mean.numpy(), zoo.frontend.mean.numpy())
    test = results["models"]["explainable"]["test"]
    assert test["voices"] == 1 and 0.0 <= test["accuracy"] <= 1.0
    # the entry heard these (unseen) synthetic voices well before the fine-tune too
    assert test["accuracy"] >= 0.7, test
