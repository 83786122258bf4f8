"""Readers for the real datasets' layouts (Mid-level, Soundtracks) and the controlled corpus."""

from .errors import DatasetError
from .mid_level import (ATONALITY_MAPPINGS, RAW_FEATURE_NAMES, MidlevelDataset, load_midlevel,
                        read_annotations, read_metadata)
from .soundtracks import SoundtracksDataset, load_soundtracks
from .soundtracks import read_ratings as read_soundtracks_ratings

__all__ = [
    "ATONALITY_MAPPINGS", "DatasetError", "MidlevelDataset", "RAW_FEATURE_NAMES", "SoundtracksDataset",
    "load_midlevel", "load_soundtracks", "read_annotations", "read_metadata", "read_soundtracks_ratings",
]
