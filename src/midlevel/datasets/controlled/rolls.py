"""Note rolls of controlled-corpus clips: which pitches sound in each spectrogram frame.

The controlled corpus knows every note it rendered, so a clip's audio can be paired with an exact
transcription, as MIDI-aligned recordings (MAESTRO, MAPS) are used to train transcribers. The
concept formulas read pitches (mode, chords, the top voice's intervals); a network that learns to
transcribe first hears those pitches far better than fixed chroma (``midlevel.music_features``),
whose harmonics blur major and minor thirds. The rolls are an auxiliary *training* target only:
a trained model still takes audio alone.

Rolls are not stored in the corpus: clip ``i`` of a corpus is re-realised from its recorded seed
and settings (``build.make_clip`` is deterministic, ~0.15 s per clip), which also guarantees the
roll matches the audio that was rendered from the same notes.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from ...ioutil import atomic_path
from ..controlled_labels import ROLL_CHANNELS
from ..errors import DatasetError
from .factors import KIND_DRUM, KIND_SCORE, Clip
from .ratings import audible_end

#: lowest MIDI pitch of a roll row, and the number of rows (C1..B7: every pitched note the corpus renders)
ROLL_LOW = 24
ROLL_PITCHES = 84
#: roll channels: every pitched note; the melody (the top voice's highest sounding note)


class RollError(DatasetError):
    """A corpus whose clips cannot be re-realised (not a controlled corpus, or another build)."""


def frame_times(n_frames: int, hop_length: int, sample_rate: int) -> np.ndarray:
    """Centre time (s) of each frame of a centred STFT."""
    return np.arange(n_frames) * hop_length / sample_rate


def clip_roll(clip: Clip, times: np.ndarray) -> np.ndarray:
    """(2, ROLL_PITCHES, frames) 0/1: pitched notes sounding at each time; the top voice's highest one."""
    out = np.zeros((len(ROLL_CHANNELS), ROLL_PITCHES, len(times)), dtype=np.uint8)
    pitched = clip.kind != KIND_DRUM
    row = np.round(clip.pitch + clip.cents / 100.0).astype(int) - ROLL_LOW
    sounding = (clip.onset[:, None] <= times[None, :]) & (audible_end(clip)[:, None] > times[None, :])
    inside = pitched & (row >= 0) & (row < ROLL_PITCHES)
    for n in np.flatnonzero(inside):
        out[0, row[n], sounding[n]] = 1
    top = np.flatnonzero(inside & (clip.kind == KIND_SCORE) & (clip.part == 0))
    if len(top):
        rows = np.where(sounding[top], row[top, None], -1).max(axis=0)  # highest top-voice note per frame
        t = np.flatnonzero(rows >= 0)
        out[1, rows[t], t] = 1
    return out


def corpus_settings(root: Path) -> dict:
    path = root / "corpus.json"
    try:
        settings = json.loads(path.read_text())["settings"]
    except FileNotFoundError:
        raise RollError(path, "missing; note rolls exist only for a controlled corpus (midlevel corpus build)") from None
    except (KeyError, json.JSONDecodeError) as error:
        raise RollError(path, f"no readable 'settings' ({error})") from None
    from .sources import music21_version

    if settings.get("music21") != music21_version():
        raise RollError(path, f"built with music21 {settings.get('music21')}, installed {music21_version()}; "
                              "its clips cannot be re-realised exactly")
    return settings


def realised_clip(settings: dict, song: int):
    """Clip ``song`` (its 1-based song id) of a corpus, re-realised from the corpus settings
    (``corpus_settings``): every note as it was performed, with its part, kind and score position."""
    from .build import make_clip

    return make_clip(int(settings["seed"]), int(song) - 1, float(settings["seconds"]),
                     clips_per_piece=int(settings["clips_per_piece"]), only_split=settings.get("only_split"))[2]


def _realised_rolls(settings: dict, ids: Sequence[int], times: np.ndarray) -> np.ndarray:
    """(len(ids), channels, pitches, frames) rolls of clips ``ids`` re-realised from the corpus settings."""
    out = np.zeros((len(ids), len(ROLL_CHANNELS), ROLL_PITCHES, len(times)), dtype=np.uint8)
    for n, song in enumerate(ids):
        out[n] = clip_roll(realised_clip(settings, song), times)
    return out


def corpus_rolls(root: str | Path, song_ids: Sequence[str | int], n_frames: int, hop_length: int, *,
                 cache_dir: str | Path, progress: bool = True, workers: int | None = None) -> np.ndarray:
    """(N, 2, ROLL_PITCHES, n_frames) uint8 rolls of a controlled corpus's clips, cached in one file.

    Re-realising a clip costs ~0.15 s, so ``workers`` processes (default: every core, at most 8)
    share the clips in chunks; the result does not depend on the number of workers."""
    root = Path(root)
    s = corpus_settings(root)
    ids = [int(i) for i in song_ids]
    key = json.dumps([s, ids, n_frames, hop_length, ROLL_LOW, ROLL_PITCHES, 1])
    target = Path(cache_dir) / f"rolls-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npy"
    if not target.is_file():
        times = frame_times(n_frames, hop_length, int(s["sample_rate"]))
        workers = max(1, min(8, os.cpu_count() or 1) if workers is None else int(workers))
        chunks = [ids[i:i + 32] for i in range(0, len(ids), 32)]
        with atomic_path(target) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                            shape=(len(ids), len(ROLL_CHANNELS), ROLL_PITCHES, n_frames))
            bar = tqdm(total=len(ids), desc="note rolls", disable=not progress)
            if workers == 1 or len(chunks) <= 1:
                results = (_realised_rolls(s, chunk, times) for chunk in chunks)
                pool = None
            else:
                from .build import worker_context

                pool = ProcessPoolExecutor(max_workers=workers, mp_context=worker_context())
                results = pool.map(_realised_rolls, [s] * len(chunks), chunks, [times] * len(chunks))
            try:
                start = 0
                for part in results:  # in order, whatever finishes first
                    out[start:start + len(part)] = part
                    start += len(part)
                    bar.update(len(part))
            finally:
                bar.close()
                if pool is not None:
                    pool.shutdown(cancel_futures=True)
            out.flush()
            del out
    return np.load(target)
