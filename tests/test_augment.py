"""Transposing cached spectrograms matches rendering the music transposed."""

import numpy as np
import pytest
import torch

from conftest import sine
from midlevel.config import FrontendConfig
from midlevel.frontend import LogFrequencySpectrogram
from midlevel.music_features import band_centres
from midlevel.training.augment import transpose_batch, transposition_matrices

CFG = FrontendConfig()


def harmonic_chord(root_hz: float, seconds: float = 2.0) -> np.ndarray:
    """A minor triad of 4-partial tones."""
    wave = sum(sine(root_hz * 2 ** (s / 12) * h, seconds, amp=0.2 / h) for s in (0, 3, 7) for h in range(1, 5))
    return wave.astype(np.float32)


def logspec(wave: np.ndarray) -> torch.Tensor:
    return LogFrequencySpectrogram(CFG).log_spectrogram(torch.from_numpy(wave)[None])[0]


def test_zero_shift_is_the_identity_and_rows_are_interpolation_weights():
    m = transposition_matrices(CFG, 3)
    assert m.shape == (7, 149, 149)
    torch.testing.assert_close(m[3], torch.eye(149))
    torch.testing.assert_close(m.sum(-1), torch.ones(7, 149))
    assert (m >= 0).all()
    with pytest.raises(ValueError):
        transposition_matrices(CFG, -1)


@pytest.mark.parametrize("k", [-3, 2])
def test_shifted_spectrogram_matches_the_transposed_rendering(k):
    """Above ~350 Hz (bands 1/24 octave apart) the shifted spectrogram of a chord matches the
    spectrogram of the chord rendered k semitones away far better than the untransposed one does."""
    plain, moved = logspec(harmonic_chord(440.0)), logspec(harmonic_chord(440.0 * 2 ** (k / 12)))
    shifted = transposition_matrices(CFG, 3)[k + 3] @ plain
    upper = torch.as_tensor(band_centres(CFG) > 400.0)
    profile = lambda s: s[upper].mean(-1).numpy()  # noqa: E731
    r_shifted = np.corrcoef(profile(shifted), profile(moved))[0, 1]
    r_plain = np.corrcoef(profile(plain), profile(moved))[0, 1]
    assert r_shifted > 0.95 and r_shifted > r_plain + 0.3


def test_each_clip_of_a_batch_gets_a_seeded_shift():
    batch = torch.stack([logspec(harmonic_chord(f)) for f in (300.0, 440.0, 500.0, 600.0)]).half()
    m = transposition_matrices(CFG, 2)
    a = transpose_batch(batch, m, torch.Generator().manual_seed(5))
    b = transpose_batch(batch, m, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    candidates = torch.einsum("kbc,ncf->nkbf", m, batch.float())  # every clip under every shift
    err = (candidates - a[:, None]).abs().amax(dim=(-1, -2))
    assert (err.min(dim=1).values < 1e-5).all()  # each clip is one of its five transpositions
