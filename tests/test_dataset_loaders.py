"""Readers for the Mid-level and Soundtracks layouts, on small files written in those layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from midlevel.concepts import EMOTIONS, MIDLEVEL_FEATURES
from midlevel.datasets.errors import DatasetError
from midlevel.datasets.mid_level import (
    ATONALITY_MAPPINGS,
    load_midlevel,
    read_annotations,
    read_metadata,
)
from midlevel.datasets.soundtracks import load_soundtracks, read_ratings

RAW_HEADER = "song_id, melody, articulation, rhythm_complexity, rhythm_stability, dissonance, atonality, mode"
ROWS = ["1,5,2,3,4,6,2,3", "2,6.5,4,3,2,1,9,10", "3,1,10,7.25,8,2,5,5"]
EMOTION_ROW = "1.5,2,3,4,5,6,7,8"


def write(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def assert_error(info, path: Path, line: int | None = None, column: str | None = None) -> str:
    """The message names the file, and the line and column where given."""
    message = str(info.value)
    assert str(path) in message
    assert info.value.line == line
    if line is not None:
        assert f"line {line}" in message
    if column is not None:
        assert info.value.column.strip() == column
        assert column in message
    return message


# ---- Mid-level annotations -------------------------------------------------------------------


def test_raw_headers_with_spaces_map_to_canonical_order(tmp_path):
    ratings = read_annotations(write(tmp_path / "a.csv", RAW_HEADER, *ROWS))
    assert list(ratings.columns) == list(MIDLEVEL_FEATURES)
    assert ratings.index.name == "song_id"
    assert list(ratings.index) == ["1", "2", "3"]
    assert all(dtype == np.float64 for dtype in ratings.dtypes)
    assert ratings.loc["2", "melodiousness"] == 6.5
    assert ratings.loc["3", "rhythm_complexity"] == 7.25  # raw order differs from canonical
    assert ratings.loc["3", "rhythm_stability"] == 8
    assert ratings.loc["2", "minorness"] == 10


def test_canonical_headers_any_case_and_order_read_the_same(tmp_path):
    raw = read_annotations(write(tmp_path / "raw.csv", RAW_HEADER, *ROWS))
    header = "Minorness,Tonal Stability,DISSONANCE,rhythm_stability,Rhythm-Complexity,articulation,melodiousness,Song ID,genre"
    reordered = [",".join(row.split(",")[:0:-1] + [row.split(",")[0], "pop"]) for row in ROWS]
    canonical = read_annotations(write(tmp_path / "canon.csv", header, *reordered))
    pd.testing.assert_frame_equal(raw, canonical)  # extra 'genre' column dropped


def test_atonality_rename_keeps_values_and_invert_flips_them(tmp_path):
    path = write(tmp_path / "a.csv", RAW_HEADER, *ROWS)
    assert set(ATONALITY_MAPPINGS) == {"rename", "invert"}
    renamed = read_annotations(path)
    inverted = read_annotations(path, atonality="invert")
    assert list(renamed["tonal_stability"]) == [2, 9, 5]
    assert list(inverted["tonal_stability"]) == [9, 2, 6]
    pd.testing.assert_frame_equal(renamed.drop(columns="tonal_stability"), inverted.drop(columns="tonal_stability"))
    with pytest.raises(ValueError, match="atonality must be one of"):
        read_annotations(path, atonality="flip")


def test_invert_leaves_a_canonical_tonal_stability_column_alone(tmp_path):
    header = RAW_HEADER.replace("atonality", "tonal_stability")
    path = write(tmp_path / "a.csv", header, *ROWS)
    assert list(read_annotations(path, atonality="invert")["tonal_stability"]) == [2, 9, 5]


def test_two_headers_for_one_feature_is_an_error(tmp_path):
    path = write(tmp_path / "a.csv", RAW_HEADER + ",melodiousness", *(r + ",1" for r in ROWS))
    with pytest.raises(DatasetError, match="both mean 'melodiousness'") as info:
        read_annotations(path)
    assert_error(info, path, line=1)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DatasetError, match="file not found") as info:
        read_annotations(tmp_path / "nope.csv")
    assert_error(info, tmp_path / "nope.csv")
    with pytest.raises(DatasetError, match="dataset folder not found"):
        load_midlevel(tmp_path / "absent")
    with pytest.raises(DatasetError, match="annotations.csv: file not found"):
        load_midlevel(tmp_path)


def test_empty_file_and_header_only(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("\n  \n")
    with pytest.raises(DatasetError, match="file is empty") as info:
        read_annotations(empty)
    assert_error(info, empty)
    header_only = write(tmp_path / "h.csv", RAW_HEADER)
    with pytest.raises(DatasetError, match="no data rows") as info:
        read_annotations(header_only)
    assert_error(info, header_only, line=1)


def test_missing_columns_lists_found_and_needed(tmp_path):
    path = write(tmp_path / "a.csv", "song_id,melody,articulation", "1,2,3")
    with pytest.raises(DatasetError) as info:
        read_annotations(path)
    message = assert_error(info, path, line=1)
    assert "missing column(s) ['rhythm_stability'" in message
    assert "found ['song_id', 'melody', 'articulation']" in message
    assert "needed ['song_id', 'melodiousness'" in message
    assert "'atonality' is accepted for 'tonal_stability'" in message


@pytest.mark.parametrize(
    ("cell", "problem"),
    [
        ("abc", "'abc' is not a number"),
        ("", "missing value"),
        ("NaN", "missing value 'NaN'"),
        ("0", "0 is outside the scale 1-10"),
        ("10.5", "10.5 is outside the scale 1-10"),
    ],
)
def test_bad_rating_names_line_and_column(tmp_path, cell, problem):
    rows = list(ROWS)
    rows[1] = rows[1].replace("1,9,10", f"{cell},9,10")  # dissonance of song 2, on line 3
    path = write(tmp_path / "a.csv", RAW_HEADER, *rows)
    with pytest.raises(DatasetError) as info:
        read_annotations(path)
    message = assert_error(info, path, line=3, column="dissonance")
    assert problem in message


def test_all_bad_values_are_counted_and_lines_match_an_editor(tmp_path):
    # a blank line (line 3) must not shift the reported line numbers
    path = write(tmp_path / "a.csv", RAW_HEADER, ROWS[0], "", "2,11,4,3,2,1,9,10", "3,12,4,3,2,1,9,10")
    with pytest.raises(DatasetError, match=r"11 is outside the scale 1-10 \(1 more bad value") as info:
        read_annotations(path)
    assert_error(info, path, line=4, column="melody")


def test_duplicate_and_missing_ids(tmp_path):
    path = write(tmp_path / "a.csv", RAW_HEADER, *ROWS, ROWS[0])
    with pytest.raises(DatasetError, match=r"duplicate id '1' \(first on line 2\)") as info:
        read_annotations(path)
    assert_error(info, path, line=5, column="song_id")
    path = write(tmp_path / "b.csv", RAW_HEADER, *ROWS, ",1,1,1,1,1,1,1")
    with pytest.raises(DatasetError, match="missing id") as info:
        read_annotations(path)
    assert_error(info, path, line=5, column="song_id")


def test_too_many_fields_in_a_row(tmp_path):
    path = write(tmp_path / "a.csv", RAW_HEADER, ROWS[0], "2,6,5,4,3,2,1,9,10")
    with pytest.raises(DatasetError, match="9 fields but the header has 8") as info:
        read_annotations(path)
    assert_error(info, path, line=3)


def test_semicolon_annotations_report_the_wrong_separator(tmp_path):
    path = write(tmp_path / "a.csv", RAW_HEADER.replace(",", ";"), *(r.replace(",", ";") for r in ROWS))
    with pytest.raises(DatasetError, match="looks semicolon-separated but is read as comma-separated") as info:
        read_annotations(path)
    assert_error(info, path, line=1)


# ---- Mid-level metadata ----------------------------------------------------------------------


def test_metadata_semicolons_and_song_id_with_a_space(tmp_path):
    path = write(
        tmp_path / "metadata.csv",
        "song id;Artist;Source;ID at file source;Release Year ",
        "1;Earth, Wind & Fire;jamendo;0042;1999",
        "2;  Björk ;soundtracks;;",
    )
    meta = read_metadata(path)
    assert meta.index.name == "song_id" and list(meta.index) == ["1", "2"]
    assert list(meta.columns) == ["artist", "source", "source_id", "release_year"]
    assert meta.loc["1", "artist"] == "Earth, Wind & Fire"
    assert meta.loc["1", "source_id"] == "0042"  # ids kept as text, leading zeros intact
    assert meta.loc["2", "artist"] == "Björk"
    assert pd.isna(meta.loc["2", "source_id"])


def test_metadata_in_latin1_is_read(tmp_path):
    path = tmp_path / "metadata.csv"
    path.write_bytes("song id;Artist\n1;Björk\n".encode("latin-1"))
    assert read_metadata(path).loc["1", "artist"] == "Björk"


def test_metadata_read_with_commas_reports_the_wrong_separator(tmp_path):
    path = write(tmp_path / "metadata.csv", "song id,Artist,Source", "1,A,x")
    with pytest.raises(DatasetError, match="looks comma-separated but is read as semicolon-separated") as info:
        read_metadata(path)
    assert_error(info, path, line=1)


def test_metadata_duplicate_ids(tmp_path):
    path = write(tmp_path / "metadata.csv", "song id;Artist", "1;A", "1;B")
    with pytest.raises(DatasetError, match="duplicate id") as info:
        read_metadata(path)
    assert_error(info, path, line=3, column="song id")


# ---- Mid-level dataset -----------------------------------------------------------------------


def make_midlevel(root: Path, artists: list[str], *, audio: list[int] = (), ext: str = "mp3") -> Path:
    rows = [f"{i},5,5,5,5,5,5,5" for i in range(1, len(artists) + 1)]
    write(root / "metadata_annotations" / "annotations.csv", RAW_HEADER, *rows)
    meta = [f"{i};{artist};src;{i}" for i, artist in enumerate(artists, start=1)]
    write(root / "metadata_annotations" / "metadata.csv", "song id;Artist;Source;ID at file source", *meta)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    for i in audio:
        (root / "audio" / f"{i}.{ext}").write_bytes(b"")
    return root


def test_missing_audio_lists_every_missing_song(tmp_path):
    data = load_midlevel(make_midlevel(tmp_path, ["a"] * 6, audio=[1, 3, 4]))
    assert data.audio_ext == "mp3"
    assert data.audio_path(3) == tmp_path / "audio" / "3.mp3"
    assert data.missing_audio() == ["2", "5", "6"]
    with pytest.raises(KeyError, match="'99'"):
        data.audio_path("99")


def test_audio_extension_detected_or_given(tmp_path):
    root = make_midlevel(tmp_path, ["a"] * 3, audio=[1, 2, 3], ext="wav")
    (root / "audio" / "notes.txt").write_text("not audio")
    assert load_midlevel(root).audio_ext == "wav"
    assert load_midlevel(root).missing_audio() == []
    given = load_midlevel(root, audio_ext=".flac")
    assert given.audio_ext == "flac" and given.missing_audio() == ["1", "2", "3"]


def test_metadata_is_optional(tmp_path):
    root = make_midlevel(tmp_path, ["a"] * 3)
    (root / "metadata_annotations" / "metadata.csv").unlink()
    data = load_midlevel(root, atonality="invert")
    assert data.metadata is None
    assert list(data.ratings["tonal_stability"]) == [6, 6, 6]


ARTISTS = ["x"] * 9 + ["y"] * 5 + ["z"] * 4 + [f"solo{i}" for i in range(12)] + ["X ", "Y"]


def test_artist_split_is_disjoint_covering_and_deterministic(tmp_path):
    data = load_midlevel(make_midlevel(tmp_path, ARTISTS))
    split = data.split(seed=3)
    assert set(split) == {"train", "val", "test"}
    songs = [s for part in split.values() for s in part]
    assert sorted(songs) == sorted(data.ratings.index) and len(songs) == len(set(songs))
    artist_of = data.metadata["artist"].str.casefold()
    owners = {a: {name for name, part in split.items() if artist_of[part].eq(a).any()} for a in set(artist_of)}
    assert all(len(parts) == 1 for parts in owners.values())  # 'X ' is read as 'x' and stays with it
    assert all(split.values())
    assert abs(len(split["train"]) - 0.8 * len(songs)) <= 4
    assert data.split(seed=3) == split
    assert any(data.split(seed=s) != split for s in range(1, 6))


def test_split_does_not_depend_on_file_row_order(tmp_path):
    first = load_midlevel(make_midlevel(tmp_path / "a", ARTISTS)).split(seed=1)
    shuffled = load_midlevel(make_midlevel(tmp_path / "b", ARTISTS))
    shuffled.ratings = shuffled.ratings.iloc[::-1]
    second = shuffled.split(seed=1)
    assert {k: sorted(v) for k, v in first.items()} == {k: sorted(v) for k, v in second.items()}


def test_split_per_song_without_artists(tmp_path):
    root = make_midlevel(tmp_path, ["a"] * 20)
    (root / "metadata_annotations" / "metadata.csv").unlink()
    data = load_midlevel(root)
    with pytest.warns(UserWarning, match="splitting per song"):
        split = data.split()
    assert [len(split[k]) for k in ("train", "val", "test")] == [16, 2, 2]
    assert data.split(by=None) == split


def test_split_errors(tmp_path):
    data = load_midlevel(make_midlevel(tmp_path, ["a"] * 5 + ["b"] * 5))
    with pytest.raises(DatasetError, match="only 2 group.*3 ways") as info:
        data.split()
    assert str(tmp_path) in str(info.value)
    assert sorted(map(len, data.split((0.5, 0.5, 0.0)).values())) == [0, 5, 5]
    with pytest.raises(ValueError, match="summing to 1"):
        data.split((0.8, 0.1))
    with pytest.raises(ValueError, match="summing to 1"):
        data.split((0.8, 0.3, -0.1))


# ---- Soundtracks -----------------------------------------------------------------------------


SET1_HEADER = "number,valence,energy,tension,anger,fear,happy,sad,tender,TARGET"


def test_soundtracks_set1_layout(tmp_path):
    path = write(tmp_path / "mean_ratings_set1.csv", SET1_HEADER, f"1,{EMOTION_ROW},HAPPY", f"2,{EMOTION_ROW},SAD")
    ratings = read_ratings(path)
    assert ratings.index.name == "number" and ratings.index.dtype == np.int64
    assert list(ratings.index) == [1, 2]
    assert list(ratings.columns) == [*EMOTIONS, "target"]
    assert all(ratings[e].dtype == np.float64 for e in EMOTIONS)
    assert ratings.loc[1, "valence"] == 1.5 and ratings.loc[2, "target"] == "SAD"


def test_soundtracks_number_spellings_order_and_set2_extras(tmp_path):
    header = " Number ,Tender,SAD,Happy,Fear,Anger,Tension,Energy,Valence,TARGET,Beauty,Liking"
    path = write(tmp_path / "mean_ratings_set2.csv", header, "007,8,7,6,5,4,3,2,1.5,3,6.5,7", "8,8,7,6,5,4,3,2,1,4,,2")
    ratings = read_ratings(path)
    assert list(ratings.index) == [7, 8]
    assert list(ratings.columns) == [*EMOTIONS, "target", "beauty", "liking"]
    assert list(ratings.loc[7, list(EMOTIONS)]) == [1.5, 2, 3, 4, 5, 6, 7, 8]
    assert ratings["beauty"].dtype == np.float64 and np.isnan(ratings.loc[8, "beauty"])
    assert list(ratings["target"]) == [3, 4]


def test_soundtracks_semicolons_with_decimal_commas_and_tabs(tmp_path):
    comma = read_ratings(write(tmp_path / "c.csv", SET1_HEADER, f"1,{EMOTION_ROW},1"))
    semi = read_ratings(write(tmp_path / "s.csv", SET1_HEADER.replace(",", ";"), "1;1,5;2;3;4;5;6;7;8;1"))
    tab = read_ratings(write(tmp_path / "t.tsv", SET1_HEADER.replace(",", "\t"), f"1\t{EMOTION_ROW.replace(',', chr(9))}\t1"))
    pd.testing.assert_frame_equal(comma, semi)
    pd.testing.assert_frame_equal(comma, tab)


@pytest.mark.parametrize(
    ("row", "column", "problem"),
    [
        (f"2,{EMOTION_ROW.replace('8', '9.5')},1", "tender", "9.5 is outside the scale 1-9"),
        (f"2,{EMOTION_ROW.replace('1.5', 'high')},1", "valence", "'high' is not a number"),
        (f"2,{EMOTION_ROW.replace('4', '')},1", "anger", "missing value"),
        ("2,1.5,2", "tension", "missing value"),  # a short row is padded, so the gap is named
        (f"2.5,{EMOTION_ROW},1", "number", "'2.5' is not a valid id"),
        (f"001,{EMOTION_ROW},1", "number", "duplicate id '001' (first on line 2)"),
    ],
)
def test_soundtracks_bad_rows_name_line_and_column(tmp_path, row, column, problem):
    path = write(tmp_path / "mean_ratings_set1.csv", SET1_HEADER, f"1,{EMOTION_ROW},1", row)
    with pytest.raises(DatasetError) as info:
        read_ratings(path)
    assert problem in assert_error(info, path, line=3, column=column)


def test_soundtracks_missing_columns(tmp_path):
    path = write(tmp_path / "r.csv", "id,valence,energy", "1,2,3")
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['number', 'tension'") as info:
        read_ratings(path)
    assert "found ['id', 'valence', 'energy']" in assert_error(info, path, line=1)


def test_soundtracks_spreadsheet_asks_for_csv(tmp_path):
    path = tmp_path / "mean_ratings_set1.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(DatasetError, match="save it as CSV") as info:
        load_soundtracks(tmp_path, ratings_file="mean_ratings_set1.xls")
    assert_error(info, path)


def test_load_soundtracks_audio_paths(tmp_path):
    write(tmp_path / "mean_ratings_set1.csv", SET1_HEADER, *(f"{n},{EMOTION_ROW},1" for n in (1, 2, 3)))
    default = load_soundtracks(tmp_path)
    assert default.audio_path(2) == tmp_path / "002.mp3"
    assert default.missing_audio() == [1, 2, 3]
    (tmp_path / "wav").mkdir()
    for n in (1, 3):
        (tmp_path / "wav" / f"clip_{n}.wav").write_bytes(b"")
    custom = load_soundtracks(tmp_path, audio_dir="wav", audio_ext=".wav", id_format="clip_{}")
    assert custom.audio_path(3) == tmp_path / "wav" / "clip_3.wav"
    assert custom.missing_audio() == [2]
    with pytest.raises(KeyError):
        custom.audio_path(4)
    with pytest.raises(ValueError, match="id_format"):
        load_soundtracks(tmp_path, id_format="{name}")
