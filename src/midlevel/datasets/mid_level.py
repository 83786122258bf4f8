"""Reader for the Mid-level Perceptual Features dataset (Aljanaki & Soleymani 2018; osf.io/5aupt).

Layout under a root folder (docs/datasets.md has the details)::

    metadata_annotations/annotations.csv   comma-separated: song_id + seven ratings (1-10)
    metadata_annotations/metadata.csv      semicolon-separated: song id; Artist; Source; ID at file source
    audio/<song_id>.<ext>
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..concepts import MIDLEVEL_FEATURES, MIDLEVEL_SCALE
from .errors import DatasetError, read_table

RAW_FEATURE_NAMES: dict[str, str] = {
    "melody": "melodiousness",
    "atonality": "tonal_stability",
    "mode": "minorness",
    "modality": "minorness",
}
"""Raw annotation headers (normalised) and the canonical feature each one fills."""

ATONALITY_MAPPINGS: dict[str, str] = {
    "rename": "tonal_stability = atonality, values unchanged (what the published code does)",
    "invert": "tonal_stability = 11 - atonality, i.e. lo + hi - v on the 1-10 scale",
}
"""How a raw ``atonality`` column becomes ``tonal_stability``. Whether the raw column rates
atonality or tonal stability is unconfirmed, hence the choice. A column already headed
``tonal_stability`` is always taken as is; ``mode`` becomes ``minorness`` unchanged."""

_METADATA_NAMES = {"id_at_file_source": "source_id"}
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")


def read_annotations(path, *, atonality: str = "rename") -> pd.DataFrame:
    """Ratings indexed by ``song_id`` (str), one float column per feature in canonical order.

    Raw (``melody``, ``atonality``, ``mode``) and canonical headers are accepted in any case,
    spacing and order; other columns are dropped. ``atonality`` picks an ``ATONALITY_MAPPINGS`` key.
    """
    if atonality not in ATONALITY_MAPPINGS:
        raise ValueError(f"atonality must be one of {list(ATONALITY_MAPPINGS)}, got {atonality!r}")
    table = read_table(path, ",")
    raw_atonality = "atonality" in table.names
    table.rename(RAW_FEATURE_NAMES)
    table.require(("song_id", *MIDLEVEL_FEATURES), RAW_FEATURE_NAMES)
    ids = table.ids("song_id")
    ratings = pd.DataFrame(
        {name: table.numbers(name, MIDLEVEL_SCALE) for name in MIDLEVEL_FEATURES},
        index=pd.Index(ids, dtype=str, name="song_id"),
    )
    if raw_atonality and atonality == "invert":
        low, high = MIDLEVEL_SCALE
        ratings["tonal_stability"] = low + high - ratings["tonal_stability"]
    return ratings


def read_metadata(path) -> pd.DataFrame:
    """Song metadata indexed by ``song_id`` (str), every column kept with a snake_case name
    (``Artist`` -> ``artist``, ``ID at file source`` -> ``source_id``); empty cells are missing."""
    table = read_table(path, ";")
    table.rename(_METADATA_NAMES)
    table.require(("song_id",))
    ids = table.ids("song_id")
    columns = {
        name: [cell or None for cell in table.cells(name)]
        for name in table.names
        if name != "song_id"
    }
    return pd.DataFrame(columns, index=pd.Index(ids, dtype=str, name="song_id"))


@dataclass
class MidlevelDataset:
    """The dataset on disk: ratings, optional metadata, and where each song's audio should be."""

    root: Path
    ratings: pd.DataFrame
    metadata: pd.DataFrame | None
    audio_dir: Path
    audio_ext: str

    def audio_path(self, song_id) -> Path:
        key = str(song_id)
        if key not in self.ratings.index:
            raise KeyError(f"song id {key!r} is not in the annotations")
        return self.audio_dir / f"{key}.{self.audio_ext}"

    def missing_audio(self) -> list[str]:
        """Every annotated song whose audio file is absent, so one listing shows all gaps."""
        return [i for i in self.ratings.index if not self.audio_path(i).is_file()]

    def split(self, fractions=(0.8, 0.1, 0.1), seed: int = 0, by: str | None = "artist") -> dict[str, list[str]]:
        """Song ids for train/val/test such that no ``by`` value (artist) spans two splits,
        so a model cannot score by recognising an artist. Same seed, same split. Songs with no
        ``by`` value are their own group; without a ``by`` column the split is per song (warned)."""
        ids = list(self.ratings.index)
        if by is None:
            groups = {i: (1, i) for i in ids}
        elif self.metadata is None or by not in self.metadata.columns:
            warnings.warn(f"no {by!r} metadata column; splitting per song, so {by}s may span splits", stacklevel=2)
            groups = {i: (1, i) for i in ids}
        else:
            values = self.metadata[by].reindex(ids)
            groups = {i: (1, i) if pd.isna(v) else (0, str(v).casefold()) for i, v in zip(ids, values)}
        return _group_split(groups, fractions, seed, self.root)


def _group_split(groups: dict[str, tuple], fractions, seed: int, root: Path) -> dict[str, list[str]]:
    """Shuffle groups with ``seed``, then place the largest first into the split furthest below
    its share of songs, keeping the last groups for splits still empty."""
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != len(SPLIT_NAMES) or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    members: dict[tuple, list[str]] = {}
    for song, group in groups.items():
        members.setdefault(group, []).append(song)
    keys = sorted(members)
    order = [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))]
    order.sort(key=lambda g: -len(members[g]))
    needed = [k for k, f in enumerate(fractions) if f > 0]
    if len(order) < len(needed):
        raise DatasetError(root, f"only {len(order)} group(s) to split {len(needed)} ways; need one per split")
    targets = [f * len(groups) for f in fractions]
    counts = [0] * len(fractions)
    split: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
    for position, group in enumerate(order):
        empty = [k for k in needed if counts[k] == 0]
        candidates = empty if len(order) - position <= len(empty) else needed
        k = max(candidates, key=lambda c: targets[c] - counts[c])
        counts[k] += len(members[group])
        split[SPLIT_NAMES[k]].extend(members[group])
    return split


def _detect_ext(audio_dir: Path, ids) -> str:
    """The most common extension among files named after a song id; ``mp3`` when none exist."""
    if not audio_dir.is_dir():
        return "mp3"
    wanted = set(ids)
    counts = Counter(p.suffix[1:] for p in audio_dir.iterdir() if p.suffix and p.stem in wanted)
    return max(sorted(counts), key=counts.__getitem__) if counts else "mp3"


def load_midlevel(root, *, audio_ext: str | None = None, atonality: str = "rename") -> MidlevelDataset:
    """Read the dataset under ``root``. ``metadata.csv`` is optional; audio is not required to
    exist (see ``missing_audio``). ``audio_ext=None`` detects the extension from ``audio/``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, "dataset folder not found")
    folder = root / "metadata_annotations"
    ratings = read_annotations(folder / "annotations.csv", atonality=atonality)
    metadata_file = folder / "metadata.csv"
    metadata = read_metadata(metadata_file) if metadata_file.exists() else None
    audio_dir = root / "audio"
    ext = _detect_ext(audio_dir, ratings.index) if audio_ext is None else audio_ext.lstrip(".")
    return MidlevelDataset(root, ratings, metadata, audio_dir, ext)
