"""Labelled clips for training: Mid-level layout ratings joined with Soundtracks-style targets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..concepts import EMOTIONS, MIDLEVEL_FEATURES, OUTSIDE_CONCEPTS
from ..datasets import DatasetError, load_midlevel, read_soundtracks_ratings
from ..datasets.controlled_labels import outside_ratings

TARGETS_FILE = "mean_ratings_set1.csv"
FACTORS_FILE = "factors.csv"


@dataclass
class LabelledClips:
    ids: list[str]
    paths: list[Path]
    concepts: np.ndarray  # (N, K) rating units
    targets: np.ndarray | None  # (N, T) or None when the data set has no target ratings
    concept_names: list[str]
    target_names: list[str]

    def __len__(self) -> int:
        return len(self.ids)


def load_clips(root: str | Path, *, concepts: Sequence[str] | None = None,
               require_audio: bool = True) -> LabelledClips:
    """Every annotated clip of a data set in the Mid-level layout, in the annotations' order.

    ``concepts`` (default: the seven mid-level features) may also name ``OUTSIDE_CONCEPTS``
    (loudness, tempo, register); their ratings come from the controlled corpus's ``factors.csv``.
    Targets come from ``mean_ratings_set1.csv`` beside the annotations (clip ``number`` = song
    id) when present.

    A song whose audio file is missing is an error unless ``require_audio`` is False (``midlevel evaluate``
    skips and lists such clips; its paths are then those the layout names, present or not).
    """
    return _load_clips(Path(root), concepts, require_audio)[1]


def _load_clips(root: Path, concepts: Sequence[str] | None, require_audio: bool):
    ds = load_midlevel(root)
    missing = ds.missing_audio() if require_audio else []
    if missing:
        shown = ", ".join(missing[:20]) + (f" ... ({len(missing)} in all)" if len(missing) > 20 else "")
        raise DatasetError(ds.audio_dir, f"audio missing for {len(missing)} annotated song(s): {shown}")
    targets = None
    ratings_file = root / TARGETS_FILE
    if ratings_file.is_file():
        ratings = read_soundtracks_ratings(ratings_file)
        numbers = pd.Index([int(i) for i in ds.ratings.index])
        absent = numbers.difference(ratings.index)
        if len(absent):
            raise DatasetError(ratings_file, f"no target ratings for song id(s) {list(absent[:10])}")
        targets = ratings.loc[numbers, list(EMOTIONS)].to_numpy(dtype=np.float64)
    names = list(MIDLEVEL_FEATURES) if concepts is None else list(concepts)
    ids = list(ds.ratings.index)
    return ds, LabelledClips(ids=ids, paths=[ds.audio_path(i) for i in ids],
                             concepts=_concept_table(root, ds.ratings, names), targets=targets,
                             concept_names=names, target_names=list(EMOTIONS))


def load_splits(root: str | Path, *, seed: int = 0, concepts: Sequence[str] | None = None,
                require_audio: bool = True) -> dict[str, LabelledClips]:
    """train/val/test clips of a data set in the Mid-level layout (``load_clips`` says what is read).

    The split is read from a ``split`` metadata column (the controlled corpus records its by-piece
    split there); otherwise songs are split by artist with ``seed``.
    """
    ds, every = _load_clips(Path(root), concepts, require_audio)
    if ds.metadata is not None and "split" in ds.metadata.columns:
        labels = ds.metadata["split"].reindex(ds.ratings.index)
        splits = {name: [i for i, s in labels.items() if s == name] for name in ("train", "val", "test")}
    else:
        splits = ds.split(seed=seed)
    position = {song: n for n, song in enumerate(every.ids)}
    out = {}
    for name, ids in splits.items():
        rows = [position[i] for i in ids]
        out[name] = LabelledClips(
            ids=list(ids), paths=[every.paths[r] for r in rows],
            concepts=every.concepts[rows],
            targets=every.targets[rows] if every.targets is not None else None,
            concept_names=every.concept_names, target_names=every.target_names,
        )
    return out


def _concept_table(root: Path, ratings: pd.DataFrame, names: list[str]) -> np.ndarray:
    """(songs, concepts) in ``names`` order: mid-level ratings from the annotations, outside
    concepts from the factors table."""
    unknown = [n for n in names if n not in MIDLEVEL_FEATURES and n not in OUTSIDE_CONCEPTS]
    if unknown:
        raise ValueError(f"unknown concept(s) {unknown}; choose from {list(MIDLEVEL_FEATURES + OUTSIDE_CONCEPTS)}")
    columns = {n: ratings[n].to_numpy(dtype=np.float64) for n in names if n in MIDLEVEL_FEATURES}
    if any(n in OUTSIDE_CONCEPTS for n in names):
        path = root / FACTORS_FILE
        if not path.is_file():
            raise DatasetError(path, "outside concepts (loudness, tempo, register) need the controlled corpus's factors table")
        factors = pd.read_csv(path, index_col="song_id")
        numbers = pd.Index([int(i) for i in ratings.index])
        absent = numbers.difference(factors.index)
        if len(absent):
            raise DatasetError(path, f"no factors for song id(s) {list(absent[:10])}")
        for col in ("velocity", "tempo_bpm", "transpose"):
            if col not in factors.columns:
                raise DatasetError(path, f"missing column {col!r}")
        outside = outside_ratings(factors.loc[numbers])
        columns.update({n: outside[:, k] for k, n in enumerate(OUTSIDE_CONCEPTS) if n in names})
    return np.column_stack([columns[n] for n in names])


def clip_pieces(root: str | Path, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """(piece of each clip, style group of each clip or None) from a data set's metadata (the controlled
    corpus records ``piece_id`` and ``style``); a clip whose metadata names no piece is its own piece.
    Clips cut from one piece share their errors, so resampling for confidence intervals goes by piece."""
    meta = load_midlevel(root).metadata
    own = np.asarray(list(ids), dtype=object)
    if meta is None:
        return own, None
    rows = meta.reindex(list(ids))
    pieces = np.where(rows["piece_id"].isna(), own, rows["piece_id"].astype(object)) if "piece_id" in rows else own
    style = rows["style"].astype(str).to_numpy() if "style" in rows else None
    return pieces, style
