"""The magnitude of a windowed real DFT written as matrix products, for the exported ONNX graph.

onnxruntime's CPU ``DFT`` and ``STFT`` kernels are slow on the many short transforms of a spectrogram
(onnxruntime issue 32403): they took 86% of the speech model's time (400 points) and about 40% of the
default music model's (2048 points), while its matrix products run on MLAS's tuned GEMM. So the export
writes the DFT as products (``LogFrequencySpectrogram.dft_as_matmul``); PyTorch keeps its FFT. No library
offers this as a graph of standard operators, hence the few lines here.

- up to ``DIRECT_MAX`` points: one product with the cosine and sine basis (n x (n + 2));
- longer: one Cooley-Tukey step, n = n1 * n2: length-n2 DFTs (a product), twiddle factors, then the
  length-n1 DFTs of the bins kept (a product), about n / (n1 + n2) times fewer operations than the
  direct product (2048 = 32 x 64: 2.4x faster than onnxruntime's DFT kernel, measured).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

DIRECT_MAX = 1024


def _split(n: int) -> tuple[int, int] | None:
    """(n1, n2) with n1 * n2 = n and n1 the largest divisor <= sqrt(n); None when n is prime."""
    for n1 in range(math.isqrt(n), 1, -1):
        if n % n1 == 0:
            return n1, n // n1
    return None


class MatmulDFTMagnitude:
    """(..., n) frames -> (..., n // 2 + 1): ``torch.fft.rfft(frames * window).abs()``, as products.

    A plain callable holding its bases as tensors on the window's device (constants of the traced graph),
    not a module, so that it never enters the model's state dict."""

    def __init__(self, window: torch.Tensor) -> None:
        n = window.numel()
        self.n, self.split = n, None if n <= DIRECT_MAX else _split(n)
        f64, w = torch.float64, window.detach().cpu().to(torch.float64)
        dtype = window.dtype if window.is_floating_point() else torch.float32
        if self.split is None:  # one product; the window folded into the basis
            angle = 2 * math.pi * torch.arange(n, dtype=f64)[:, None] * torch.arange(n // 2 + 1, dtype=f64)[None, :] / n
            self.basis = (torch.cat([torch.cos(angle), -torch.sin(angle)], dim=1) * w[:, None]).to(window.device, dtype)
            return
        n1, n2 = self.split
        self.window = window.to(window.device, dtype)
        # stage 1: sample n = i1 + n1 * i2; for each i1, the length-n2 DFT over i2 -> bin k2
        angle = 2 * math.pi * torch.arange(n2, dtype=f64)[:, None] * torch.arange(n2, dtype=f64)[None, :] / n2
        self.stage1 = torch.cat([torch.cos(angle), -torch.sin(angle)], dim=1).to(window.device, dtype)
        twiddle = -2 * math.pi * torch.arange(n1, dtype=f64)[:, None] * torch.arange(n2, dtype=f64)[None, :] / n
        self.twiddle_cos = torch.cos(twiddle).to(window.device, dtype)
        self.twiddle_sin = torch.sin(twiddle).to(window.device, dtype)
        # stage 2: bin k = n2 * k1 + k2, for the k1 that reach the n // 2 + 1 bins kept
        angle = 2 * math.pi * torch.arange(n1 // 2 + 1, dtype=f64)[:, None] * torch.arange(n1, dtype=f64)[None, :] / n1
        self.stage2_cos = torch.cos(angle).to(window.device, dtype)
        self.stage2_sin = torch.sin(angle).to(window.device, dtype)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if self.split is None:
            re, im = torch.matmul(frames, self.basis).chunk(2, dim=-1)
            return torch.sqrt(re * re + im * im)
        n1, n2 = self.split
        # (..., n) -> (..., n1, n2): row i1 holds samples i1, i1 + n1, ...; then its DFT over them
        a_re, a_im = torch.matmul((frames * self.window).unflatten(-1, (n2, n1)).transpose(-1, -2),
                                  self.stage1).chunk(2, dim=-1)
        b_re = a_re * self.twiddle_cos - a_im * self.twiddle_sin  # times exp(-2 pi i * i1 * k2 / n)
        b_im = a_re * self.twiddle_sin + a_im * self.twiddle_cos
        # sum over i1 with exp(-2 pi i * i1 * k1 / n1) = cos - i sin
        x_re = torch.matmul(self.stage2_cos, b_re) + torch.matmul(self.stage2_sin, b_im)
        x_im = torch.matmul(self.stage2_cos, b_im) - torch.matmul(self.stage2_sin, b_re)
        return torch.sqrt(x_re * x_re + x_im * x_im).flatten(-2)[..., : self.n // 2 + 1]


def matmul_dft_magnitude(window: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``MatmulDFTMagnitude(window)``, or None for a prime length above ``DIRECT_MAX`` (left to the FFT)."""
    n = window.numel()
    return None if n > DIRECT_MAX and _split(n) is None else MatmulDFTMagnitude(window)
