"""Fine-tuning data: a ratings CSV (Mid-level layout or a generic file list) and its audio.

Two layouts, told apart by the id column:

- **Mid-level** (``song_id``): ``annotations.csv`` as in the Mid-level dataset, audio at
  ``<audio_dir>/<song_id>.<ext>`` (extension detected), artists from the semicolon-separated
  ``metadata.csv`` beside it when present. Raw headers (``melody``, ``atonality``, ``mode``)
  are renamed as ``read_annotations`` does by default.
- **Generic** (``file``): one row per audio file, its path relative to ``audio_dir``; an
  optional ``artist`` column groups rows for the split.

Every other column is a concept rating unless ``concept_columns`` names the concepts; target
ratings come from ``target_columns`` of the same file or from a second CSV with the same id
column (``number`` is accepted for ``song_id``, as Soundtracks rating files have it). Column
names are normalised as everywhere in ``midlevel.datasets`` ('Flow Score' -> ``flow_score``), and
those are the concept and target names the model gets. All of it goes through
``datasets.errors.Table``, so each bad cell is reported by file, line and column.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..audio import AudioError, file_length, load_audio
from ..datasets import RAW_FEATURE_NAMES, DatasetError, MidlevelDataset, read_metadata
from ..datasets.errors import Table, normalise_name, read_table
from ..datasets.mid_level import _detect_ext
from ..errors import MidlevelError, refuse
from ..ioutil import NO_SUCH_FILE, input_file_problem

ID_COLUMNS = ("file", "song_id")
GROUP_COLUMN = "artist"
METADATA_FILE = "metadata.csv"


@dataclass
class Annotations:
    """Rated clips ready to split: ids, audio paths, ratings in rating units, artist groups."""

    source: Path
    layout: str  # "midlevel" or "generic"
    audio_dir: Path
    ids: list[str]
    paths: list[Path]
    concepts: pd.DataFrame  # index: ids; one column per concept
    targets: pd.DataFrame | None  # index: ids; one column per target
    artists: pd.Series | None  # index: ids; None when no artist information exists
    files: list[Path]  # the annotation files read, for the run's fingerprint

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, ids: Sequence[str]) -> tuple[list[Path], np.ndarray, np.ndarray | None]:
        """Audio paths, concepts and targets of ``ids``, in that order."""
        position = {i: n for n, i in enumerate(self.ids)}
        rows = [position[i] for i in ids]
        targets = None if self.targets is None else self.targets.to_numpy(np.float64)[rows]
        return [self.paths[r] for r in rows], self.concepts.to_numpy(np.float64)[rows], targets

    def split(self, fractions: Sequence[float], seed: int) -> dict[str, list[str]]:
        """train/val/test ids: by artist when artists are known, else by file; same seed, same split."""
        metadata = None if self.artists is None else self.artists.to_frame(GROUP_COLUMN)
        dataset = MidlevelDataset(self.source, self.concepts, metadata, self.audio_dir, "")
        return dataset.split(fractions, seed=seed, by=GROUP_COLUMN if metadata is not None else None)


def _id_column(table: Table) -> str:
    found = [c for c in ID_COLUMNS if c in table.names]
    if len(found) != 1:
        problem = "has both" if found else "has neither"
        raise DatasetError(table.path, f"{problem} a 'file' column (generic layout: audio path relative to the "
                           f"audio folder) and a 'song_id' column (Mid-level layout); found {table.raw}",
                           line=table.header_line)
    return found[0]


def _id_parser(id_column: str):
    """File ids compare as normalised paths, so 'a.wav' and './a.wav' are one clip."""
    return os.path.normpath if id_column == "file" else str


def _ratings(table: Table, ids: list[str], columns: Sequence[str], scale: tuple[float, float] | None, what: str,
             hint: str = "", found: list[MidlevelError] | None = None) -> pd.DataFrame:
    """Checked numeric columns indexed by ``ids``; every bad cell of every column named (file, line, column),
    all in one ``Refusals``. ``scale`` None: any number (the scale is not known yet). With a ``found`` list,
    the problems go there instead and bad or missing cells are NaN, so that checking can go on."""
    problems: list[MidlevelError] = []
    missing = [n for n in columns if n not in table.names]
    if missing:
        try:
            table.require(tuple(missing))
        except DatasetError as exc:
            problems.append(exc)
    values = {}
    for name in columns:
        values[name] = np.full(len(ids), np.nan)
        if name in missing:
            continue
        try:
            values[name] = table.numbers(name, scale)
        except DatasetError as exc:
            problems.append(DatasetError(exc.path, f"{what} rating: {exc.problem}{'' if problems else hint}",
                                         line=exc.line, column=exc.column))  # the hint once
    if found is None:
        refuse(problems)
    else:
        found += problems
    return pd.DataFrame(values, index=pd.Index(ids, dtype=str))


def _names(columns: Sequence[str] | None) -> list[str]:
    return [normalise_name(c) for c in columns or ()]


def _targets_from_file(path: Path, id_column: str, ids: list[str], columns: list[str],
                       scale: tuple[float, float] | None) -> pd.DataFrame:
    table = read_table(path)
    if id_column == "song_id":
        table.rename({"number": "song_id"})
    table.require((id_column,))
    problems: list[MidlevelError] = []
    target_ids = _checked_ids(table, id_column, problems)
    columns = columns or [n for n in table.names if n != id_column]
    if not columns:
        raise DatasetError(path, "no target columns besides the id", line=table.header_line)
    try:
        frame = _ratings(table, target_ids, columns, scale, "target")
    except MidlevelError as exc:
        problems.append(exc)
    refuse(problems)  # raises when _ratings did
    absent = [i for i in ids if i not in frame.index]
    if absent:
        raise DatasetError(path, f"no target ratings for {len(absent)} annotated clip(s): {', '.join(absent)}")
    return frame.loc[ids]


def _checked_ids(table: Table, id_column: str, problems: list[MidlevelError]) -> list[str]:
    """The table's ids; when they are bad (duplicates, blanks), the problem goes to ``problems`` and the raw
    cells stand in, so the rest of the table is still checked in the same pass."""
    try:
        return [str(i) for i in table.ids(id_column, _id_parser(id_column))]
    except DatasetError as exc:
        problems.append(exc)
        return _raw_ids(table, id_column)


def _raw_ids(table: Table, id_column: str) -> list[str]:
    """The id cells as parsed, duplicates and blanks kept: to go on checking a table whose ids are bad."""
    parse = _id_parser(id_column)
    return [str(parse(c)) if c else "" for c in table.cells(id_column)]


def _artists(table: Table, layout: str, source: Path, ids: list[str]) -> tuple[pd.Series | None, Path | None]:
    if GROUP_COLUMN in table.names:
        return pd.Series([c or None for c in table.cells(GROUP_COLUMN)], index=ids, dtype=object), None
    metadata_file = source.parent / METADATA_FILE
    if layout == "midlevel" and metadata_file.is_file():
        metadata = read_metadata(metadata_file)
        if GROUP_COLUMN in metadata.columns:
            return metadata[GROUP_COLUMN].reindex(ids), metadata_file
    return None, None


def read_finetune_annotations(annotations: str | Path, audio_dir: str | Path, *,
                              concept_scale: tuple[float, float] | None, target_scale: tuple[float, float] | None,
                              concept_columns: Sequence[str] | None = None,
                              target_columns: Sequence[str] | None = None,
                              targets_file: str | Path | None = None,
                              found: list[MidlevelError] | None = None) -> Annotations:
    """Read and check ratings; audio files are located but not opened (see ``check_audio``).

    Every problem of the tables is found in one pass (``Refusals`` when there are several). A scale of
    None checks only that ratings are numbers (for a base model that could not be read). With a ``found``
    list, problems that leave the ids and columns known go there instead, and the ratings they concern are
    NaN: the audio can still be checked in the same run.
    """
    source, audio_dir = Path(annotations), Path(audio_dir)
    table = read_table(source)
    id_column = _id_column(table)
    layout = "generic" if id_column == "file" else "midlevel"
    if layout == "midlevel":
        table.rename(RAW_FEATURE_NAMES)
    problems: list[MidlevelError] = []
    ids = _checked_ids(table, id_column, problems)
    in_table_targets = [] if targets_file else _names(target_columns)
    if concept_columns:
        concepts, hint = _names(concept_columns), ""
    else:
        concepts = [n for n in table.names if n not in (id_column, GROUP_COLUMN, *in_table_targets)]
        hint = (" (every column but the id, 'artist' and target columns is read as a concept rating;"
                " name the concept columns to leave others out)")
    if not concepts:
        raise DatasetError(source, f"no concept columns besides the id; found {table.raw}", line=table.header_line)
    both = sorted(set(concepts) & set(in_table_targets))
    if both:
        problems.append(DatasetError(source, f"column(s) {both} named as both concepts and targets",
                                     line=table.header_line))
    concept_frame = _ratings(table, ids, concepts, concept_scale, "concept", hint, problems)
    files = [source]
    targets = None
    try:
        if targets_file:
            files.append(Path(targets_file))
            targets = _targets_from_file(Path(targets_file), id_column, ids, _names(target_columns), target_scale)
        elif in_table_targets:
            targets = _ratings(table, ids, in_table_targets, target_scale, "target", "", problems)
    except MidlevelError as exc:
        problems.append(exc)
    artists = metadata_file = None
    try:
        artists, metadata_file = _artists(table, layout, source, ids)
    except MidlevelError as exc:
        problems.append(exc)
    if found is None:
        refuse(problems)
    else:
        found += problems
    if metadata_file is not None:
        files.append(metadata_file)
    if layout == "generic":
        paths = [audio_dir / i for i in ids]
    else:
        ext = _detect_ext(audio_dir, ids)
        paths = [audio_dir / f"{i}.{ext}" for i in ids]
    return Annotations(source, layout, audio_dir, ids, paths, concept_frame, targets, artists, files)


def check_audio(data: Annotations, sample_rate: int, *, allow_lower_rates: bool = False, decode: bool = True,
                progress: bool = False) -> None:
    """Every audio file present and readable, none sampled below the model's rate.

    Each problem lists all the files it concerns, so one run shows every gap (``Refusals`` when there
    are several kinds). Headers are read first; with ``decode``, every file is then decoded whole, as the
    spectrogram cache will decode it, so that a file cut short or damaged inside is found before any work
    starts rather than part-way through (the caller skips it when that cache exists already: the files
    were decoded then). A lower rate is refused because upsampling leaves the band the base model listens
    to above the file's Nyquist frequency empty; higher rates are resampled down, as at inference.
    """
    if not data.audio_dir.is_dir():
        raise DatasetError(data.audio_dir, "no such folder (the audio folder)" if not data.audio_dir.exists()
                           else "not a folder (the audio folder)")
    shown = [os.path.relpath(p, data.audio_dir) for p in data.paths]
    found = {s: input_file_problem(p) for p, s in zip(data.paths, shown)}
    missing = [s for s in shown if found[s] == NO_SUCH_FILE]
    problems: list[DatasetError] = []
    if missing:
        problems.append(DatasetError(data.audio_dir, f"audio missing for {len(missing)} of {len(data)} annotated "
                                     "clip(s): " + ", ".join(missing)))
    by_rate: dict[int, list[str]] = defaultdict(list)
    unreadable = []
    readable = [(p, s) for p, s in zip(data.paths, shown) if found[s] != NO_SUCH_FILE]
    rates = {}
    for path, name in readable:
        try:
            rates[name] = file_length(path)[1]
            by_rate[rates[name]].append(name)
        except AudioError as exc:  # the reason without the file's full path, which the list names already
            unreadable.append(f"{name} ({_reason(exc, path)})")
    if decode:
        for path, name in tqdm(readable, desc="checking audio", unit="file", disable=not progress, leave=False):
            if name in rates:
                try:  # at the file's own rate: decoding only, no resampling
                    load_audio(path, rates[name])
                except AudioError as exc:
                    unreadable.append(f"{name} ({_reason(exc, path)})")
    if unreadable:
        problems.append(DatasetError(data.audio_dir, f"{len(unreadable)} audio file(s) cannot be decoded: "
                                     + "; ".join(unreadable)))
    low = {rate: names for rate, names in sorted(by_rate.items()) if rate < sample_rate}
    if low and not allow_lower_rates:
        listing = "; ".join(f"{rate} Hz: {', '.join(names)}" for rate, names in low.items())
        problems.append(DatasetError(data.audio_dir, f"{sum(map(len, low.values()))} audio file(s) are sampled "
                                     f"below the base model's {sample_rate} Hz ({listing}); upsampling cannot "
                                     "restore the band the model listens to. Resample them first, or allow it "
                                     "explicitly (--resample)"))
    refuse(problems)


def _reason(exc: AudioError, path: Path) -> str:
    return str(exc).removeprefix(f"{os.fspath(path)}: ")
