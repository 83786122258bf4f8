"""Training beyond one CPU: the device, mixed precision, and data parallelism under ``torchrun``.

One process trains as before. Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) every process
runs the same program on the same cached spectrograms: each epoch's order, crops and augmentations are
drawn for the *global* batch exactly as one process draws them, then every rank trains on its contiguous
share of that batch inside ``DistributedDataParallel``. Each rank's loss is scaled by its share of the
global batch, so the averaged gradient is the gradient of the global batch's mean loss: the run follows
one process with the same global batch, except that batch normalisation sees only a rank's share (its running statistics are averaged over the
ranks after each epoch; no
``SyncBatchNorm``: torch runs it on GPUs only, and it would replace the model's layers in place, changing
what is saved and exported). Validation runs on every rank (identical weights
give identical scores, so every rank takes the same early-stopping decision without communicating);
checkpoints, the best model, logs and progress bars come from rank 0 only, and the spectrogram cache is
built by rank 0 before the others read it. Resuming is unchanged: every rank reads rank 0's state.

Mixed precision: on CUDA the forward pass runs under ``torch.autocast`` in bfloat16 where the GPU
supports it (same exponent range as float32: no loss scaling, no overflow in the log spectrogram or the
heads' penalties); elsewhere training stays in float32. The backend is NCCL on CUDA and gloo otherwise.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

from ..errors import MidlevelError

DEVICES = ("auto", "cpu", "cuda", "mps")


class DeviceError(MidlevelError, ValueError):
    """A requested device that this machine or this torch build does not have."""


def resolve_device(name: str | torch.device | None = "cpu", *, local_rank: int = 0) -> torch.device:
    """``"auto"`` (CUDA, else MPS, else CPU), ``"cpu"``, ``"cuda"`` / ``"cuda:N"`` or ``"mps"``; under torchrun a
    bare ``"cuda"`` means the process's own GPU (``LOCAL_RANK``). Refuses, in one line, what is not there."""
    text = str(name or "cpu")
    kind = text.split(":", 1)[0]
    if kind not in DEVICES:
        raise DeviceError(f"--device must be one of {', '.join(DEVICES)} (cuda:N for one GPU); got {text!r}")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {text}: this torch build or machine has no CUDA GPU "
                              f"(torch {torch.__version__}; torch.cuda.is_available() is False); use --device cpu")
        index = int(text.split(":", 1)[1]) if ":" in text else local_rank % torch.cuda.device_count()
        if index >= torch.cuda.device_count():
            raise DeviceError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) here")
        return torch.device("cuda", index)
    if kind == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("--device mps: Apple's Metal backend is not available on this machine; use --device cpu")
    return torch.device(kind)


@dataclass(frozen=True)
class Parallel:
    """Where this process stands among those training together (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. writes a cache), the others after it (and read what it wrote)."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()

    def share(self, n: int) -> slice:
        """This rank's contiguous part of a global batch of ``n`` (sizes differ by at most one)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def trainable_batch(self, n: int) -> bool:
        """Whether every rank's share of a global batch of ``n`` has the two clips batch normalisation needs
        (the same answer on every rank; a batch that fails is skipped by all)."""
        return n // self.world >= 2 or (not self.distributed and n >= 1)

    def sum(self, value: float) -> float:
        """``value`` summed over the ranks."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item())

    def wrap(self, module: torch.nn.Module, *, unused_parameters: bool = False) -> torch.nn.Module:
        """The module whose backward averages gradients over the ranks (``module`` itself for one process).

        ``module``'s forward must compute the loss (DDP synchronises what goes through its forward);
        ``unused_parameters``: some trainable parameters get no gradient (the head while concepts are trained).
        Buffers are not broadcast at every step: each rank's batch-norm statistics follow its own share and
        ``average_buffers`` makes them one again after each epoch."""
        if not self.distributed:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        ddp = torch.nn.parallel.DistributedDataParallel
        # newer torch names it forward_sync_buffers (the start is still synchronised: every rank loads the same)
        no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp).parameters
                   else {"broadcast_buffers": False})
        return ddp(module, device_ids=ids, find_unused_parameters=unused_parameters, **no_sync)

    def average_buffers(self, module: torch.nn.Module) -> None:
        """Floating-point buffers (batch-norm running statistics) averaged over the ranks, so that every rank
        validates, saves and stops with the same model."""
        if not self.distributed:
            return
        with torch.no_grad():
            for buffer in module.buffers():
                if buffer.is_floating_point():
                    dist.all_reduce(buffer)
                    buffer.div_(self.world)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bfloat16 autocast on CUDA GPUs that support it; no change elsewhere (module docstring)."""
        if self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def parallel_from_environment(device: str | torch.device | None = "cpu") -> Parallel:
    """The ``Parallel`` of this process: from torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (joining the
    process group on first use: NCCL on CUDA, gloo otherwise), or one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank=local_rank)
    if world <= 1:
        return Parallel(0, 1, resolved)
    if not dist.is_initialized():
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
    return Parallel(dist.get_rank(), dist.get_world_size(), resolved)
