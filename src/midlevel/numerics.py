"""Settings the whole package computes under: floating point, and a network's inference mode."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Compute with denormal floats flushed to zero inside the block, then restore the thread's previous setting.

    Weight decay shrinks unused weights, and Adam's moments with them, geometrically towards zero, and
    activations and gradients follow them below float32's smallest normal number, where x86 arithmetic
    is many times slower: a 12000-clip run on 2 cores went from 315 s to 1263 s per epoch. Trained
    networks keep a few such weights, and inference reaches such values too (a transcriber's note
    probabilities far from any note): SHAP's forward passes through ``transcribe-a2e`` ran 2.6x slower.
    Values that small carry nothing a float32 network can use. The setting is per thread: this covers
    the calling thread, and torch's worker threads inherit it only if it was set before they started,
    which the ``midlevel`` command does first thing. Also a decorator (``@flush_denormals()``).
    """
    # torch has no getter for the flag: a denormal that survives a multiplication by one says it was off
    was_on = torch.tensor([1e-40], dtype=torch.float32).mul(1.0).item() == 0.0
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was_on)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Dropout off and BatchNorm on running statistics for the block; training flag restored."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
