"""The spectrogram's windowed real DFT written as matrix products, for the exported ONNX graph.

onnxruntime's CPU ``DFT`` and ``STFT`` kernels are slow on the many short transforms of a spectrogram
(onnxruntime issue 32403): they took 86% of the speech model's time (400 points) and about 40% of the
default music model's (2048 points), while its matrix products and convolutions run on MLAS's tuned GEMM.
So the export computes the filtered STFT magnitude with those (``LogFrequencySpectrogram.dft_as_matmul``);
PyTorch keeps its FFT. No library offers this as a graph of standard operators, hence the code here.

- ``MatmulSpectrogram``, what the export uses: where the hop shares a factor B with the length n, one
  Cooley-Tukey step read straight off the waveform (a grouped convolution and a batched product, the
  window and twiddle factors folded into them; see the class); the default's graph ran about 1.5x faster
  with it than with the ``Gather`` framing, products and complex arithmetic below (``benchmarks/onnx_profile.py``).
- otherwise frames cut by ``frames_by_slices`` and ``MatmulDFTMagnitude``: up to ``DIRECT_MAX`` points one
  product with the cosine and sine basis (n x (n + 2)); longer, one Cooley-Tukey step, n = n1 * n2 (length-n2
  DFTs as a product, twiddle factors, then the length-n1 DFTs of the bins kept as a product).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.nn import functional as F

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


def frames_by_slices(x: torch.Tensor, length: int, hop: int, n_frames: int | None = None) -> torch.Tensor:
    """(..., T) -> (..., F, length) with F = (T - length) // hop + 1: ``x.unfold(-1, length, hop)``, copied.

    Written as a reshape into rows of ``hop`` samples and a concatenation of a few shifted slices of them
    (frame f = rows f, f + 1, ... and the head of the next), because the exporter writes ``unfold`` as a
    ``Gather`` with an index per sample, which onnxruntime runs as a slow element-by-element copy (it took 16%
    of the default's time), while slices and a concatenation are block copies. A caller that knows F as a
    symbolic size (``model.slice_windows``) passes it, with ``x`` long enough for every row a frame reaches:
    then no size is derived from ``x`` and nothing is padded, so an exported graph keeps the caller's sizes."""
    whole, rest = divmod(length, hop)
    derived = n_frames is None
    if derived:
        n_frames = (x.shape[-1] - length) // hop + 1
    n_rows = n_frames + whole - (0 if rest else 1)  # rows any frame reaches
    need = n_rows * hop
    if derived and x.shape[-1] < need:
        x = F.pad(x, (0, need - x.shape[-1]))  # the pad is never read
    rows = x[..., :need].unflatten(-1, (n_rows, hop))
    parts = [rows[..., i:i + n_frames, :] for i in range(whole)]
    if rest:
        parts.append(rows[..., whole:whole + n_frames, :rest])
    return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0][..., :length]


def _rows_split(n: int, hop: int) -> tuple[int, int] | None:
    """(A, B), n = A * B with B dividing ``hop``, the cheapest for ``MatmulSpectrogram``'s two products
    (about n * (A + 2B) multiply-adds a frame); None when no B in 2..n/2 divides both n and hop."""
    options = [(n // b, b) for b in range(2, n // 2 + 1) if n % b == 0 and hop % b == 0]
    return min(options, key=lambda ab: ab[0] + 2 * ab[1]) if options else None


class MatmulSpectrogram:
    """(batch, samples) waveforms -> (batch, bands, frames): ``filterbank`` (n // 2 + 1, bands) applied to the
    magnitude of the centred STFT (reflection padding, ``window``, frames ``hop`` apart; what
    ``LogFrequencySpectrogram.filtered`` computes with ``unfold`` and ``torch.fft.rfft``), in operators that
    onnxruntime runs fast. A plain callable: its matrices are constants of the traced graph, never in a state dict.

    Where the hop shares a factor B with n (``_rows_split``: 2048 with hop 704 gives A = 64, B = 32; 400 with
    hop 160 gives 25 x 16), one Cooley-Tukey step, laid out so that no operator copies element by element
    and no elementwise complex arithmetic is left (the previous export spent most of its front-end time on
    a ``Gather`` for the framing and on complex multiplies):

    - sample ``B * a + b`` of a frame. The waveform as rows of B samples, transposed to (batch, B, rows): the
      frames of channel b are then runs of A rows, ``hop / B`` apart, so one grouped ``Conv1d`` (stride
      hop / B) gives every b's length-A real DFT, the analysis window folded into its kernel, without building
      frames (onnxruntime's convolution copies each frame as a contiguous block, im2col);
    - the twiddle factors exp(-2 pi i b k / n) are folded into the second product, one (2B x 2B) real matrix
      per first-stage bin k1 (a batched MatMul over k1), giving bins ``k1 + A * k2`` as re and im rows;
    - only k1 <= A / 2 is computed: the other bins are conjugates of those (real frames), equal in magnitude;
    - the magnitude is a square, a sum of the re and im rows and a square root; then the filterbank, its rows
      moved to where each bin lands, is the last product, which leaves frames last, as the backbone reads them.

    Otherwise (no such B): ``frames_by_slices``, ``MatmulDFTMagnitude`` and the filterbank.
    """

    def __init__(self, window: torch.Tensor, hop: int, filterbank: torch.Tensor) -> None:
        n = window.numel()
        self.n, self.hop = n, hop
        dtype = window.dtype if window.is_floating_point() else torch.float32
        device = window.device
        self.rows = _rows_split(n, hop)
        if self.rows is None:
            self.dft = MatmulDFTMagnitude(window)
            self.filterbank = filterbank.detach().to(device, dtype)
            return
        a_len, b_len = self.rows
        k1_len = a_len // 2 + 1
        f64, w = torch.float64, window.detach().cpu().to(torch.float64)
        a, b, k1, k2 = (torch.arange(m, dtype=f64) for m in (a_len, b_len, k1_len, b_len))
        # stage 1 as a Conv1d weight (B * 2 * K1, 1, A): output channel (b, re|im, k1), tap a; the window folded in
        angle = 2 * math.pi * k1[:, None] * a[None, :] / a_len  # (K1, A)
        win = w.reshape(a_len, b_len).T[:, None, :]  # (B, 1, A): w[B * a + b]
        stage1 = torch.stack([torch.cos(angle)[None] * win, -torch.sin(angle)[None] * win], dim=1)
        self.stage1 = stage1.reshape(b_len * 2 * k1_len, 1, a_len).to(device, dtype)
        # stage 2, per k1: (re|im of k2) x (re|im of b) of exp(-i theta) * (zr + i zi), theta = 2 pi b k / n
        theta = 2 * math.pi * b[None, None, :] * (k1[:, None, None] + a_len * k2[None, :, None]) / n  # (K1, k2, b)
        c, s = torch.cos(theta), torch.sin(theta)
        self.stage2 = torch.cat([torch.cat([c, s], dim=2), torch.cat([-s, c], dim=2)], dim=1).to(device, dtype)
        # the filterbank's row of bin k <= n / 2 at the computed (k1, k2) that holds |X[k]|
        fb = torch.zeros(k1_len * b_len, filterbank.shape[1], dtype=f64)
        for k in range(n // 2 + 1):
            src = k if k % a_len <= a_len // 2 else n - k  # |X[n - k]| = |X[k]| for real frames
            fb[(src % a_len) * b_len + src // a_len] += filterbank[k].detach().cpu().to(f64)
        self.filterbank = fb.T.contiguous().to(device, dtype)  # (bands, K1 * B)

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        n, hop = self.n, self.hop
        n_frames = wave.shape[-1] // hop + 1
        used = (n_frames - 1) * hop + n  # the padded samples the frames read
        right = used - n // 2 - wave.shape[-1]
        padded = F.pad(wave.unsqueeze(1), (n // 2, max(right, 0)), mode="reflect").squeeze(1)[..., :used]
        if self.rows is None:
            mag = self.dft(frames_by_slices(padded, n, hop))  # (batch, frames, n // 2 + 1)
            return torch.matmul(mag, self.filterbank).transpose(-1, -2)
        a_len, b_len = self.rows
        channels = padded.unflatten(-1, (used // b_len, b_len)).transpose(-1, -2)  # (batch, B, rows)
        z = F.conv1d(channels, self.stage1, stride=hop // b_len, groups=b_len)  # (batch, B * 2 * K1, frames)
        z = z.unflatten(1, (b_len, 2, a_len // 2 + 1)).permute(0, 3, 2, 1, 4).flatten(2, 3)  # (batch, K1, 2B, frames)
        x = torch.matmul(self.stage2, z)  # (batch, K1, 2B: re, im of each k2, frames)
        # square, sum, root: onnxruntime's single ReduceL2 for it was slower
        power = (x * x).unflatten(2, (2, b_len)).sum(dim=2)  # (batch, K1, B, frames)
        return torch.matmul(self.filterbank, torch.sqrt(power).flatten(1, 2))  # (batch, bands, frames)


def matmul_spectrogram(window: torch.Tensor, hop: int, filterbank: torch.Tensor
                       ) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``MatmulSpectrogram(window, hop, filterbank)``, or None where neither of its ways applies (a prime length
    above ``DIRECT_MAX`` whose hop shares no factor with it: left to the FFT, whose export frames by ``Gather``)."""
    n = window.numel()
    if n > DIRECT_MAX and _rows_split(n, hop) is None and _split(n) is None:
        return None
    return MatmulSpectrogram(window, hop, filterbank)
