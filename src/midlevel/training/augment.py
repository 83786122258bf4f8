"""Transposition of cached log-frequency spectrograms, a training augmentation.

Why: a network trained on a few hundred pieces learns to recognise the pieces (their keys,
registers, voicings) and their ratings together; on unseen pieces its concept predictions fall
far below its training fit. The mid-level concepts do not change when music is transposed by a
few semitones (intervals, mode, key clarity, rhythm and articulation are all relative), so
showing each training clip at a random transposition takes that shortcut away without new audio.

A transposition by ``k`` semitones moves every partial from ``f`` to ``f * 2**(k/12)``. On the
frontend's bands it is a resampling of the band axis: band ``b`` (centre ``f_b``) takes the value
the untransposed spectrogram has at ``f_b / 2**(k/12)``, interpolated linearly in log frequency
between band centres (exact where bands are 1/24 octave apart, above ~350 Hz; an interpolation of
FFT bins below). Done on cached spectrograms, as one (bands x bands) matrix per shift, because
rendering or pitch-shifting the audio again each epoch would cost more than the training itself
(torchaudio's ``PitchShift`` runs a phase vocoder per clip). Targets that depend on register (the
controlled corpus's emotions do, a little) are not invariant: the recipes apply it to concept
learning, where the labels are.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import FrontendConfig
from ..music_features import band_centres


def transposition_matrices(cfg: FrontendConfig, max_semitones: int) -> torch.Tensor:
    """(2 * max_semitones + 1, bands, bands): matrix ``i`` transposes by ``i - max_semitones`` semitones.

    ``T @ spec`` of a (bands, frames) spectrogram; beyond the lowest and highest band centres the
    edge band's value is repeated (``np.interp`` clamps).
    """
    if max_semitones < 0:
        raise ValueError(f"max_semitones must be >= 0, got {max_semitones}")
    position = np.log2(np.maximum(band_centres(cfg), 1e-6))
    identity = np.eye(len(position))
    out = []
    for k in range(-max_semitones, max_semitones + 1):
        source = position - k / 12.0
        out.append(np.stack([np.interp(source, position, identity[:, j]) for j in range(len(position))], axis=1))
    return torch.as_tensor(np.stack(out), dtype=torch.float32)


def transpose_batch(logspec: torch.Tensor, matrices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each clip of a (B, bands, frames) batch transposed by its own random shift drawn from ``generator``."""
    shift = torch.randint(len(matrices), (logspec.shape[0],), generator=generator)
    return torch.einsum("nbc,ncf->nbf", matrices[shift], logspec.float())
