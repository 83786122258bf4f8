"""AudioMNIST's reader on miniatures written in its layout: data/NN/D_NN_R.wav at 48 kHz and the meta JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from midlevel.audio import AudioError
from midlevel.datasets import DatasetError
from midlevel.datasets.audiomnist import (BECKER_GROUPS, META_FILE, becker_preprocess, load_audiomnist,
                                          split_speakers)
from midlevel.errors import Refusals

#: the published meta file's values, with the messy spellings a copy may have
META = {
    "01": {"accent": "german", "age": 30, "gender": "male", "native speaker": "no",
           "origin": "Europe, Germany, Wuerzburg", "recordingdate": "17-06-22-11-04-28", "recordingroom": "Kino"},
    "02": {"accent": "German", "age": "25", "gender": " Female ", "native speaker": "no",
           "origin": "Europe, Germany, Hamburg", "recordingdate": "17-06-26-17-57-29", "recordingroom": "Kino"},
    "03": {"accent": "Tamil", "age": "1234", "gender": "MALE", "native speaker": "yes",
           "origin": "Asia, India, Chennai", "recordingdate": "17-10-20-17-24-39", "recordingroom": "vr-romm"},
    "04": {"accent": " Danish ", "age": "", "gender": "female", "native speaker": "No",
           "origin": "Europe, Denmark, Copenhagen", "recordingdate": "17-09-11-14-33-03", "recordingroom": "VR-Room"},
    "05": {"accent": "Italian", "age": "27", "gender": "male", "native speaker": "no",
           "origin": "Europe, Italy, Casarsa", "recordingdate": "17-09-01-09-46-46", "recordingroom": "vr-room"},
}
#: the published file's 12 female speakers; the other 48 of 1-60 are male
FEMALE = (12, 26, 28, 36, 43, 47, 52, 56, 57, 58, 59, 60)
REAL_GENDERS = {n: "female" if n in FEMALE else "male" for n in range(1, 61)}


def tone(seconds: float = 0.05, rate: int = 48000, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_meta(root: Path, meta: dict) -> Path:
    path = root / "data" / META_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(meta, indent=4), encoding="utf-8")  # one field a line, as published
    return path


def make_audiomnist(root: Path, speakers=(1, 2, 3, 4), repetitions: int = 2, meta: dict | None = None) -> Path:
    """speakers x 10 digits x repetitions short tones; speaker 05 is in the meta file without a folder."""
    write_meta(root, META if meta is None else meta)
    for speaker in speakers:
        folder = root / "data" / f"{speaker:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for digit in range(10):
            for rep in range(repetitions):
                sf.write(folder / f"{digit}_{speaker:02d}_{rep}.wav", tone(freq=200 + 50 * digit), 48000,
                         subtype="PCM_16")
    return root


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    return make_audiomnist(tmp_path_factory.mktemp("audiomnist"))


def test_clips_speakers_and_normalised_metadata(mini):
    data = load_audiomnist(mini)
    assert len(data) == 4 * 10 * 2
    first = data.clips[0]
    assert (first.id, first.digit, first.speaker, first.repetition) == ("0_01_0", 0, 1, 0)
    assert first.path == mini / "data" / "01" / "0_01_0.wav"
    assert first.frames == 2400 and first.duration == pytest.approx(0.05)
    assert sorted(data.speakers) == [1, 2, 3, 4]
    assert data.speakers_without_audio == [5]
    s1, s2, s3, s4 = (data.speakers[n] for n in (1, 2, 3, 4))
    assert [s.gender for s in (s1, s2, s3, s4)] == ["male", "female", "male", "female"]
    assert (s1.age, s2.age, s3.age, s4.age) == (30, 25, None, None)  # int, string, "1234", ""
    assert (s1.native_speaker, s3.native_speaker, s4.native_speaker) == (False, True, False)
    assert (s1.accent, s4.accent) == ("german", "Danish")  # stripped, case kept
    assert s3.recording_room == "vr-romm" and s1.recording_date == "17-06-22-11-04-28"
    assert s2.raw["gender"] == " Female " and s1.raw["age"] == 30  # as written
    assert data.target(data.clip("3_02_1")) == 3
    assert data.target(data.clip("3_02_1"), "sex") == "female"
    frame = data.frame()
    assert frame.shape[0] == 80 and frame.loc["9_04_1", "gender"] == "female"
    assert set(frame["split"]) == {"train", "val", "test"}


def test_digit_splits_are_speaker_disjoint_stratified_and_seeded(mini):
    data = load_audiomnist(mini, split_seed=1)
    speakers = data.speaker_splits
    assert sorted(n for part in speakers.values() for n in part) == [1, 2, 3, 4]
    assert [len(speakers[k]) for k in ("train", "val", "test")] == [2, 1, 1]
    assert {data.speakers[n].gender for n in speakers["train"]} == {"female", "male"}  # one of each sex
    for name, ids in data.splits.items():
        assert {data.clip(i).speaker for i in ids} == set(speakers[name])
    assert sum(map(len, data.splits.values())) == 80
    again = load_audiomnist(mini, split_seed=1, check_audio=False)
    assert again.splits == data.splits and again.clips[0].frames is None
    assert any(data.split(split_seed=s)[1] != speakers for s in range(2, 8))


def test_sex_task_balances_female_and_male_speakers(mini):
    data = load_audiomnist(mini, task="sex", fractions=(0.5, 0.25, 0.25))
    chosen = [n for part in data.speaker_splits.values() for n in part]
    genders = [data.speakers[n].gender for n in chosen]
    assert genders.count("female") == genders.count("male") == 2
    assert data.target(data.clips[0]) in ("female", "male")


def test_split_speakers_on_the_real_speaker_list():
    for seed in range(3):
        split = split_speakers(REAL_GENDERS, split_seed=seed)
        assert [len(split[k]) for k in ("train", "val", "test")] == [36, 12, 12]
        females = {k: sum(REAL_GENDERS[n] == "female" for n in v) for k, v in split.items()}
        assert all(abs(females[k] - 12 * len(split[k]) / 60) <= 1 for k in split)
        sex = split_speakers(REAL_GENDERS, task="sex", split_seed=seed)
        members = [n for v in sex.values() for n in v]
        assert len(members) == 24 and sum(REAL_GENDERS[n] == "female" for n in members) == 12
        assert split_speakers(REAL_GENDERS, split_seed=seed) == split
    assert split_speakers(REAL_GENDERS, split_seed=0) != split_speakers(REAL_GENDERS, split_seed=1)


@pytest.mark.parametrize(("task", "n_folds", "size", "females"), [("digit", 5, 12, (2, 3)), ("sex", 4, 6, (3,))])
def test_seeded_folds_rotate_like_the_paper(task, n_folds, size, females):
    tests = []
    for fold in range(n_folds):
        split = split_speakers(REAL_GENDERS, task=task, split_seed=7, fold=fold)
        assert len(split["val"]) == len(split["test"]) == size
        assert len(split["train"]) == size * (n_folds - 2)
        assert not (set(split["train"]) & set(split["val"])) and not (set(split["val"]) & set(split["test"]))
        assert sum(REAL_GENDERS[n] == "female" for n in split["test"]) in females
        tests.append(frozenset(split["test"]))
        if fold:
            assert split["val"] == previous_test  # fold k validates on the group fold k-1 tested on
        previous_test = split["test"]
    assert len(set(tests)) == n_folds  # every group is tested once
    with pytest.raises(ValueError, match=f"fold must be 0 ... {n_folds - 1}"):
        split_speakers(REAL_GENDERS, task=task, fold=n_folds)


def test_published_groups_are_the_papers_splits():
    digit = [set(g) for g in BECKER_GROUPS["digit"]]
    assert sorted(n for g in digit for n in g) == list(range(1, 61))
    assert [sum(n in FEMALE for n in g) for g in digit] == [3, 3, 2, 2, 2]
    sex = BECKER_GROUPS["sex"]
    assert all(sum(n in FEMALE for n in g) == 3 and len(g) == 6 for g in sex)
    assert sorted(n for g in sex for n in g if n in FEMALE) == list(FEMALE)
    fold0 = split_speakers(REAL_GENDERS, task="digit", fold=0, groups="published")
    assert set(fold0["val"]) == {12, 47, 59, 15, 27, 41, 4, 11, 21, 31, 44, 50}
    assert set(fold0["test"]) == {26, 52, 60, 18, 32, 42, 5, 13, 22, 33, 45, 51}
    sex0 = split_speakers(REAL_GENDERS, task="sex", fold=0, groups="published")
    assert set(sex0["train"]) == {36, 47, 56, 26, 12, 57, 2, 44, 50, 25, 37, 45}
    assert set(sex0["test"]) == {58, 59, 60, 7, 23, 38}


def test_split_argument_errors(mini):
    data = load_audiomnist(mini)
    with pytest.raises(DatasetError, match="the published digit folds need speaker"):
        data.split(fold=0, groups="published")
    with pytest.raises(ValueError, match="give a fold too"):
        data.split(groups="published")
    with pytest.raises(ValueError, match="summing to 1"):
        data.split(fractions=(0.5, 0.5))
    with pytest.raises(ValueError, match="task must be one of"):
        load_audiomnist(mini, task="speaker")
    with pytest.raises(DatasetError, match="only 2 speaker"):
        split_speakers({1: "male", 2: "female"})
    with pytest.raises(DatasetError, match="only 2 speaker"):
        split_speakers({1: "male", 2: "female", 3: "male"}, task="sex")  # balanced: one of each


def test_becker_preprocess_resamples_and_pads_at_a_random_offset():
    clip = tone(0.5)  # 24000 samples at 48 kHz -> 4000 at 8 kHz
    first = becker_preprocess(clip, np.random.default_rng(0))
    assert first.shape == (8000,) and first.dtype == np.float32
    nonzero = np.flatnonzero(np.abs(first) > 1e-4)
    assert nonzero[-1] - nonzero[0] < 4000 and 0 <= nonzero[0] < 4000
    assert np.array_equal(first, becker_preprocess(clip, np.random.default_rng(0)))
    offsets = {int(np.flatnonzero(np.abs(becker_preprocess(clip, np.random.default_rng(s))) > 1e-4)[0])
               for s in range(5)}
    assert len(offsets) > 1
    assert becker_preprocess(tone(1.0), np.random.default_rng(0)).shape == (8000,)  # exactly 1 s: no padding
    with pytest.raises(AudioError, match="do not fit the 8000-sample input"):
        becker_preprocess(tone(1.2), np.random.default_rng(0))


# ---- refusals: each names its file (and line), one line each ----------------------------------


def _wav(path: Path, data=None, rate: int = 48000) -> None:
    sf.write(path, tone() if data is None else data, rate, subtype="PCM_16")


def _meta_with(**changes):
    def change(root: Path) -> None:
        meta = json.loads(json.dumps(META))
        for key, value in changes.items():
            speaker, name = key.split("__")
            meta[speaker][name.replace("_", " ")] = value
        write_meta(root, meta)
    return change


def _drop_gender(root: Path) -> None:
    meta = json.loads(json.dumps(META))
    del meta["02"]["gender"]
    write_meta(root, meta)


REFUSALS = [
    # (case, change to a good miniature, file named (relative), line, message part)
    ("no data folder", lambda r: shutil.rmtree(r / "data"), "data", None, "folder not found"),
    ("no meta file", lambda r: (r / "data" / META_FILE).unlink(), f"data/{META_FILE}", None, "file not found"),
    ("bad json", lambda r: (r / "data" / META_FILE).write_text('{\n  "01": {"gender": "male",}\n}'),
     f"data/{META_FILE}", 2, "not valid JSON: Expecting property name enclosed in double quotes (column 27)"),
    ("not an object", lambda r: (r / "data" / META_FILE).write_text("[1, 2]"), f"data/{META_FILE}", None,
     "expected a JSON object keyed by speaker number, found an array"),
    ("folder without meta", lambda r: (r / "data" / "07").mkdir() or _wav(r / "data" / "07" / "0_07_0.wav"),
     "data/07", None, f"speaker 07 has no entry in "),
    ("unknown gender", _meta_with(**{"02__gender": "diverse"}), f"data/{META_FILE}", 11,
     "speaker '02': gender 'diverse' is neither male nor female"),
    ("no gender", _drop_gender, f"data/{META_FILE}", 11, "speaker '02': no 'gender' field"),
    ("speaker twice", lambda r: (r / "data" / META_FILE).write_text(
        '{\n "01": {"gender": "male"},\n "1": {"gender": "male"}\n}'), f"data/{META_FILE}", 3,
     "speaker '1': listed twice (also as '01')"),
    ("key not a number", lambda r: (r / "data" / META_FILE).write_text('{"01": {"gender": "male"}, "x": {}}'),
     f"data/{META_FILE}", 1, "speaker 'x': the key is not a speaker number"),
    ("bad name", lambda r: _wav(r / "data" / "01" / "zero_01_0.wav"), "data/01/zero_01_0.wav", None,
     "name is not digit_speaker_repetition.wav (e.g. 0_01_0.wav)"),
    ("speaker differs", lambda r: _wav(r / "data" / "01" / "0_02_5.wav"), "data/01/0_02_5.wav", None,
     "speaker 02 in the name, but the file is in speaker folder 01"),
    ("digit out of range", lambda r: _wav(r / "data" / "01" / "12_01_0.wav"), "data/01/12_01_0.wav", None,
     "digit 12 is outside 0-9"),
    ("repeated take", lambda r: _wav(r / "data" / "01" / "0_01_00.wav"), "data/01/0_01_00.wav", None,
     "digit 0, repetition 0 again (also 0_01_0.wav)"),
    ("empty wav", lambda r: (r / "data" / "01" / "3_01_0.wav").write_bytes(b""), "data/01/3_01_0.wav", None,
     "file is empty (0 bytes)"),
    ("not a wav", lambda r: (r / "data" / "01" / "3_01_0.wav").write_bytes(b"not audio at all" * 8),
     "data/01/3_01_0.wav", None, "cannot decode audio"),
    ("wrong rate", lambda r: _wav(r / "data" / "02" / "4_02_0.wav", tone(rate=44100), 44100),
     "data/02/4_02_0.wav", None, "sample rate 44100 Hz; AudioMNIST is recorded at 48000 Hz"),
    ("speaker folder twice", lambda r: (r / "data" / "1").mkdir() or _wav(r / "data" / "1" / "0_01_0.wav"),
     "data/1", None, "a second folder for speaker 1 (also 01)"),
    ("stray folder", lambda r: (r / "data" / "extra").mkdir(), "data/extra", None, "not a speaker folder"),
    ("empty speaker folder", lambda r: (r / "data" / "05").mkdir(), "data/05", None,
     "no recordings (.wav files) in this speaker folder"),
]


@pytest.mark.parametrize(("change", "named", "line", "problem"), [case[1:] for case in REFUSALS],
                         ids=[case[0] for case in REFUSALS])
def test_each_malformed_case_is_one_line_naming_its_file(tmp_path, change, named, line, problem):
    root = make_audiomnist(tmp_path, speakers=(1, 2), repetitions=1)
    change(root)
    with pytest.raises(DatasetError) as info:
        load_audiomnist(root)
    message = str(info.value)
    assert "\n" not in message
    path = root / named
    where = f"{path}, line {line}" if line is not None else f"{path}"
    assert message.startswith(f"{where}: "), message
    assert problem in message, message
    assert info.value.path == path and info.value.line == line


def test_every_problem_is_refused_together(tmp_path):
    root = make_audiomnist(tmp_path, speakers=(1, 2), repetitions=1)
    _wav(root / "data" / "01" / "12_01_0.wav")
    _wav(root / "data" / "02" / "4_02_0.wav", tone(rate=16000), 16000)
    (root / "data" / "09").mkdir()
    _wav(root / "data" / "09" / "0_09_0.wav")
    with pytest.raises(Refusals) as info:
        load_audiomnist(root)
    lines = str(info.value).splitlines()
    assert lines[0] == "3 problems:"
    assert any("12_01_0.wav: digit 12" in line for line in lines)
    assert any("4_02_0.wav: sample rate 16000 Hz" in line for line in lines)
    assert any(line.strip().startswith(f"{root / 'data' / '09'}: speaker 09 has no entry") for line in lines)


def test_a_corpus_at_the_wrong_rate_lists_the_first_twenty(tmp_path):
    write_meta(tmp_path, META)
    for speaker in (1, 2):
        folder = tmp_path / "data" / f"{speaker:02d}"
        folder.mkdir()
        for digit in range(10):
            for rep in range(2):
                _wav(folder / f"{digit}_{speaker:02d}_{rep}.wav", tone(0.01, 8000), 8000)
    with pytest.raises(Refusals) as info:
        load_audiomnist(tmp_path)
    assert str(info.value).splitlines()[0] == "20 problems (the first 20 of 40 shown):"
    assert len(str(info.value).splitlines()) == 21 and len(info.value.errors) == 40
