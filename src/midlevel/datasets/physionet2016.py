"""Reader for the PhysioNet/CinC Challenge 2016 heart-sound training set (Liu et al. 2016;
physionet.org/content/challenge-2016): 3,240 phonocardiograms, normal or abnormal.

Layout under a root folder (docs/datasets.md has the details)::

    training-a/REFERENCE.csv          no header; rows 'record,label', label -1 normal, 1 abnormal
    training-a/REFERENCE-SQI.csv      optional; rows 'record,quality' (or 'record,label,quality'), 0 or 1
    training-a/a0001.wav              2000 Hz, one PCG lead
    training-a/a0001.hea              WFDB header; first line 'a0001 1 2000 71332' (record, signals, fs, samples)
    training-b/ ... training-f/

Each ``training-*`` folder is one database (recorded by a different team, with different devices and
patients), so the splits keep each database's share (or hold a whole database out).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import MidlevelError
from .checks import SPLIT_NAMES, audio_problem, check_fractions, listing, refuse_listed
from .errors import DatasetError, read_text

SAMPLE_RATE = 2000
"""The rate of every Challenge 2016 recording; headers and wavs stating another are refused."""
REFERENCE_FILE = "REFERENCE.csv"
SQI_FILES = ("REFERENCE-SQI.csv", "REFERENCE_withSQI.csv")
"""Signal-quality files looked for in each database folder, the first found being read."""
FOLDER_PREFIX = "training-"
LABELS = {-1: "normal", 1: "abnormal"}
_RECORD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_NUMBER = re.compile(r"[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True)
class HeartSoundRecord:
    """One recording. ``quality`` is 1 (good) or 0 (unsure/poor) where the folder has a quality file."""

    name: str  # "a0001"
    database: str  # "a" for training-a
    path: Path  # the wav
    header: Path  # the .hea
    label: str  # "normal" or "abnormal"
    raw_label: int  # -1 or 1, as in REFERENCE.csv
    quality: int | None
    n_samples: int  # from the header (equal to the wav's, when checked)
    sample_rate: int
    n_signals: int  # from the header: training-a also lists an ECG lead besides the PCG

    @property
    def duration(self) -> float:
        return self.n_samples / self.sample_rate


@dataclass
class PhysioNet2016Dataset:
    """Every record, the databases they come from, and the split chosen at loading (``split`` makes others)."""

    root: Path
    records: list[HeartSoundRecord]
    databases: list[str]
    splits: dict[str, list[str]]  # record names per split

    def __len__(self) -> int:
        return len(self.records)

    def record(self, name: str) -> HeartSoundRecord:
        for r in self.records:
            if r.name == name:
                return r
        raise KeyError(f"no PhysioNet 2016 record {name!r}")

    def frame(self) -> pd.DataFrame:
        """One row per record, indexed by name, with its split (None where a split leaves it out)."""
        split_of = {n: name for name, names in self.splits.items() for n in names}
        return pd.DataFrame([{"name": r.name, "database": r.database, "path": r.path, "label": r.label,
                              "raw_label": r.raw_label, "quality": r.quality, "n_samples": r.n_samples,
                              "duration": r.duration, "split": split_of.get(r.name)}
                             for r in self.records]).set_index("name")

    def split(self, *, split_seed: int = 0, fractions: Sequence[float] = (0.7, 0.15, 0.15),
              held_out: str | None = None) -> dict[str, list[str]]:
        """Record names per split; see ``load_physionet2016``. Reads nothing."""
        fractions = check_fractions(fractions)
        pool = self.records
        held: list[str] = []
        if held_out is not None:
            held_out = str(held_out).removeprefix(FOLDER_PREFIX)
            if held_out not in self.databases:
                raise ValueError(f"held_out must be one of the databases found {self.databases}, got {held_out!r}")
            if len(self.databases) < 2:
                raise ValueError("leaving a database out needs at least two databases")
            held = [r.name for r in pool if r.database == held_out]
            pool = [r for r in pool if r.database != held_out]
            train_val = fractions[0] + fractions[1]
            if train_val <= 0:
                raise ValueError("with held_out, fractions[0] and fractions[1] share the other databases "
                                 "between train and val; they cannot both be 0")
            fractions = (fractions[0] / train_val, fractions[1] / train_val, 0.0)
        needed = sum(f > 0 for f in fractions)
        if len(pool) < needed:
            raise DatasetError(self.root, f"only {len(pool)} record(s) to split {needed} ways; need one per split")
        rng = np.random.default_rng(split_seed)
        strata: dict[tuple[str, int], list[str]] = {}
        for r in pool:
            strata.setdefault((r.database, r.raw_label), []).append(r.name)
        split: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
        for key in sorted(strata):
            names = sorted(strata[key])
            names = [names[i] for i in rng.permutation(len(names))]
            bounds = np.cumsum([0, *_stratum_sizes(len(names), fractions)])
            for k, name in enumerate(SPLIT_NAMES):
                split[name] += names[bounds[k]:bounds[k + 1]]
        split["test"] += held
        return {name: sorted(names) for name, names in split.items()}


def _stratum_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """A stratum's share of each split, by largest remainder; small strata are not forced into every split."""
    exact = [round(f * n, 9) for f in fractions]  # 0.6 / 0.8 * 14 is 10.5, not 10.4999...
    sizes = [int(e) for e in exact]
    for k in sorted(range(len(sizes)), key=lambda k: (-(exact[k] - sizes[k]), k))[: n - sum(sizes)]:
        sizes[k] += 1
    return sizes


def load_physionet2016(root, *, split_seed: int = 0, fractions: Sequence[float] = (0.7, 0.15, 0.15),
                       held_out: str | None = None, check_audio: bool = True) -> PhysioNet2016Dataset:
    """Read the training set under ``root`` (the folder holding ``training-a`` ... ``training-f``, or one
    ``training-*`` folder itself), check it, and split it by recording.

    Splits are recording-disjoint and database-aware: ``held_out=None`` shares every (database, label)
    stratum between train/val/test by ``fractions`` (seeded shuffle, largest remainder), so each split
    keeps each database's share and its normal/abnormal balance. ``held_out="e"`` tests on all of
    training-e (leave one database out) and shares the others between train and val in the ratio
    ``fractions[0]:fractions[1]``. ``check_audio`` reads every wav's header (readable, 2000 Hz, as many
    samples as the .hea states). Every problem found is refused at once (``Refusals`` when several).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, "dataset folder not found")
    if root.name.startswith(FOLDER_PREFIX) and (root / REFERENCE_FILE).exists():
        folders = [root]
    else:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(FOLDER_PREFIX))
    if not folders:
        raise DatasetError(root, f"no {FOLDER_PREFIX}* folders (the Challenge 2016 training set has "
                           "training-a ... training-f, each with a REFERENCE.csv)")
    problems: list[MidlevelError] = []
    records: list[HeartSoundRecord] = []
    owner: dict[str, tuple[Path, int]] = {}  # record name -> (REFERENCE.csv, line) where first listed
    for folder in folders:
        records += _read_database(folder, check_audio, owner, problems)
    refuse_listed(problems)
    records.sort(key=lambda r: (r.database, r.name))
    databases = sorted({r.database for r in records})
    dataset = PhysioNet2016Dataset(root, records, databases, {})
    dataset.splits = dataset.split(split_seed=split_seed, fractions=fractions, held_out=held_out)
    return dataset


def _read_database(folder: Path, check_audio: bool, owner: dict[str, tuple[Path, int]],
                   problems: list[MidlevelError]) -> list[HeartSoundRecord]:
    database = folder.name.removeprefix(FOLDER_PREFIX)
    reference = folder / REFERENCE_FILE
    mentioned: set[str] = set()  # every record REFERENCE.csv names, rows refused or not
    try:
        labels = _read_reference(reference, owner, mentioned, problems)
    except MidlevelError as exc:
        problems.append(exc)
        return []
    quality = _read_quality(folder, labels, mentioned, problems)
    wavs = {p.stem: p for p in folder.iterdir() if p.suffix.lower() == ".wav" and not p.name.startswith(".")}
    for stem in sorted(set(wavs) - mentioned):
        problems.append(DatasetError(wavs[stem], f"no row for {stem!r} in {reference}"))
    records = []
    for name, (raw, line) in labels.items():
        wav = wavs.get(name)
        if wav is None:
            problems.append(DatasetError(reference, f"record {name!r} has no {name}.wav in {folder}", line=line))
            continue
        header = folder / f"{name}.hea"
        try:
            n_signals, fs, n_samples, header_line = read_wfdb_header(header)
        except MidlevelError as exc:
            problems.append(exc)
            continue
        if check_audio:
            frames, problem = audio_problem(wav, SAMPLE_RATE, "the Challenge 2016 recordings are")
            if problem is not None:
                problems.append(problem)
                continue
            if frames != n_samples:
                problems.append(DatasetError(header, f"states {n_samples} samples but {wav.name} holds {frames}",
                                             line=header_line))
                continue
        records.append(HeartSoundRecord(name, database, wav, header, LABELS[raw], raw, quality.get(name),
                                        n_samples, fs, n_signals))
    return records


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line, stripped cells without trailing blanks) of every non-blank row of a header-less CSV."""
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    rows, end = [], 0
    for record in reader:
        start, end = end + 1, reader.line_num
        cells = [c.strip() for c in record]
        while cells and not cells[-1]:
            cells.pop()
        if cells:
            rows.append((start, cells))
    return rows


def _label(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value in LABELS else None


def _read_reference(path: Path, owner: dict[str, tuple[Path, int]], mentioned: set[str],
                    problems: list[MidlevelError]) -> dict[str, tuple[int, int]]:
    """record -> (label -1/1, line). Bad rows go to ``problems``; a missing or empty file is raised."""
    labels: dict[str, tuple[int, int]] = {}
    for line, cells in _rows(path):
        mentioned.add(cells[0])
        if len(cells) != 2:
            problems.append(DatasetError(path, f"{len(cells)} field(s); expected 'record,label' (no header row), "
                                         "e.g. a0001,-1", line=line))
            continue
        name, text = cells
        if not _RECORD_NAME.fullmatch(name):
            problems.append(DatasetError(path, f"{name!r} is not a record name", line=line))
            continue
        raw = _label(text)
        if raw is None:
            problems.append(DatasetError(path, f"label {text!r} is not -1 (normal) or 1 (abnormal)", line=line))
            continue
        if name in owner:
            first, first_line = owner[name]
            where = f"line {first_line}" if first == path else f"{first}, line {first_line}"
            problems.append(DatasetError(path, f"duplicate record {name!r} (first on {where})", line=line))
            continue
        owner[name] = (path, line)
        labels[name] = (raw, line)
    return labels


def _read_quality(folder: Path, labels: dict[str, tuple[int, int]], mentioned: set[str],
                  problems: list[MidlevelError]) -> dict[str, int]:
    """record -> quality 0/1 from the folder's quality file, if it has one; every record must have a row."""
    path = next((folder / f for f in SQI_FILES if (folder / f).exists()), None)
    if path is None:
        return {}
    try:
        rows = _rows(path)
    except MidlevelError as exc:
        problems.append(exc)
        return {}
    quality: dict[str, int] = {}
    first: dict[str, int] = {}
    for line, cells in rows:
        if len(cells) not in (2, 3):
            problems.append(DatasetError(path, f"{len(cells)} field(s); expected 'record,quality' or "
                                         "'record,label,quality'", line=line))
            continue
        name, text = cells[0], cells[-1]
        if name in first:
            problems.append(DatasetError(path, f"duplicate record {name!r} (first on line {first[name]})", line=line))
            continue
        first[name] = line
        if name not in mentioned:
            problems.append(DatasetError(path, f"record {name!r} is not in {REFERENCE_FILE}", line=line))
            continue
        if name not in labels:  # its REFERENCE.csv row is refused already
            continue
        if len(cells) == 3:
            raw = _label(cells[1])
            if raw is None:
                problems.append(DatasetError(path, f"label {cells[1]!r} is not -1 (normal) or 1 (abnormal)",
                                             line=line))
                continue
            if raw != labels[name][0]:
                problems.append(DatasetError(path, f"label {raw} for {name!r}, but {REFERENCE_FILE} says "
                                             f"{labels[name][0]} (line {labels[name][1]})", line=line))
                continue
        if text not in ("0", "1"):
            problems.append(DatasetError(path, f"quality {text!r} is not 0 (unsure/poor) or 1 (good)", line=line))
            continue
        quality[name] = int(text)
    absent = [n for n in labels if n not in first]
    if absent:
        problems.append(DatasetError(path, f"no quality for {len(absent)} record(s) of {REFERENCE_FILE}: "
                                     f"{listing(absent)}"))
    return quality


def read_wfdb_header(path) -> tuple[int, int, int, int]:
    """(signals, sampling frequency, samples, line) from a WFDB header's record line
    ``name n_signals fs[/counter[(base)]] n_samples ...`` (comment lines ``#`` and blank lines skipped).
    Refused: a missing or empty file, a record line with fewer than four fields or numbers that are not
    numbers, a record name other than the file's, a frequency other than 2000 Hz."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "header file not found (each record has a WFDB .hea beside its .wav)"
                           if not path.exists() else "not a file")
    text = path.read_bytes().decode("latin-1")
    found = next(((n, line.split()) for n, line in enumerate(text.splitlines(), 1)
                  if line.strip() and not line.lstrip().startswith("#")), None)
    if found is None:
        raise DatasetError(path, "header is empty (expected a record line 'name n_signals fs n_samples')")
    line, fields = found
    expected = f"expected 'record n_signals fs n_samples', e.g. '{path.stem} 1 2000 71332'"
    if len(fields) < 4:
        raise DatasetError(path, f"record line {' '.join(fields)!r} has {len(fields)} field(s); {expected}", line=line)
    name = fields[0].split("/", 1)[0]
    if name != path.stem:
        raise DatasetError(path, f"the header names record {name!r}, not {path.stem!r}", line=line)
    if not fields[1].isdigit() or int(fields[1]) < 1:
        raise DatasetError(path, f"number of signals {fields[1]!r} is not a positive whole number; {expected}",
                           line=line)
    fs_text = re.split(r"[/(]", fields[2], maxsplit=1)[0]
    if not _NUMBER.fullmatch(fs_text) or float(fs_text) <= 0:
        raise DatasetError(path, f"sampling frequency {fields[2]!r} is not a positive number; {expected}", line=line)
    if float(fs_text) != SAMPLE_RATE:
        raise DatasetError(path, f"sampling frequency {float(fs_text):g} Hz; the Challenge 2016 recordings are "
                           f"{SAMPLE_RATE} Hz", line=line)
    if not fields[3].isdigit():
        raise DatasetError(path, f"number of samples {fields[3]!r} is not a whole number; {expected}", line=line)
    return int(fields[1]), SAMPLE_RATE, int(fields[3]), line
