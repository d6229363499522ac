"""Open files a task controls without following it anywhere, and without blocking.

A task writes its own root directory (``<work>/tasks/<id>/root``) from inside
the sandbox, so every name below it is hostile: a symlink to ``/etc/shadow``
or to the server's database, a FIFO that blocks ``open()`` forever, a
directory where a file was expected. The host side therefore opens such paths
one component at a time from a descriptor of the root, with ``O_NOFOLLOW`` at
every step (a symbolic link anywhere is refused, never followed) and
``O_NONBLOCK`` on the last one (a FIFO cannot hang the open), and refuses
whatever is not a regular file (or directory, where a directory is asked for).

The blocking parts (opens, tails) run through :func:`in_file_pool`: a small
dedicated pool with a deadline, so no task can stall the event loop or use up
the loop's default thread pool.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import weakref
from asyncio import AbstractEventLoop, get_running_loop
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread

from ..errors import UnsafePath

__all__ = [
    "FILE_IO_TIMEOUT",
    "UnsafePath",
    "check_beneath",
    "in_file_pool",
    "open_beneath",
    "read_tail",
]

T = TypeVar("T")

#: Seconds any one file operation on a task's files may take before it is abandoned.
FILE_IO_TIMEOUT = 30.0
#: Worker threads for task file I/O, per event loop (a stuck one does not block the rest).
FILE_IO_THREADS = 4

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LAST_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND
# Per loop: the queue a call waits in, then the threads it runs on (two, so
# the deadline can start after the wait and not include it).
_limiters: weakref.WeakKeyDictionary[
    AbstractEventLoop, tuple[anyio.CapacityLimiter, anyio.CapacityLimiter]
] = weakref.WeakKeyDictionary()


def _parts(container: str) -> list[str]:
    parts = [p for p in container.split("/") if p]
    if any(p in (".", "..") for p in parts):  # validation refuses these; never trust it here
        raise UnsafePath(f"{container}: '.' and '..' are not allowed")
    return parts


def _open_parent(root: Path, parts: list[str], container: str) -> int:
    """A descriptor of the directory holding ``parts[-1]``, reached without links."""
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in parts[:-1]:
            try:
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _refusal(container, exc) from None
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _refusal(container: str, exc: OSError) -> UnsafePath:
    if exc.errno in (errno.ELOOP, errno.EMLINK):
        why = "is (or goes through) a symbolic link"
    elif exc.errno == errno.ENOTDIR:
        why = "goes through something that is not a directory (or through a link)"
    elif exc.errno == errno.ENXIO:
        why = "is not a regular file (a FIFO or socket)"
    elif exc.errno == errno.EISDIR:
        why = "is not a regular file (a directory)"
    elif exc.errno == errno.ENOENT:
        why = "does not exist"
    else:
        why = f"cannot be opened ({exc.strerror})"
    return UnsafePath(f"{container} {why}")


def open_beneath(root: Path, container: str, *, write: bool = False) -> int:
    """A descriptor of the regular file ``container`` below ``root``; the caller closes it.

    ``write`` creates the file when missing and empties it (as a shell's
    ``>`` does); writes append, so stdout and stderr sent to one file
    interleave instead of overwriting each other. Links at any component, FIFOs, sockets, devices
    and directories are refused with :class:`UnsafePath`; nothing blocks.
    """
    parts = _parts(container)
    if not parts:
        raise UnsafePath(f"{container} is not a file")
    parent = _open_parent(root, parts, container)
    try:
        flags = _LAST_FLAGS | (_WRITE_FLAGS if write else os.O_RDONLY)
        try:
            fd = os.open(parts[-1], flags, 0o644, dir_fd=parent)
        except OSError as exc:
            raise _refusal(container, exc) from None
    finally:
        os.close(parent)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(f"{container} is not a regular file")
        if write:  # truncated only once it is known to be a regular file
            os.ftruncate(fd, 0)
        # The child gets an ordinary blocking descriptor (it is a regular file).
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_beneath(root: Path, container: str) -> None:
    """Raise :class:`UnsafePath` unless ``container`` below ``root`` is reached without
    links and is a regular file or a directory (a bind source must be one of those)."""
    parts = _parts(container)
    if not parts:
        return
    parent = _open_parent(root, parts, container)
    try:
        try:
            fd = os.open(parts[-1], os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        except OSError as exc:
            raise _refusal(container, exc) from None
    finally:
        os.close(parent)
    try:
        mode = os.fstat(fd).st_mode
    finally:
        os.close(fd)
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise UnsafePath(f"{container} is not a regular file or directory")


def read_tail(root: Path, container: str, limit: int) -> str:
    """The last ``limit`` bytes of ``container`` (below ``root``) as text.

    A path the task turned into a link or special file gives a one-line note
    instead of its content: the host never reads what it points to.
    """
    try:
        fd = open_beneath(root, container)
    except UnsafePath as exc:
        return f"[tesengine: not read: {exc}]\n"
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - limit))
        return f.read(limit).decode("utf-8", errors="replace")


def _limiters_for_loop() -> tuple[anyio.CapacityLimiter, anyio.CapacityLimiter]:
    loop = get_running_loop()
    pair = _limiters.get(loop)
    if pair is None:
        pair = _limiters[loop] = (
            anyio.CapacityLimiter(FILE_IO_THREADS),
            anyio.CapacityLimiter(FILE_IO_THREADS),
        )
    return pair


async def in_file_pool(
    func: Callable[..., T], *args: object, seconds: float = FILE_IO_TIMEOUT
) -> T:
    """Run ``func(*args)`` in the bounded task-file pool; give up after ``seconds``.

    The deadline starts once a worker slot is free: time spent queued behind
    other tasks' file I/O (10,000 tasks finishing at once) is not the task's
    fault, so only a call that itself hangs is refused. On timeout or
    cancellation the thread is abandoned (its slot freed), so one hung file
    system call cannot hold a task, the pool or the loop.
    """
    gate, threads = _limiters_for_loop()
    async with gate:
        try:
            with anyio.fail_after(seconds):
                return await anyio.to_thread.run_sync(
                    func, *args, limiter=threads, abandon_on_cancel=True
                )
        except TimeoutError:
            name = getattr(func, "__name__", "file operation")
            raise UnsafePath(f"{name} on the task's files took over {seconds:g} s") from None


def close_quietly(*fds: int | None) -> None:
    """Close each descriptor that is not None, ignoring errors."""
    for fd in fds:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
