"""Hashing one regular file (blocking; runs in a pool thread).

Large files are memory-mapped and hashed by blake3 on several threads, which
is what ``b3sum`` does; small ones are read in bounded chunks, since a
mapping costs more than it saves for them. Either way memory stays flat.

A mapped file that another process truncates while it is hashed makes the
kernel send SIGBUS, which kills the process that mapped it (b3sum has the
same hazard). So this process never maps a file: the caller passes a
``mapped`` function that hashes it in a worker process (:mod:`.procs`),
where SIGBUS ends only the worker. When no worker can tell (none free, or
one died), the file is read here in 8 MiB chunks, still hashed on several
threads, somewhat slower. A file that gets shorter while it is hashed is
:class:`InputChanged` at once: it is being rewritten under us.

A file is opened once and everything is checked on that descriptor, so a
path swapped under us cannot be mixed with another file's stat. A FIFO is
opened non-blocking and rejected by its stat, so it never hangs a worker.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from itertools import chain
from operator import attrgetter
from typing import NamedTuple

from blake3 import blake3

from ..errors import DigestError, InputChanged

__all__ = [
    "MMAP_THRESHOLD",
    "FileStat",
    "Mapper",
    "describe_path",
    "file_stats",
    "hash_file",
    "kind_of",
    "not_regular",
    "raw_stats_in",
    "regular_stat",
    "regular_stats_in",
    "stat_fields",
]

#: Files at least this large are memory-mapped and hashed on several threads.
MMAP_THRESHOLD = 4 << 20
_READ_SIZE = 1 << 20
_BIG_READ_SIZE = 8 << 20
#: How often a file that keeps changing while hashed is retried before giving up.
_ATTEMPTS = 3
_read = os.read  # one name for every read, so tests can write to a file mid-read
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class FileStat(NamedTuple):
    """The parts of a stat that identify one version of a file's content.

    ``ctime_ns`` matters: a same-size rewrite that restores the old mtime
    (``touch -r``, ``cp -p``) still moves ctime, which nobody can set.
    A named tuple rather than a dataclass: one is built per file hashed, and
    tuples are built and compared several times faster.
    """

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStat:
        """The identifying parts of ``st``."""
        # tuple.__new__ skips the generated Python-level __new__: built once per file.
        return _new_tuple(cls, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))


_new_tuple = tuple.__new__


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


def regular_stat(path: str) -> FileStat:
    """The stat of ``path`` (symlinks followed); a :class:`DigestError` unless regular."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _error(path, exc) from exc
    if not stat.S_ISREG(st.st_mode):
        raise not_regular(path, st.st_mode)
    return FileStat.of(st)


_FIELDS = attrgetter("st_dev", "st_ino", "st_size", "st_mtime_ns", "st_ctime_ns")
_MODE = attrgetter("st_mode")
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_DIR_FD = os.stat in os.supports_dir_fd


def regular_stats_in(directory: str, names: Sequence[str]) -> list[FileStat] | None:
    """The stats of the regular files ``names`` of ``directory``, or None.

    :func:`raw_stats_in` as :class:`FileStat` values.
    """
    found = raw_stats_in(directory, names)
    return None if found is None else file_stats(found)


def raw_stats_in(directory: str, names: Sequence[str]) -> list[os.stat_result] | None:
    """The ``os.stat`` results of the regular files ``names`` of ``directory``, or None.

    The same checks as :func:`regular_stat` on each (symlinks followed, only
    regular files), but each stat is relative to the open directory and the
    loop runs in C (``map``): a warm digest does this for every file, and the
    Python of one :func:`regular_stat` call per file cost more than the stat.
    None when anything is amiss (a file gone, not regular, no ``dir_fd``
    support): the caller then calls :func:`regular_stat` per file, whose
    errors name the path.
    """
    if not _DIR_FD:
        return None
    try:
        fd = os.open(directory, _DIR_FLAGS)
    except OSError:
        return None
    try:
        found = list(map(partial(os.stat, dir_fd=fd), names))
    except OSError:
        return None
    finally:
        os.close(fd)
    if not all(map(stat.S_ISREG, map(_MODE, found))):
        return None
    return found


def file_stats(found: Iterable[os.stat_result]) -> list[FileStat]:
    """:meth:`FileStat.of` of each of ``found``, in one C-level pass."""
    return list(map(partial(_new_tuple, FileStat), map(_FIELDS, found)))


def stat_fields(found: Iterable[os.stat_result]) -> list[int]:
    """The five :class:`FileStat` fields of each of ``found``, flat, without a FileStat each."""
    return list(chain.from_iterable(map(_FIELDS, found)))


#: Hashes a large file memory-mapped somewhere safe; None when it cannot tell.
Mapper = Callable[[str, FileStat], "str | None"]


def hash_file(
    path: str, *, expected: FileStat | None = None, mapped: Mapper | None = None
) -> tuple[str, FileStat]:
    """BLAKE3 hex of the file at ``path`` and its stat while it was hashed.

    ``expected`` is a stat taken just before (it saves a system call per
    file); the file must still match it after hashing. A file whose stat
    changes during hashing is hashed again, a few times; after that, or as
    soon as it is shorter than it was, :class:`InputChanged` is raised.
    Files of at least :data:`MMAP_THRESHOLD` bytes go to ``mapped`` first
    (see the module docstring). Symlinks are followed.
    """
    first = expected
    if expected is not None and expected.size < _READ_SIZE:
        quick = _hash_small(path, expected)
        if quick is not None:
            return quick
        expected = None
    for _ in range(_ATTEMPTS):
        fd = _open(path)
        try:
            small = expected is not None and expected.size < MMAP_THRESHOLD
            # A mapping re-opens the file: it must be known regular on this very fd.
            before = expected if small and expected else _regular_fstat(fd, path)
            _check_not_shorter(path, first, before)
            hex_ = _hash_fd(fd, path, before, mapped)
            after_st = os.fstat(fd)
        except OSError as exc:
            raise _error(path, exc) from exc
        finally:
            os.close(fd)
        after = FileStat.of(after_st)
        if after == before:
            return hex_, after
        if not stat.S_ISREG(after_st.st_mode):
            raise not_regular(path, after_st.st_mode)
        _check_not_shorter(path, before, after)
        expected = None
    raise InputChanged(f"{describe_path(path)}: file kept changing while it was hashed", path=path)


def _check_not_shorter(path: str, was: FileStat | None, now: FileStat) -> None:
    if was is not None and now.size < was.size:
        raise InputChanged(
            f"{describe_path(path)}: file shrank from {was.size} to {now.size} bytes"
            " while it was hashed",
            path=path,
        )


def _hash_small(path: str, expected: FileStat) -> tuple[str, FileStat] | None:
    """One read for a small file already known regular; None if it changed."""
    # Most inputs of a large tree take this path, so it saves every call it can.
    try:
        fd = os.open(path, _OPEN_FLAGS)  # non-blocking: see _open
    except OSError as exc:
        raise _error(path, exc) from exc
    try:
        data = _read(fd, expected.size)
        st = os.fstat(fd)
    except OSError as exc:
        raise _error(path, exc) from exc
    finally:
        os.close(fd)
    after = FileStat.of(st)
    if after != expected:
        return None
    return blake3(data).hexdigest(), after


def _open(path: str) -> int:
    # Non-blocking, so a FIFO swapped in after the stat cannot hang the worker.
    try:
        return os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise _error(path, exc) from exc


def _regular_fstat(fd: int, path: str) -> FileStat:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise not_regular(path, st.st_mode)
    return FileStat.of(st)


def not_regular(path: str, mode: int) -> DigestError:
    """The error for an input that is neither a regular file nor a directory."""
    if stat.S_ISDIR(mode):
        return DigestError(f"{describe_path(path)}: is a directory, not a file", path=path)
    return DigestError(
        f"{describe_path(path)}: cannot hash {kind_of(mode)};"
        " only regular files and directories can be inputs",
        path=path,
    )


def _hash_fd(fd: int, path: str, before: FileStat, mapped: Mapper | None) -> str:
    size = before.size
    if size < MMAP_THRESHOLD:
        hasher, read_size = blake3(), _READ_SIZE
    else:
        # The mapper re-opens the path; it checks the inode against `before`.
        if mapped is not None and (hex_ := mapped(path, before)) is not None:
            return hex_
        hasher, read_size = blake3(max_threads=blake3.AUTO), _BIG_READ_SIZE
    # Reading exactly `size` bytes saves the EOF read; growth shows in the
    # stat taken afterwards and triggers another attempt.
    left = size
    while left > 0 and (chunk := _read(fd, min(left, read_size))):
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
