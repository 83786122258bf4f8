"""A spectrogram cache, so training epochs never decode audio again.

Each clip is decoded once, padded or cut to one model window, and its un-normalised log
spectrogram stored as float16 in one ``.npy`` file. The file's name is a hash of the front-end
settings, the window length and every audio file's path, size and modification time, so a
changed file or setting gives a new cache instead of stale data. The file is written under a
temporary name and renamed when complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..audio import load_audio, pad_to_length
from ..frontend import LogFrequencySpectrogram
from ..ioutil import atomic_path


def cache_key(paths: Sequence[Path], frontend: LogFrequencySpectrogram, n_samples: int) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([dataclasses.asdict(frontend.cfg), n_samples]).encode())
    for p in paths:
        st = os.stat(p)
        digest.update(f"{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def cache_file(paths: Sequence[Path], frontend: LogFrequencySpectrogram, n_samples: int, cache_dir: str | Path) -> Path:
    """Where ``cached_log_spectrograms`` keeps these files' spectrograms (present once they were decoded)."""
    return Path(cache_dir) / f"logspec-{cache_key(paths, frontend, n_samples)}.npy"


@torch.no_grad()
def cached_log_spectrograms(paths: Sequence[str | Path], frontend: LogFrequencySpectrogram, n_samples: int,
                            cache_dir: str | Path, *, batch_size: int = 16, progress: bool = True) -> torch.Tensor:
    """(N, bands, frames) float16 log spectrograms of the first ``n_samples`` of each file."""
    paths = [Path(p) for p in paths]
    target = cache_file(paths, frontend, n_samples, cache_dir)
    if not target.is_file():
        frames = frontend.n_frames(n_samples)
        with atomic_path(target) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16,
                                            shape=(len(paths), frontend.n_bands, frames))
            for i in tqdm(range(0, len(paths), batch_size), desc="spectrogram cache", disable=not progress):
                batch = np.stack([pad_to_length(load_audio(p, frontend.cfg.sample_rate).samples, n_samples)[0][:n_samples]
                                  for p in paths[i:i + batch_size]])
                out[i:i + len(batch)] = frontend.log_spectrogram(torch.from_numpy(batch)).numpy().astype(np.float16)
            out.flush()
            del out
    return torch.from_numpy(np.load(target))
