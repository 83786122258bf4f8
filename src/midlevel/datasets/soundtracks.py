"""Reader for the Soundtracks dataset (Eerola & Vuoskoski 2011; osf.io/p6vkg).

Set 1: 360 film-music excerpts ``001.mp3`` ... ``360.mp3`` and ``mean_ratings_set1.csv`` with
``number`` and eight emotion scales rated 1-9 (docs/datasets.md has the details).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..concepts import EMOTION_SCALE, EMOTIONS
from .errors import DatasetError, read_table

_SPREADSHEETS = (".xls", ".xlsx", ".ods")


def _clip_number(text: str) -> int:
    """'007' and '7.0' name clip 7; '7.5' names nothing (ValueError)."""
    value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def read_ratings(path) -> pd.DataFrame:
    """Mean ratings indexed by clip ``number`` (int): the eight EMOTIONS as floats, then any other
    columns (``target``, set 2's ``beauty``, ``liking``) under lower-case names, numeric when they
    can be. Comma, semicolon or tab separated; header case and spaces do not matter."""
    path = Path(path)
    if path.suffix.lower() in _SPREADSHEETS:
        raise DatasetError(
            path,
            "spreadsheets are not read (no Excel reader is a dependency): open the file,"
            " save it as CSV, and pass the .csv file instead",
        )
    table = read_table(path)
    table.require(("number", *EMOTIONS))
    numbers = table.ids("number", _clip_number)
    columns: dict[str, object] = {name: table.numbers(name, EMOTION_SCALE) for name in EMOTIONS}
    for name in table.names:
        if name not in columns and name != "number":
            columns[name] = _extra(table, name)
    return pd.DataFrame(columns, index=pd.Index(numbers, dtype="int64", name="number"))


def _extra(table, name: str):
    """An extra column as floats if every cell is a number or blank, else as text."""
    cells = table.cells(name)
    values = [table.parse_float(cell) for cell in cells]
    if any(v is None for v in values):
        return [cell or None for cell in cells]
    return np.array(values, dtype=float)


@dataclass
class SoundtracksDataset:
    """The ratings and where each clip's audio should be (``audio_dir/id_format.audio_ext``)."""

    root: Path
    ratings: pd.DataFrame
    audio_dir: Path
    audio_ext: str = "mp3"
    id_format: str = "{:03d}"

    def audio_path(self, number) -> Path:
        key = int(number)
        if key not in self.ratings.index:
            raise KeyError(f"clip number {key} is not in the ratings")
        return self.audio_dir / f"{self.id_format.format(key)}.{self.audio_ext}"

    def missing_audio(self) -> list[int]:
        """Every rated clip whose audio file is absent."""
        return [int(n) for n in self.ratings.index if not self.audio_path(n).is_file()]


def load_soundtracks(
    root,
    *,
    ratings_file: str = "mean_ratings_set1.csv",
    audio_dir=None,
    audio_ext: str = "mp3",
    id_format: str = "{:03d}",
) -> SoundtracksDataset:
    """Read ``root/ratings_file``. Audio is looked for in ``audio_dir`` (relative to ``root``;
    ``None`` means ``root`` itself) as ``id_format.format(number) + '.' + audio_ext``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, "dataset folder not found")
    try:
        id_format.format(1)
    except (IndexError, KeyError, ValueError) as error:
        raise ValueError(f"id_format must format one integer, e.g. '{{:03d}}'; got {id_format!r}") from error
    ratings = read_ratings(root / ratings_file)
    folder = root if audio_dir is None else root / audio_dir
    return SoundtracksDataset(root, ratings, folder, audio_ext.lstrip("."), id_format)
