"""Reader of a built spoken-digit corpus (``midlevel corpus speech``; docs/spoken_digit_corpus.md).

Training reads the corpus through this module, never through its generator. A model's concepts share one
scale, 0-1: the phone classes are present (1) or not (0), ``two_syllables`` is 1 for zero and seven, and
each Praat speaker measure is placed on a fixed range (``SPEAKER_RANGES``, F0 on a log scale) and clipped
there, so a value reads as "where between these bounds" (the model cards print the ranges).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DatasetError

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SEXES = ("male", "female")
PHONETIC_CONCEPTS = ("sibilant", "fricative", "nasal", "plosive", "liquid_glide", "vowel_front", "vowel_back",
                     "vowel_open", "two_syllables")
#: model concept -> (corpus column, low, high, log scale)
SPEAKER_RANGES = {
    "pitch": ("f0_median_hz", 60.0, 400.0, True),
    "pitch_range": ("f0_range_st", 0.0, 12.0, False),
    "formant_1": ("f1_hz", 250.0, 1000.0, False),
    "formant_2": ("f2_hz", 800.0, 2800.0, False),
    "formant_3": ("f3_hz", 2000.0, 4000.0, False),
    "harmonicity": ("hnr_db", 0.0, 30.0, False),
}
SPEAKER_CONCEPTS = tuple(SPEAKER_RANGES)
TASKS = {"digit": (PHONETIC_CONCEPTS, DIGITS), "sex": (SPEAKER_CONCEPTS, SEXES)}
#: the phonetic concepts each digit word has (CMUdict through the synthesisers' lexicon; the generator derives
#: its labels from the lexicon itself, and a test checks that they agree): what a recorded digit is labelled with
DIGIT_PHONE_CLASSES = {
    "zero": {"sibilant", "liquid_glide", "vowel_front", "vowel_back", "two_syllables"},
    "one": {"nasal", "liquid_glide", "vowel_open"},
    "two": {"plosive", "vowel_back"},
    "three": {"fricative", "liquid_glide", "vowel_front"},
    "four": {"fricative", "liquid_glide", "vowel_back"},
    "five": {"fricative", "vowel_open"},
    "six": {"sibilant", "plosive", "vowel_front"},
    "seven": {"sibilant", "fricative", "nasal", "vowel_front", "vowel_open", "two_syllables"},
    "eight": {"plosive", "vowel_front"},
    "nine": {"nasal", "vowel_open"},
}


@dataclass
class SpokenClips:
    """One split's clips: audio paths, concepts (N, K) on 0-1, class indices (N,), speakers."""

    paths: list[Path]
    concepts: np.ndarray
    classes: np.ndarray
    speakers: list[str]
    words: list[str]
    frame: pd.DataFrame  # the corpus rows (spans, draws, conditions)
    #: (N, K, 2) seconds where each phone-class concept is heard; (-1, -1) when the word lacks it (heard
    #: nowhere); NaN for concepts without a time span (syllables, speaker measures)
    spans: np.ndarray | None = None


def concept_values(frame: pd.DataFrame, concepts: tuple[str, ...]) -> np.ndarray:
    """(N, K) concept values on 0-1 from the corpus's label columns."""
    cols = []
    for name in concepts:
        if name == "two_syllables":
            cols.append(frame["syllables"].to_numpy(float) - 1.0)
        elif name in SPEAKER_RANGES:
            column, lo, hi, log = SPEAKER_RANGES[name]
            v = frame[column].to_numpy(float)
            with np.errstate(invalid="ignore", divide="ignore"):
                v = np.log(v / lo) / np.log(hi / lo) if log else (v - lo) / (hi - lo)
            cols.append(np.clip(v, 0.0, 1.0))
        else:
            cols.append(frame[name].to_numpy(float))
    return np.stack(cols, axis=1)


def concept_spans(frame: pd.DataFrame, concepts: tuple[str, ...]) -> np.ndarray:
    """(N, K, 2) seconds of each timed concept (``SpokenClips.spans``)."""
    out = np.full((len(frame), len(concepts), 2), np.nan)
    for k, name in enumerate(concepts):
        if f"{name}_start_s" in frame.columns:
            span = frame[[f"{name}_start_s", f"{name}_end_s"]].to_numpy(float)
            out[:, k] = np.where(np.isfinite(span), span, -1.0)
    return out


def load_spoken_corpus(root: str | Path, task: str) -> dict[str, SpokenClips]:
    """The corpus's train/val/test splits for ``task`` ("digit" or "sex"). Clips whose concepts Praat could
    not measure (no voiced frame) are left out of the sex task."""
    root = Path(root)
    if task not in TASKS:
        raise DatasetError(root, f"task must be one of {sorted(TASKS)}; got {task!r}")
    table = root / "labels.csv"
    if not table.is_file():
        raise DatasetError(table, "no labels.csv: not a spoken-digit corpus (build one with `midlevel corpus speech`)")
    try:  # the builder's own table
        frame = pd.read_csv(table)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(table, f"cannot be read as a table: {str(exc).splitlines()[0]}") from None
    missing = [c for c in ("file", "split", "digit", "sex", "syllables", *[v[0] for v in SPEAKER_RANGES.values()])
               if c not in frame.columns]
    if missing:
        raise DatasetError(table, f"missing column(s) {missing}")
    concepts, classes = TASKS[task]
    values = concept_values(frame, concepts)
    spans = concept_spans(frame, concepts)
    keep = np.isfinite(values).all(axis=1)
    out = {}
    for split in ("train", "val", "test"):
        rows = np.flatnonzero(keep & (frame["split"] == split).to_numpy())
        if not len(rows):
            raise DatasetError(table, f"the {split!r} split has no clips")
        part = frame.iloc[rows].reset_index(drop=True)
        labels = part["digit"].to_numpy(int) if task == "digit" else \
            part["sex"].map({s: i for i, s in enumerate(SEXES)}).to_numpy()
        paths = [root / f for f in part["file"]]
        absent = [p for p in paths if not p.is_file()]
        if absent:
            raise DatasetError(absent[0], f"listed in {table.name} but missing ({len(absent)} file(s) missing)")
        out[split] = SpokenClips(paths, values[rows], labels.astype(int), list(part["speaker"]), list(part["word"]), part,
                                 spans[rows])
    return out


def speaker_concepts(measures: pd.DataFrame) -> np.ndarray:
    """(N, 6) speaker concepts on 0-1 from Praat's measures (columns of ``speaker_measures.SPEAKER_CONCEPTS``)."""
    return concept_values(measures, SPEAKER_CONCEPTS)


def audiomnist_clips(dataset, task: str, measures_csv: str | Path | None = None, progress: bool = True
                     ) -> dict[str, SpokenClips]:
    """An AudioMNIST data set (``load_audiomnist``) as the splits a speech model trains on, with the task's
    concepts: for digits the word's phone classes (``DIGIT_PHONE_CLASSES``), for sex Praat's speaker measures of
    each recording, measured once and kept in ``measures_csv`` (re-used, extended when clips were added; clips
    Praat cannot measure are left out, as in the corpus)."""
    from .. import audio as audio_io
    from ..ioutil import atomic_write_text
    from .speaker_measures import speaker_measures

    if task not in TASKS:
        raise DatasetError(dataset.root, f"task must be one of {sorted(TASKS)}; got {task!r}")
    ids = [i for split in ("train", "val", "test") for i in dataset.splits[split]]
    measures = None
    if task == "sex":
        known = pd.read_csv(measures_csv).set_index("id") if measures_csv and Path(measures_csv).is_file() else None
        rows = []
        todo = [i for i in ids if known is None or i not in known.index]
        if todo:
            from tqdm.auto import tqdm

            for clip_id in tqdm(todo, desc="Praat measures", unit="clip", disable=not progress):
                clip = audio_io.load_audio(str(dataset.clip(clip_id).path), 16000)  # the corpus's rate
                rows.append({"id": clip_id, **speaker_measures(clip.samples, clip.sample_rate)})
        fresh = pd.DataFrame(rows).set_index("id") if rows else None
        measures = pd.concat([f for f in (known, fresh) if f is not None])
        if measures_csv and todo:
            atomic_write_text(Path(measures_csv), measures.to_csv())
    out = {}
    for split in ("train", "val", "test"):
        clips = [dataset.clip(i) for i in dataset.splits[split]]
        words = [DIGITS[c.digit] for c in clips]
        frame = pd.DataFrame({"id": [c.id for c in clips], "speaker": [f"{c.speaker:02d}" for c in clips],
                              "digit": [c.digit for c in clips], "word": words})
        if task == "digit":
            values = np.array([[float(k in DIGIT_PHONE_CLASSES[w]) for k in PHONETIC_CONCEPTS] for w in words])
            classes = frame["digit"].to_numpy(int)
        else:
            values = speaker_concepts(measures.loc[frame["id"]].reset_index(drop=True))
            classes = np.array([SEXES.index(dataset.speakers[c.speaker].gender) for c in clips])
        keep = np.isfinite(values).all(axis=1)
        if not keep.any():
            raise DatasetError(dataset.root, f"the {split!r} split has no clips Praat could measure")
        out[split] = SpokenClips([c.path for c, k in zip(clips, keep) if k], values[keep], classes[keep].astype(int),
                                 list(frame["speaker"][keep]), [w for w, k in zip(words, keep) if k],
                                 frame[keep].reset_index(drop=True))
    return out
