"""The spectrogram's DFT written as products and convolutions (for the ONNX graph) against torch's FFT and
``unfold``, and the export that uses it."""

import pytest
import torch
from torch.nn import functional as F

from midlevel.config import FrontendConfig
from midlevel.frontend import LogFrequencySpectrogram
from midlevel.matmul_dft import (DIRECT_MAX, MatmulDFTMagnitude, MatmulSpectrogram, _rows_split, frames_by_slices,
                                 matmul_spectrogram)


@pytest.mark.parametrize("n", [128, 400, 1000, 2048, 4096])
def test_magnitudes_equal_the_fft(n: int) -> None:
    window = torch.hann_window(n)
    frames = torch.randn(3, 7, n, generator=torch.Generator().manual_seed(n))
    fft = torch.fft.rfft(frames * window).abs()
    product = MatmulDFTMagnitude(window)
    assert (product.split is None) == (n <= DIRECT_MAX)  # the long ones take the two-stage split
    torch.testing.assert_close(product(frames), fft, rtol=1e-4, atol=1e-4 * float(fft.max()))


@pytest.mark.parametrize("length,hop", [(2048, 704), (400, 160), (128, 20), (64, 64), (64, 32), (50, 80), (7, 3)])
@pytest.mark.parametrize("extra", [0, 1, 5, 300])
def test_framing_by_slices_is_unfold(length: int, hop: int, extra: int) -> None:
    """Every frame ``unfold`` gives, exactly, whatever the hop's relation to the length and the tail's size."""
    x = torch.randn(2, 3, length + 4 * hop + extra, generator=torch.Generator().manual_seed(length + extra))
    assert torch.equal(frames_by_slices(x, length, hop), x.unfold(-1, length, hop))


def reference(wave: torch.Tensor, window: torch.Tensor, hop: int, fb: torch.Tensor) -> torch.Tensor:
    """What ``LogFrequencySpectrogram.filtered`` computes: centred reflection-padded STFT magnitude, filterbank."""
    n = window.numel()
    padded = F.pad(wave.unsqueeze(1), (n // 2, n // 2), mode="reflect").squeeze(1)
    return torch.matmul(torch.fft.rfft(padded.unfold(-1, n, hop) * window).abs(), fb).transpose(1, 2)


@pytest.mark.parametrize("n,hop,rows", [(2048, 704, (64, 32)), (400, 160, (25, 16)), (128, 20, (32, 4)),
                                        (2048, 512, (64, 32)), (2048, 1536, (64, 32)), (256, 300, (64, 4)),
                                        (2048, 701, None), (1000, 7, None)])
@pytest.mark.parametrize("n_samples", [22050, 22051, 22400])
def test_the_exported_spectrogram_equals_the_fft(n: int, hop: int, rows, n_samples: int) -> None:
    """Both ways (the rows-of-B step where the hop shares a factor with n, else framing and products), every
    frame, the filterbank's rows moved to where each bin lands: equal to the FFT to float rounding."""
    gen = torch.Generator().manual_seed(n + hop + n_samples)
    window, fb = torch.hann_window(n), torch.rand(n // 2 + 1, 9, generator=gen)
    wave = torch.randn(3, n_samples, generator=gen)
    assert _rows_split(n, hop) == rows
    expected = reference(wave, window, hop, fb)
    got = MatmulSpectrogram(window, hop, fb)(wave)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))


def test_any_window_is_folded_in() -> None:
    window = torch.rand(2048, generator=torch.Generator().manual_seed(1))
    fb, wave = torch.rand(1025, 5), torch.randn(2, 30000)
    expected = reference(wave, window, 704, fb)
    torch.testing.assert_close(MatmulSpectrogram(window, 704, fb)(wave), expected, rtol=1e-4,
                               atol=1e-5 * float(expected.abs().max()))


def test_a_long_prime_length_is_left_to_the_fft() -> None:
    fb = torch.rand(1031 // 2 + 1, 3)
    assert matmul_spectrogram(torch.hann_window(1031), 700, fb) is None  # no split, no factor shared with the hop
    assert matmul_spectrogram(torch.hann_window(1021), 700, fb[:511]) is not None  # short: one product, prime or not


@pytest.mark.parametrize("cfg", [FrontendConfig(), FrontendConfig(sample_rate=16000, n_fft=400, hop_length=160,
                                                                  bands_per_octave=12, fmin=50.0, fmax=8000.0),
                                 FrontendConfig(sample_rate=2000, n_fft=128, hop_length=20, bands_per_octave=12,
                                                fmin=20.0, fmax=1000.0)])
def test_the_front_end_inside_dft_as_matmul_gives_its_own_output(cfg: FrontendConfig) -> None:
    """What the export traces (``dft_as_matmul``) against the eager front-end, on the zoo's three front-ends."""
    fe = LogFrequencySpectrogram(cfg).eval()
    wave = torch.randn(2, 3 * cfg.sample_rate, generator=torch.Generator().manual_seed(cfg.n_fft)) * 0.1
    eager = fe.log_spectrogram(wave)
    with fe.dft_as_matmul():
        exported = fe.log_spectrogram(wave)
    assert fe._export_filtered is None
    torch.testing.assert_close(exported, eager, rtol=0, atol=1e-5)
