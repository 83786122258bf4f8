"""Batch semantics of predict/explain: every input runs, bad ones become error records or one line each,
the exit code and a summary say which failed, and derived file names never collide."""

import json
import shutil

import pytest

import midlevel
from midlevel.cli import main, output_paths


@pytest.fixture()
def inputs(tmp_path):
    good = tmp_path / "a" / "song.flac"
    good.parent.mkdir()
    shutil.copy(midlevel.example_clip(), good)
    other = tmp_path / "b" / "song.flac"
    other.parent.mkdir()
    shutil.copy(midlevel.example_clip(), other)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    return good, other, empty, tmp_path / "missing.wav"


def test_json_keeps_every_record_and_exits_2_when_any_failed(inputs, capsys):
    good, other, empty, missing = inputs
    assert main(["predict", "--json", str(good), str(empty), str(other), str(missing)]) == 2
    captured = capsys.readouterr()
    records = json.loads(captured.out)
    assert [("error" in r) for r in records] == [False, True, False, True]
    assert records[0]["targets"] == records[2]["targets"]  # same audio, same result
    assert "empty" in records[1]["error"] and "no such file" in records[3]["error"]
    summary = captured.err.strip().splitlines()[-1]
    assert summary == f"midlevel: 2 of 4 input(s) failed: {empty}, {missing}"


def test_text_mode_runs_the_files_after_a_bad_one(inputs, capsys):
    good, other, empty, _ = inputs
    assert main(["explain", str(empty), str(good), str(other)]) == 2
    out = capsys.readouterr().out
    assert out.count("== ") == 2 and str(other) in out


def test_plots_of_same_named_inputs_never_overwrite_each_other(inputs, tmp_path, capsys):
    good, other, _, _ = inputs
    assert main(["explain", str(good), str(other), "--plot", str(tmp_path / "plots")]) == 0
    assert sorted(p.relative_to(tmp_path / "plots").as_posix() for p in (tmp_path / "plots").rglob("*.png")) == \
        ["a/song.png", "b/song.png"]
    assert output_paths(str(tmp_path / "one.png"), [str(good)], ".png") == {str(good): tmp_path / "one.png"}
    twice = output_paths(str(tmp_path / "p"), [str(good), str(good)], ".png")
    assert len(set(twice.values())) == 1  # a dict by input: the same input names the same file once
