"""Checks the dataset readers share: split fractions, audio headers, and refusals that list many problems."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..audio import AudioError, file_length
from ..errors import MidlevelError, Refusals, refuse
from .errors import DatasetError

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
MAX_LISTED = 20
"""At most this many problems are spelled out in one refusal (``Refusals.errors`` holds them all)."""


def check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != len(SPLIT_NAMES) or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    return fractions


def audio_problem(path: Path, rate: int, published_as: str) -> tuple[int | None, DatasetError | None]:
    """(frames, None) for a readable audio file at ``rate``; (None, the one-line problem) otherwise, its rate
    problem saying "sample rate R Hz; <published_as> <rate> Hz"."""
    try:
        frames, found = file_length(path)
    except AudioError as exc:
        return None, DatasetError(path, str(exc).removeprefix(f"{path}: "))
    if found != rate:
        return None, DatasetError(path, f"sample rate {found} Hz; {published_as} {rate} Hz")
    return frames, None


def listing(items, limit: int = 12) -> str:
    items = [str(i) for i in items]
    return ", ".join(items[:limit]) + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def refuse_listed(problems: list[MidlevelError], limit: int = MAX_LISTED) -> None:
    """``refuse``, spelling out at most ``limit`` problems (a whole corpus at the wrong rate is 30,000);
    the exception's ``errors`` still holds every one."""
    if len(problems) <= limit:
        refuse(problems)
        return
    exc = Refusals(problems[:limit], f" (the first {limit} of {len(problems)} shown)")
    exc.errors = list(problems)
    raise exc
