"""Hashing one regular file (blocking; runs in a pool thread).

Large files are memory-mapped and hashed by blake3 on several threads, which
is what ``b3sum`` does; small ones are read in bounded chunks, since a
mapping costs more than it saves for them. Either way memory stays flat.

A file is opened once and everything is checked on that descriptor, so a
path swapped under us cannot be mixed with another file's stat. A FIFO is
opened non-blocking and rejected by its stat, so it never hangs a worker.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from dataclasses import dataclass

from blake3 import blake3

from ..errors import DigestError, InputChanged

__all__ = ["MMAP_THRESHOLD", "FileStat", "describe_path", "hash_file", "kind_of"]

#: Files at least this large are memory-mapped and hashed on several threads.
MMAP_THRESHOLD = 4 << 20
_READ_SIZE = 1 << 20
#: How often a file that keeps changing while hashed is retried before giving up.
_ATTEMPTS = 3
_PROC_FD = sys.platform.startswith("linux") and os.path.isdir("/proc/self/fd")
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True, slots=True)
class FileStat:
    """The parts of a stat that identify one version of a file's content.

    ``ctime_ns`` matters: a same-size rewrite that restores the old mtime
    (``touch -r``, ``cp -p``) still moves ctime, which nobody can set.
    """

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStat:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def describe_path(path: str) -> str:
    """``path`` printable even when it holds bytes that are not UTF-8."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def kind_of(mode: int) -> str:
    """A human name for a file type that cannot be hashed."""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def hash_file(path: str, *, mmap_threads: int = blake3.AUTO) -> tuple[str, FileStat]:
    """BLAKE3 hex of the file at ``path`` and its stat while it was hashed.

    A file whose stat changes during hashing is hashed again, a few times;
    after that :class:`InputChanged` is raised. Symlinks are followed.
    """
    for _ in range(_ATTEMPTS):
        fd = _open_regular(path)
        try:
            before = FileStat.of(os.fstat(fd))
            hex_ = _hash_fd(fd, path, before.size, mmap_threads)
            after = FileStat.of(os.fstat(fd))
        except OSError as exc:
            raise _error(path, exc) from exc
        finally:
            os.close(fd)
        if before == after:
            return hex_, after
    raise InputChanged(f"{describe_path(path)}: file kept changing while it was hashed", path=path)


def _open_regular(path: str) -> int:
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise _error(path, exc) from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise DigestError(
            f"{describe_path(path)}: cannot hash {kind_of(mode)}; only regular files"
            " and directories can be inputs",
            path=path,
        )
    return fd


def _hash_fd(fd: int, path: str, size: int, mmap_threads: int) -> str:
    if size >= MMAP_THRESHOLD:
        hasher = blake3(max_threads=mmap_threads)
        # Mapping through /proc keeps us on the inode we opened and checked.
        hasher.update_mmap(f"/proc/self/fd/{fd}" if _PROC_FD else path)
        return hasher.hexdigest()
    # Reading exactly `size` bytes saves the EOF read; growth shows in the
    # stat taken afterwards and triggers another attempt.
    hasher = blake3()
    left = size
    while left > 0 and (chunk := os.read(fd, min(left, _READ_SIZE))):
        hasher.update(chunk)
        left -= len(chunk)
    return hasher.hexdigest()


def _error(path: str, exc: OSError) -> DigestError:
    shown = describe_path(path)
    if exc.errno == errno.ELOOP:
        return DigestError(f"{shown}: symlink loop", path=path)
    if exc.errno == errno.ENXIO:  # open() of a socket
        return DigestError(f"{shown}: cannot hash a socket", path=path)
    reason = exc.strerror or str(exc)
    return DigestError(f"{shown}: cannot read: {reason}", path=path)
