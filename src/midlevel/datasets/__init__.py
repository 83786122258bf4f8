"""Readers for the real datasets' layouts (Mid-level, Soundtracks, AudioMNIST, PhysioNet 2016) and the
controlled corpus."""

from .audiomnist import AudioMNISTDataset, becker_preprocess, load_audiomnist
from .errors import DatasetError
from .mid_level import (ATONALITY_MAPPINGS, RAW_FEATURE_NAMES, MidlevelDataset, load_midlevel,
                        read_annotations, read_metadata)
from .physionet2016 import PhysioNet2016Dataset, load_physionet2016
from .soundtracks import SoundtracksDataset, load_soundtracks
from .soundtracks import read_ratings as read_soundtracks_ratings

__all__ = [
    "AudioMNISTDataset", "PhysioNet2016Dataset", "becker_preprocess", "load_audiomnist", "load_physionet2016",
    "ATONALITY_MAPPINGS", "DatasetError", "MidlevelDataset", "RAW_FEATURE_NAMES", "SoundtracksDataset",
    "load_midlevel", "load_soundtracks", "read_annotations", "read_metadata", "read_soundtracks_ratings",
]
