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
from ..datasets.controlled_labels import OUTSIDE_RANGES
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


# --- equivariant augmentation (issue 30) --------------------------------------------------------
#
# Transposing or time-stretching a clip moves two of the controlled corpus's concepts by an amount
# known from their definitions (``datasets.controlled_labels``): ``register`` rates the transposition
# on 1-10 over -12..12 semitones, ``tempo`` rates ln(beats/min) over ln 50..ln 170. Showing the
# network the same clip at several heights and speeds, with those two labels moved accordingly and
# the others kept, teaches it what a pitch shift and a stretch do to each concept, which the corpus's
# own variety (one transposition and one tempo per piece) teaches only indirectly. The emotions
# depend on register and tempo through the corpus's emotion formula, so augmented clips carry no
# emotion loss (``EquivariantAugmentation.__call__``'s mask); the black-box twin, which has no
# concepts, is trained without it.


def stretch_batch(logspec: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """(B, bands, F) spectrograms played ``factors[i]`` times as fast: frame ``j`` of clip ``i`` is the
    input at frame ``j * factors[i]``, interpolated linearly between frames (as librosa's phase vocoder
    interpolates magnitudes). All outputs have the length the fastest clip allows (at most F)."""
    frames = logspec.shape[-1]
    length = min(frames, int((frames - 1) / float(factors.max())) + 1)
    pos = torch.arange(length, dtype=torch.float32)[None, :] * factors.float()[:, None]  # (B, L)
    lo = pos.floor().long().clamp(max=frames - 1)
    hi = (lo + 1).clamp(max=frames - 1)
    w = (pos - lo.float())[:, None, :]
    bands = logspec.shape[1]
    take = lambda idx: torch.gather(logspec.float(), 2, idx[:, None, :].expand(-1, bands, -1))  # noqa: E731
    return take(lo) * (1 - w) + take(hi) * w


class EquivariantAugmentation:
    """Per clip, one of: unchanged, transposed by a whole number of semitones in [-``semitones``,
    ``semitones``], or stretched by a factor drawn log-uniformly in [1/``stretch``, ``stretch``]; the
    ``register`` and ``tempo`` labels (where the model has them) move with it and stay on their 1-10
    scale (a draw that would leave it is pulled back to the edge)."""

    def __init__(self, frontend: FrontendConfig, concept_names: list[str], *, semitones: int = 0,
                 stretch: float = 1.0, scale: tuple[float, float] = (1.0, 10.0)) -> None:
        if semitones < 0 or not stretch >= 1.0:
            raise ValueError(f"semitones must be >= 0 and stretch >= 1; got {semitones}, {stretch}")
        self.semitones, self.log_stretch = int(semitones), float(np.log(stretch))
        self.matrices = transposition_matrices(frontend, self.semitones) if self.semitones else None
        span = scale[1] - scale[0]
        self.scale = scale
        self.register = concept_names.index("register") if "register" in concept_names else None
        self.tempo = concept_names.index("tempo") if "tempo" in concept_names else None
        self.per_semitone = span / (OUTSIDE_RANGES["register"][1] - OUTSIDE_RANGES["register"][0])
        self.per_log_tempo = span / (OUTSIDE_RANGES["tempo"][1] - OUTSIDE_RANGES["tempo"][0])
        self.kinds = 1 + bool(self.semitones) + bool(self.log_stretch)

    def _room(self, labels: torch.Tensor | None, index: int | None, per_unit: float, n: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """The range of moves (in units) that keeps each clip's label on its scale."""
        if labels is None or index is None:
            return torch.full((n,), -np.inf), torch.full((n,), np.inf)
        r = labels[:, index].double()
        return (self.scale[0] - r) / per_unit, (self.scale[1] - r) / per_unit

    def __call__(self, logspec: torch.Tensor, concepts: torch.Tensor | None, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(spectrograms, concept labels moved accordingly, mask of the clips left unchanged)."""
        n = logspec.shape[0]
        kind = torch.randint(self.kinds, (n,), generator=generator)  # 0 unchanged, then shift, then stretch
        options = ["shift"] * bool(self.semitones) + ["stretch"] * bool(self.log_stretch)
        concepts = concepts.clone() if concepts is not None else None
        if "stretch" in options:
            chosen = kind == 1 + options.index("stretch")
            lo, hi = self._room(concepts, self.tempo, self.per_log_tempo, n)
            draw = (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * self.log_stretch
            log_s = torch.where(chosen, torch.minimum(torch.maximum(draw, lo), hi), torch.zeros(n, dtype=torch.float64))
            logspec = stretch_batch(logspec, torch.exp(log_s))
            if concepts is not None and self.tempo is not None:
                concepts[:, self.tempo] += (log_s * self.per_log_tempo).to(concepts.dtype)
        if "shift" in options:
            chosen = kind == 1 + options.index("shift")
            lo, hi = self._room(concepts, self.register, self.per_semitone, n)
            draw = torch.randint(-self.semitones, self.semitones + 1, (n,), generator=generator).double()
            k = torch.where(chosen, torch.minimum(torch.maximum(draw, lo.ceil()), hi.floor()), torch.zeros(n, dtype=torch.float64))
            logspec = torch.einsum("nbc,ncf->nbf", self.matrices[k.long() + self.semitones], logspec.float())
            if concepts is not None and self.register is not None:
                concepts[:, self.register] += (k * self.per_semitone).to(concepts.dtype)
        return logspec, concepts, kind == 0
