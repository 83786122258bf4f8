"""Reader of a built phonocardiogram corpus (``midlevel corpus heart``; docs/heart_sound_corpus.md).

Training reads the corpus through this module, never through its generator. The recordings, labels,
quality and splits come from ``load_physionet2016`` (the corpus is in the Challenge 2016 layout, so the
splits are recording-disjoint and keep each database's normal/abnormal balance); concepts.csv adds the
concepts and segments/<record>.csv each beat's S1 / systole / S2 / diastole.

A model's concepts share one scale, 0-1. Each corpus concept is placed on a fixed range and clipped
there (``CONCEPT_RANGES``), so a value reads as "where between these bounds":

| concept | 0 | 1 | scale |
|---|---|---|---|
| ``heart_rate_bpm`` | 30 bpm | 180 bpm | linear (the simulator's intervals are 0.33-2 s) |
| ``hrv_sdnn_ms`` | 5 ms | 400 ms | logarithmic (sinus 10-60 ms, atrial fibrillation ~100-350 ms) |
| ``s1_intensity_db``, ``s2_intensity_db`` | -22 dBFS | -4 dBFS | linear, one range for both (S2 - S1 stays readable) |
| ``s2_split_ms`` | 0 ms | 80 ms | linear |
| ``systolic_murmur``, ``diastolic_murmur`` | none | grade 5 | ``log2(x / 0.03) / 5``: grade g reads g / 5 (grade 1 = 0.06 x S1's peak, each grade doubles) |
| ``s3``, ``s4`` | none | 0.5 x S1's peak | linear |
| ``noise_level`` | 0 (clean) | 1 (all noise) | as recorded |
| ``ectopic_fraction`` | 0 | 0.4 of the beats | linear (the simulator's ectopic rhythms reach 1/3; "frequent ectopy" is > 0.1) |
| ``holosystolic_murmur`` | no | yes | 0/1: a systolic murmur of holosystolic shape (``systolic_murmur_shape``) |

The first ten (``HEART_CONCEPTS``) are the issue's list. ``HEART_CONCEPTS_12`` adds two a clinician reads and
the abnormal rules use, which the ten cannot express: the share of ectopic ("dropped or extra") beats, whose
intervals the HRV concept leaves out, and a murmur lasting the whole of systole. ``load_heart_corpus(...,
concepts=...)`` reads either list; a model's ``concept_names`` say which it hears.

Labels are 0 (normal) and 1 (abnormal), from REFERENCE.csv (the observed labels, after the corpus's label
noise); ``labels_true`` holds the labels by the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .checks import SPLIT_NAMES, listing
from .errors import DatasetError
from .physionet2016 import load_physionet2016

CLASSES = ("normal", "abnormal")
#: model concept -> (low, high, scale): "linear", "log" or "grade" (a murmur's level on grade / 5)
CONCEPT_RANGES: dict[str, tuple[float, float, str]] = {
    "heart_rate_bpm": (30.0, 180.0, "linear"),
    "hrv_sdnn_ms": (5.0, 400.0, "log"),
    "s1_intensity_db": (-22.0, -4.0, "linear"),
    "s2_intensity_db": (-22.0, -4.0, "linear"),
    "s2_split_ms": (0.0, 80.0, "linear"),
    "systolic_murmur": (0.03, 0.96, "grade"),
    "diastolic_murmur": (0.03, 0.96, "grade"),
    "s3": (0.0, 0.5, "linear"),
    "s4": (0.0, 0.5, "linear"),
    "noise_level": (0.0, 1.0, "linear"),
    "ectopic_fraction": (0.0, 0.4, "linear"),
    "holosystolic_murmur": (0.0, 1.0, "linear"),
}
#: the issue's ten concepts (the first models'; the generator's ``GENERATOR_CONCEPTS``)
HEART_CONCEPTS = tuple(CONCEPT_RANGES)[:10]
#: the ten and two the abnormal rules need: frequent ectopy and a holosystolic murmur
HEART_CONCEPTS_12 = tuple(CONCEPT_RANGES)
#: the concept sets by their zoo code (``zoo.registry``'s naming rule), as ``train-heart --concepts`` names them
HEART_CONCEPT_SETS = {"card10": HEART_CONCEPTS, "card12": HEART_CONCEPTS_12}
#: concepts derived from other columns of concepts.csv (not written by the generator as such)
DERIVED_CONCEPTS = {
    "holosystolic_murmur": lambda frame: ((frame["systolic_murmur_shape"].astype(str) == "holosystolic")
                                          & (pd.to_numeric(frame["systolic_murmur"], errors="coerce") > 0)).astype(float),
}
SEGMENT_COLUMNS = ("beat", "s1_start", "s1_end", "s2_start", "s2_end", "diastole_end")
#: the four states of the cardiac cycle, in order; frame labels use their index
STATES = ("S1", "systole", "S2", "diastole")


def scale_concepts(values: np.ndarray, names: Sequence[str] = HEART_CONCEPTS) -> np.ndarray:
    """(N, K) corpus values -> (N, K) on 0-1 by ``CONCEPT_RANGES``, clipped."""
    values = np.asarray(values, dtype=np.float64)
    out = np.empty_like(values)
    for k, name in enumerate(names):
        lo, hi, kind = CONCEPT_RANGES[name]
        v = values[:, k]
        with np.errstate(divide="ignore", invalid="ignore"):
            if kind == "log":
                u = np.log(np.maximum(v, lo) / lo) / np.log(hi / lo)
            elif kind == "grade":
                u = np.where(v > 0, np.log2(np.maximum(v, 1e-12) / lo) / 5.0, 0.0)
            else:
                u = (v - lo) / (hi - lo)
        out[:, k] = np.clip(u, 0.0, 1.0)
    return out


def unscale_concepts(unit: np.ndarray, names: Sequence[str] = HEART_CONCEPTS) -> np.ndarray:
    """The inverse of ``scale_concepts`` inside the ranges (a murmur at 0 reads 0: none)."""
    unit = np.asarray(unit, dtype=np.float64)
    out = np.empty_like(unit)
    for k, name in enumerate(names):
        lo, hi, kind = CONCEPT_RANGES[name]
        u = unit[..., k]
        if kind == "log":
            out[..., k] = lo * (hi / lo) ** u
        elif kind == "grade":
            out[..., k] = np.where(u > 0, lo * 2.0 ** (5.0 * u), 0.0)
        else:
            out[..., k] = lo + u * (hi - lo)
    return out


@dataclass
class HeartRecordings:
    """One split: audio paths, concepts (N, K) on 0-1, labels (N,) 0/1, and each recording's beats."""

    names: list[str]
    paths: list[Path]
    concepts: np.ndarray
    labels: np.ndarray
    labels_true: np.ndarray
    quality: np.ndarray
    segments: list[pd.DataFrame]  # per recording: one row per beat, SEGMENT_COLUMNS and more, seconds
    frame: pd.DataFrame  # the recordings' rows of concepts.csv (raw concepts, conditions, draws)
    concept_names: tuple[str, ...] = field(default=HEART_CONCEPTS)

    def __len__(self) -> int:
        return len(self.names)


def read_segments(path: str | Path, duration: float | None = None) -> pd.DataFrame:
    """One recording's beats (segments/<record>.csv), checked: every boundary a number, each beat's states
    in order (S1 start < S1 end <= S2 start < S2 end <= diastole end) and the beats in time order."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "no segment table (segments/<record>.csv) for this recording")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(path, f"cannot be read as a table: {str(exc).splitlines()[0]}") from None
    missing = [c for c in SEGMENT_COLUMNS if c not in table.columns]
    if missing:
        raise DatasetError(path, f"missing column(s) {missing}; found {list(table.columns)}", line=1)
    if table.empty:
        raise DatasetError(path, "no beats (a recording has at least one S1)")
    for column in SEGMENT_COLUMNS:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = np.flatnonzero(~np.isfinite(values.to_numpy(float)))
        if len(bad):
            raise DatasetError(path, f"{table[column].iloc[bad[0]]!r} is not a number", line=int(bad[0]) + 2,
                               column=column)
        table[column] = values.astype(float)
    b = table[list(SEGMENT_COLUMNS[1:])].to_numpy(float)
    order = (b[:, 0] < b[:, 1]) & (b[:, 1] <= b[:, 2]) & (b[:, 2] < b[:, 3]) & (b[:, 3] <= b[:, 4])
    if not order.all():
        row = int(np.flatnonzero(~order)[0])
        raise DatasetError(path, "the states are out of order (expected s1_start < s1_end <= s2_start < s2_end "
                           "<= diastole_end)", line=row + 2)
    if len(b) > 1 and not (np.diff(b[:, 0]) > 0).all():
        row = int(np.flatnonzero(np.diff(b[:, 0]) <= 0)[0]) + 1
        raise DatasetError(path, "beats are not in time order (s1_start must increase)", line=row + 2,
                           column="s1_start")
    if duration is not None and (b[:, 0] < 0).any() | (b[:, 0] >= duration).any():
        row = int(np.flatnonzero((b[:, 0] < 0) | (b[:, 0] >= duration))[0])
        raise DatasetError(path, f"S1 starts outside the recording (0-{duration:g} s)", line=row + 2,
                           column="s1_start")
    return table


def frame_states(segments: pd.DataFrame, n_frames: int, frames_per_second: float) -> np.ndarray:
    """(n_frames,) state index per frame (``STATES``), -1 where the table does not say (before the first S1,
    after the last beat's diastole). A frame's time is its index / ``frames_per_second`` (the front-end's
    centred frames)."""
    t = np.arange(n_frames) / frames_per_second
    states = np.full(n_frames, -1, dtype=np.int64)
    for s1, s1e, s2, s2e, end in segments[list(SEGMENT_COLUMNS[1:])].to_numpy(float):
        for k, (a, b) in enumerate(((s1, s1e), (s1e, s2), (s2, s2e), (s2e, end))):
            states[(t >= a) & (t < b)] = k
    return states


def load_heart_corpus(root: str | Path, *, split_seed: int = 0, fractions: Sequence[float] = (0.7, 0.15, 0.15),
                      held_out: str | None = None, check_audio: bool = True,
                      concepts: Sequence[str] = HEART_CONCEPTS) -> dict[str, HeartRecordings]:
    """The corpus's train/val/test splits (``load_physionet2016``'s: recording-disjoint, each database's
    normal/abnormal balance kept; ``held_out``: a whole database as the test split). A corpus of another seed
    read whole as a test set: ``fractions=(0, 0, 1)``. Splits left empty by ``fractions`` are omitted.
    Refused, in one line naming the file (and line, column): a missing or unreadable concepts.csv, a
    missing concept column, a concept that is not a number, a recording without a row or whose label differs
    from REFERENCE.csv, a missing or malformed segment table."""
    root = Path(root)
    data = load_physionet2016(root, split_seed=split_seed, fractions=fractions, held_out=held_out,
                              check_audio=check_audio)
    table = root / "concepts.csv"
    if not table.is_file():
        raise DatasetError(table, "no concepts.csv: not a built heart-sound corpus (build one with `midlevel "
                           "corpus heart`)")
    try:
        frame = pd.read_csv(table)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(table, f"cannot be read as a table: {str(exc).splitlines()[0]}") from None
    concepts = tuple(concepts)
    unknown = [c for c in concepts if c not in CONCEPT_RANGES]
    if unknown:
        raise ValueError(f"unknown heart concept(s) {unknown}; known: {list(CONCEPT_RANGES)}")
    needed = {"systolic_murmur_shape", "systolic_murmur"} if "holosystolic_murmur" in concepts else set()
    missing = [c for c in ("name", "label", "label_true", *[c for c in concepts if c not in DERIVED_CONCEPTS],
                           *sorted(needed)) if c not in frame.columns]
    if missing:
        raise DatasetError(table, f"missing column(s) {missing}", line=1)
    for column, derive in DERIVED_CONCEPTS.items():
        if column in concepts:
            frame[column] = derive(frame)
    for column in concepts:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(float)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise DatasetError(table, f"{frame[column].iloc[bad[0]]!r} is not a number", line=int(bad[0]) + 2,
                               column=column)
        frame[column] = values
    if frame["name"].duplicated().any():
        row = int(np.flatnonzero(frame["name"].duplicated().to_numpy())[0])
        raise DatasetError(table, f"duplicate record {frame['name'].iloc[row]!r}", line=row + 2, column="name")
    line = pd.Series(np.arange(len(frame)) + 2, index=frame["name"])
    frame = frame.set_index("name", drop=False)
    records = {r.name: r for r in data.records}
    absent = sorted(set(records) - set(frame.index))
    if absent:
        raise DatasetError(table, f"no row for {len(absent)} recording(s) of the REFERENCE.csv files: {listing(absent)}")
    out: dict[str, HeartRecordings] = {}
    for split in SPLIT_NAMES:
        names = data.splits.get(split, [])
        if not names:
            continue
        part = frame.loc[names]
        observed = np.array([records[n].raw_label for n in names])
        differs = np.flatnonzero(part["label"].to_numpy() != observed)
        if len(differs):
            n = names[differs[0]]
            raise DatasetError(table, f"label {part['label'].iloc[differs[0]]} for {n!r}, but "
                               f"{records[n].path.parent / 'REFERENCE.csv'} says {records[n].raw_label}",
                               line=int(line[n]), column="label")
        segments = [read_segments(root / "segments" / f"{n}.csv", records[n].duration) for n in names]
        out[split] = HeartRecordings(
            names=list(names), paths=[records[n].path for n in names],
            concepts=scale_concepts(part[list(concepts)].to_numpy(float), concepts),
            labels=(observed == 1).astype(np.int64), labels_true=(part["label_true"].to_numpy() == 1).astype(np.int64),
            quality=np.array([-1 if records[n].quality is None else records[n].quality for n in names]),
            segments=segments, frame=part.reset_index(drop=True), concept_names=concepts)
    return out
