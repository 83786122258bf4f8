"""The DFT written as matrix products (for the ONNX graph) against torch's FFT, and the export that uses it."""

import pytest
import torch

from midlevel.matmul_dft import DIRECT_MAX, MatmulDFTMagnitude, matmul_dft_magnitude


@pytest.mark.parametrize("n", [128, 400, 1000, 2048, 4096])
def test_magnitudes_equal_the_fft(n: int) -> None:
    window = torch.hann_window(n)
    frames = torch.randn(3, 7, n, generator=torch.Generator().manual_seed(n))
    fft = torch.fft.rfft(frames * window).abs()
    product = MatmulDFTMagnitude(window)
    assert (product.split is None) == (n <= DIRECT_MAX)  # the long ones take the two-stage split
    torch.testing.assert_close(product(frames), fft, rtol=1e-4, atol=1e-4 * float(fft.max()))


def test_a_long_prime_length_is_left_to_the_fft() -> None:
    assert matmul_dft_magnitude(torch.hann_window(1031)) is None
    assert matmul_dft_magnitude(torch.hann_window(1021)) is not None  # short: one product, prime or not
