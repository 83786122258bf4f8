"""Atomic file writes: a crash leaves the old file or the new one, never half of one."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import MidlevelError


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


class OutputError(MidlevelError, ValueError):
    """An output file cannot be written where the user asked; the message names the option and the path."""


#: ``input_file_problem``'s answer for a path that names nothing (callers raise their FileNotFoundError kind)
NO_SUCH_FILE = "no such file"
_SPECIAL_FILES = ((stat.S_ISFIFO, "a pipe"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                  (stat.S_ISSOCK, "a socket"))


def input_file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a regular, non-empty file (a phrase to follow ``"<path>: "``), or None.

    Every file input shares these answers: ``NO_SUCH_FILE``, a broken symbolic link, a symbolic link
    loop, a folder on the way that is a file or cannot be searched, a folder, permission denied, empty.
    Pipes, devices and sockets (``<(cmd)``, ``/dev/stdin``) are refused rather than read: a pipe can be read
    only once, while a file may be read more than once (its header for the rate, then its samples), and
    it has no size to check; write the stream to a file first.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "broken symbolic link (its target does not exist)" if os.path.islink(path) else NO_SUCH_FILE
    except OSError as exc:
        return _os_problem(exc)
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not a file"
    kind = next((name for test, name in _SPECIAL_FILES if test(st.st_mode)), None)
    if kind is not None:
        return f"not a regular file ({kind}); pass the path of a file (write a stream to a file first)"
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError as exc:
        return _os_problem(exc)
    if st.st_size == 0:
        return "file is empty (0 bytes)"
    return None


def _os_problem(exc: OSError) -> str:
    """An ``OSError`` on a path as a phrase, without the path (the caller names it)."""
    known = {errno.ELOOP: "symbolic link loop", errno.EACCES: "permission denied", errno.EPERM: "permission denied",
             errno.ENOTDIR: "no such file (a part of the path is a file, not a folder)",
             errno.ENAMETOOLONG: "file name too long", errno.EROFS: "read-only file system"}
    return known.get(exc.errno, exc.strerror or str(exc))


def output_path_problem(path: str | os.PathLike) -> str | None:
    """Why a file cannot be written at ``path`` (a phrase to follow ``"<path>: "``), or None.

    Checked before work starts, so a long computation does not end in a refusal: the nearest existing
    folder on the way must be a folder, and a file must be creatable in it (tried, then removed; what
    ``os.access`` says is not enough for root or read-only mounts). Folders still missing are not created.
    """
    target = Path(path)
    if target.is_dir():
        return "is a directory; give a file name"
    folder = target.parent
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"cannot create a folder here: {folder} is a file, not a folder" if folder.exists() \
            else f"cannot create a folder here: {folder} is a broken symbolic link"
    try:
        fd, probe = tempfile.mkstemp(prefix=".midlevel-write-check.", dir=folder)
    except OSError as exc:
        return f"cannot write in {folder} ({_os_problem(exc)})"
    os.close(fd)
    os.unlink(probe)
    return None


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


@contextmanager
def heap_buffers(nbytes: int = 32 << 20) -> Iterator[None]:
    """Inside the block, buffers up to ``nbytes`` come from glibc's heap and are reused; afterwards the
    threshold is ``fix_mmap_threshold``'s again and the freed pages go back to the OS.

    For a process that fixed the threshold (the ``midlevel`` command) and then runs a loop allocating and
    freeing many large buffers, such as autograd's backward passes: each one mapped and unmapped (and its
    pages faulted in again) at 128 KB made the attribution maps of a 3.5-minute track take 5.5 s instead
    of 2.9 s. The heap grows to the loop's working set, which it held mapped anyway. No-op without glibc.
    """
    applied = _GLIBC is not None and bool(_GLIBC.mallopt(_M_MMAP_THRESHOLD, int(nbytes)))
    try:
        yield
    finally:
        if applied:
            fix_mmap_threshold()
            release_freed_memory()
