"""Atomic file writes: a crash leaves the old file or the new one, never half of one."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 is for the temporary name, not the result
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_report(out: str | Path, stem: str, summary: dict, markdown: str) -> None:
    """A benchmark's results as ``OUT/STEM.json`` and its readable tables as ``OUT/STEM.md``, each atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{stem}.json", json.dumps(summary, indent=1) + "\n")
    atomic_write_text(out / f"{stem}.md", markdown)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _glibc():
    """glibc through ctypes, or None on other C libraries / platforms."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 - both exist in glibc only
        return libc
    except (OSError, AttributeError):
        return None


_GLIBC = _glibc()
_M_MMAP_THRESHOLD = -3  # mallopt parameter number in glibc's malloc.h


def fix_mmap_threshold(nbytes: int = 128 * 1024) -> bool:
    """Keep glibc's mmap threshold at ``nbytes`` (its initial value) for this process.

    With the default dynamic threshold, buffers of a long loop come from the heap and what they
    leave behind stays resident; a fixed threshold maps every large buffer and unmaps it when
    freed, so peak memory tracks what the code holds. It is process-wide, so only the command-line
    entry point calls it (a library must not change its host's allocator). Returns whether it applied.
    """
    return bool(_GLIBC is not None and _GLIBC.mallopt(_M_MMAP_THRESHOLD, int(nbytes)))


def release_freed_memory() -> None:
    """Hand memory that was freed back to the OS (glibc), so a long loop's resident size stays flat.

    glibc raises its mmap threshold after a large block is freed; later batch-sized buffers then
    come from the heap, and what they leave behind stays resident, more the more batches ran
    (measured: +70 MB for a 10-minute track). Calling ``malloc_trim(0)`` between batches returns
    those pages; it costs microseconds and does nothing where glibc is absent.
    """
    if _GLIBC is not None:
        _GLIBC.malloc_trim(0)
