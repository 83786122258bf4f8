"""The PhysioNet/CinC 2016 reader on miniatures in its layout: training-x folders of 2000 Hz wavs, WFDB
headers, a header-less REFERENCE.csv and the optional signal-quality file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from midlevel.datasets import DatasetError
from midlevel.datasets.physionet2016 import load_physionet2016, read_wfdb_header
from midlevel.errors import Refusals

#: database -> [(record, label, quality, samples)]; training-a's first records also list an ECG lead
DATABASES = {
    "a": [(f"a{i:04d}", 1 if i % 3 == 0 else -1, i % 5 != 0, 1000 + 10 * i) for i in range(1, 21)],
    "b": [(f"b{i:04d}", 1 if i % 4 == 0 else -1, True, 1200 + 10 * i) for i in range(1, 13)],
}


def pcg(samples: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(samples)).astype(np.float32)


def header_text(name: str, samples: int, *, signals: int = 1, fs="2000") -> str:
    lines = [f"{name} {signals} {fs} {samples}", f"{name}.wav 16+44 1 16 0 0 0 0 PCG"]
    if signals == 2:
        lines.append(f"{name}.dat 16 1 16 0 0 0 0 ECG")
    return "\n".join(lines) + "\n"


def make_physionet(root: Path, databases=DATABASES) -> Path:
    for db, rows in databases.items():
        folder = root / f"training-{db}"
        folder.mkdir(parents=True, exist_ok=True)
        for k, (name, _, _, samples) in enumerate(rows):
            sf.write(folder / f"{name}.wav", pcg(samples, k), 2000, subtype="PCM_16")
            (folder / f"{name}.hea").write_text(header_text(name, samples, signals=2 if db == "a" and k < 3 else 1))
        (folder / "REFERENCE.csv").write_text("".join(f"{n},{label}\n" for n, label, _, _ in rows))
        if db == "a":  # two columns: record,quality
            (folder / "REFERENCE-SQI.csv").write_text("".join(f"{n},{int(q)}\n" for n, _, q, _ in rows))
        else:  # the updated annotations' three columns: record,label,quality
            (folder / "REFERENCE_withSQI.csv").write_text("".join(f"{n},{lab},{int(q)}\n" for n, lab, q, _ in rows))
        (folder / "RECORDS").write_text("".join(f"{n}\n" for n, *_ in rows))  # as published; not read
    return root


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    return make_physionet(tmp_path_factory.mktemp("physionet"))


def test_records_labels_quality_and_durations(mini):
    data = load_physionet2016(mini)
    assert len(data) == 32 and data.databases == ["a", "b"]
    a3 = data.record("a0003")
    assert (a3.database, a3.label, a3.raw_label, a3.n_signals) == ("a", "abnormal", 1, 2)
    assert a3.path == mini / "training-a" / "a0003.wav" and a3.header == mini / "training-a" / "a0003.hea"
    assert a3.n_samples == 1030 and a3.sample_rate == 2000 and a3.duration == pytest.approx(0.515)
    a1 = data.record("a0001")
    assert (a1.label, a1.raw_label, a1.quality) == ("normal", -1, 1)
    assert data.record("a0005").quality == 0 and data.record("b0004").label == "abnormal"
    frame = data.frame()
    assert frame.shape[0] == 32 and frame.loc["b0012", "database"] == "b"
    assert (frame["label"] == "abnormal").sum() == 6 + 3
    assert frame["quality"].sum() == 32 - 4


def test_stratified_split_is_recording_disjoint_per_database_and_seeded(mini):
    data = load_physionet2016(mini, split_seed=3)
    names = [n for part in data.splits.values() for n in part]
    assert sorted(names) == sorted(r.name for r in data.records) and len(names) == len(set(names))
    by_name = {r.name: r for r in data.records}
    for db, rows in DATABASES.items():
        for raw in (-1, 1):
            stratum = [n for n, label, _, _ in rows if label == raw]
            counts = {k: sum(by_name[n].database == db and by_name[n].raw_label == raw for n in v)
                      for k, v in data.splits.items()}
            assert sum(counts.values()) == len(stratum)
            assert abs(counts["train"] - 0.7 * len(stratum)) < 1  # each stratum shared by the fractions
    assert load_physionet2016(mini, split_seed=3, check_audio=False).splits == data.splits
    assert any(data.split(split_seed=s) != data.splits for s in range(4, 9))
    assert data.frame().loc[data.splits["val"][0], "split"] == "val"


def test_leave_one_database_out(mini):
    data = load_physionet2016(mini, held_out="b", fractions=(0.6, 0.2, 0.2))
    assert sorted(data.splits["test"]) == [n for n, *_ in DATABASES["b"]]
    rest = data.splits["train"] + data.splits["val"]
    assert sorted(rest) == [n for n, *_ in DATABASES["a"]]
    assert len(data.splits["val"]) == 3 + 1  # training-a's 14 normal and 6 abnormal records at 0.6 : 0.2
    assert data.split(held_out="training-b", fractions=(0.6, 0.2, 0.2)) == data.splits
    with pytest.raises(ValueError, match=r"held_out must be one of the databases found \['a', 'b'\]"):
        data.split(held_out="e")


def test_one_training_folder_as_root(mini):
    data = load_physionet2016(mini / "training-b")
    assert data.databases == ["b"] and len(data) == 12


def test_wfdb_header_forms(tmp_path):
    path = tmp_path / "a0001.hea"
    path.write_text("# comment\n\na0001 2 2000/1000(0) 71332 12:00:00\na0001.wav 16+44 1 16 0 0 0 0 PCG\n")
    assert read_wfdb_header(path) == (2, 2000, 71332, 3)
    path.write_text("a0001 1 2000.0 10\n")
    assert read_wfdb_header(path) == (1, 2000, 10, 1)


# ---- refusals: each names its file (and line), one line each ----------------------------------


def _write(relative: str, text: str):
    return lambda root: (root / relative).write_text(text)


def _append(relative: str, text: str):
    def change(root: Path) -> None:
        with open(root / relative, "a") as fh:
            fh.write(text)
    return change


def _wav(relative: str, samples: int = 1000, rate: int = 2000):
    return lambda root: sf.write(root / relative, pcg(samples), rate, subtype="PCM_16")


def _both(*changes):
    def change(root: Path) -> None:
        for c in changes:
            c(root)
    return change


SMALL = {"a": DATABASES["a"][:4], "b": DATABASES["b"][:3]}  # a0001 (1010 samples) ... a0004, b0001 ... b0003
REF_A, SQI_A, SQI_B = "training-a/REFERENCE.csv", "training-a/REFERENCE-SQI.csv", "training-b/REFERENCE_withSQI.csv"

REFUSALS = [
    # (case, change to a good miniature, file named (relative), line, message part)
    ("no training folders", lambda r: [p.rename(r / p.name.replace("training-", "set-")) for p in r.iterdir()],
     ".", None, "no training-* folders"),
    ("no REFERENCE.csv", lambda r: (r / REF_A).unlink(), REF_A, None, "file not found"),
    ("empty REFERENCE.csv", _write(REF_A, "\n"), REF_A, None, "file is empty"),
    ("label 0", _write(REF_A, "a0001,-1\na0002,-1\na0003,0\na0004,-1\n"), REF_A, 3,
     "label '0' is not -1 (normal) or 1 (abnormal)"),
    ("label missing", _write(REF_A, "a0001,-1\na0002\na0003,1\na0004,-1\n"), REF_A, 2,
     "1 field(s); expected 'record,label' (no header row), e.g. a0001,-1"),
    ("row without wav", _both(_append(REF_A, "a0009,1\n"), _append(SQI_A, "a0009,1\n")), REF_A, 5,
     "record 'a0009' has no a0009.wav in"),
    ("wav without row", _wav("training-a/a0007.wav"), "training-a/a0007.wav", None,
     "no row for 'a0007' in"),
    ("duplicate row", _append(REF_A, "a0002,-1\n"), REF_A, 5, "duplicate record 'a0002' (first on line 2)"),
    ("record in two databases", _both(_append("training-b/REFERENCE.csv", "a0001,-1\n"), _wav("training-b/a0001.wav"),
                                      _write("training-b/a0001.hea", "a0001 1 2000 1000\n"),
                                      _append(SQI_B, "a0001,-1,1\n")),
     "training-b/REFERENCE.csv", 4, "duplicate record 'a0001' (first on "),
    ("fs not 2000", _write("training-a/a0002.hea", "a0002 1 4000 1020\n"), "training-a/a0002.hea", 1,
     "sampling frequency 4000 Hz; the Challenge 2016 recordings are 2000 Hz"),
    ("samples disagree", _write("training-a/a0002.hea", "# PCG\na0002 1 2000 999\n"), "training-a/a0002.hea", 2,
     "states 999 samples but a0002.wav holds 1020"),
    ("header too short", _write("training-a/a0002.hea", "a0002 1 2000\n"), "training-a/a0002.hea", 1,
     "record line 'a0002 1 2000' has 3 field(s); expected 'record n_signals fs n_samples'"),
    ("header of another record", _write("training-a/a0002.hea", "a0003 1 2000 1020\n"), "training-a/a0002.hea", 1,
     "the header names record 'a0003', not 'a0002'"),
    ("fs not a number", _write("training-a/a0002.hea", "a0002 1 fast 1020\n"), "training-a/a0002.hea", 1,
     "sampling frequency 'fast' is not a positive number"),
    ("samples not a number", _write("training-a/a0002.hea", "a0002 1 2000 -5\n"), "training-a/a0002.hea", 1,
     "number of samples '-5' is not a whole number"),
    ("empty header", _write("training-a/a0002.hea", "# only a comment\n"), "training-a/a0002.hea", None,
     "header is empty"),
    ("no header", lambda r: (r / "training-a" / "a0002.hea").unlink(), "training-a/a0002.hea", None,
     "header file not found"),
    ("wav at another rate", _wav("training-a/a0002.wav", 1020, 4000), "training-a/a0002.wav", None,
     "sample rate 4000 Hz; the Challenge 2016 recordings are 2000 Hz"),
    ("wav unreadable", _write("training-a/a0002.wav", "not a wav file at all"), "training-a/a0002.wav", None,
     "cannot decode audio"),
    ("quality 2", _write(SQI_A, "a0001,1\na0002,2\na0003,1\na0004,1\n"), SQI_A, 2,
     "quality '2' is not 0 (unsure/poor) or 1 (good)"),
    ("quality row for no record", _append(SQI_A, "a0042,1\n"), SQI_A, 5, "record 'a0042' is not in REFERENCE.csv"),
    ("quality missing", _write(SQI_A, "a0001,1\na0002,1\n"), SQI_A, None,
     "no quality for 2 record(s) of REFERENCE.csv: a0003, a0004"),
    ("quality twice", _append(SQI_A, "a0001,0\n"), SQI_A, 5, "duplicate record 'a0001' (first on line 1)"),
    ("quality label disagrees", _write(SQI_B, "b0001,-1,1\nb0002,1,1\nb0003,-1,1\n"), SQI_B, 2,
     "label 1 for 'b0002', but REFERENCE.csv says -1 (line 2)"),
]


@pytest.mark.parametrize(("change", "named", "line", "problem"), [case[1:] for case in REFUSALS],
                         ids=[case[0] for case in REFUSALS])
def test_each_malformed_case_is_one_line_naming_its_file(tmp_path, change, named, line, problem):
    root = make_physionet(tmp_path / "data", SMALL)
    change(root)
    with pytest.raises(DatasetError) as info:
        load_physionet2016(root)
    message = str(info.value)
    assert "\n" not in message
    path = root / named if named != "." else root
    where = f"{path}, line {line}" if line is not None else f"{path}"
    assert message.startswith(f"{where}: "), message
    assert problem in message, message
    assert info.value.line == line


def test_every_problem_is_refused_together(tmp_path):
    root = make_physionet(tmp_path, SMALL)
    _write(REF_A, "a0001,-1\na0002,-1\na0003,2\na0004,-1\n")(root)  # a0003's row refused: its wav is not re-reported
    _write("training-b/b0002.hea", "b0002 1 1000 1220\n")(root)
    _wav("training-b/b0007.wav")(root)
    with pytest.raises(Refusals) as info:
        load_physionet2016(root)
    lines = str(info.value).splitlines()
    assert lines[0] == "3 problems:" and len(info.value.errors) == 3
    assert "REFERENCE.csv, line 3: label '2'" in lines[1]
    assert "b0007.wav: no row for 'b0007'" in lines[2]
    assert "b0002.hea, line 1: sampling frequency 1000 Hz" in lines[3]
