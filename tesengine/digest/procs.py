"""A few worker processes: many small files hashed in parallel, large files mapped safely.

Reading and hashing a 16 KiB file costs ~12 µs of Python, most of it
holding the GIL, so threads cannot share that work; processes can. They
are started lazily (only a large batch of files to hash pays for them),
reused, and stopped by :meth:`HashProcs.close` and at interpreter exit.

Each is a fresh interpreter running :mod:`._hashproc` (fork + exec, the
"spawn" way, never a bare fork, which would copy the locks of obstore's and
aiohttp's threads mid-use). It imports only blake3, starts in ~10 ms, and
exits by itself when its stdin closes, so a parent that dies leaves none
behind. A worker process is driven by one digest pool thread at a time,
which blocks on the pipe without holding the GIL.

Large files are memory-mapped in a worker too (:meth:`HashProcs.hash_mapped`):
a file truncated under a mapping raises SIGBUS, which then ends that worker
and not the program embedding tesengine.
"""

from __future__ import annotations

import atexit
import marshal
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ._hashproc import MAP, READ, read_exact, write_all
from .filehash import FileStat

__all__ = ["HashProcs"]

T = TypeVar("T")

_SCRIPT = str(Path(__file__).with_name("_hashproc.py"))
_live: weakref.WeakSet[HashProcs] = weakref.WeakSet()


class _Broken(Exception):
    """A worker process went away; its batch is hashed in the thread instead."""


class _Proc:
    def __init__(self) -> None:
        # -P: the script's folder must not shadow the standard library.
        self.popen = subprocess.Popen(
            [sys.executable, "-P", _SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert self.popen.stdin is not None
        assert self.popen.stdout is not None
        self._in = self.popen.stdin.fileno()
        self._out = self.popen.stdout.fileno()

    def call(self, kind: int, paths: list[str], stats: list[int]) -> list[bytes | None]:
        body = marshal.dumps((kind, paths, stats))
        try:
            write_all(self._in, len(body).to_bytes(4, "little") + body)
            head = _read_exact(self._out, 4)
            # marshal: our own child, same interpreter, and nothing else on the pipe
            reply: list[bytes | None] = marshal.loads(  # noqa: S302
                _read_exact(self._out, int.from_bytes(head, "little"))
            )
        except (OSError, EOFError, ValueError, TypeError) as exc:
            raise _Broken from exc
        if len(reply) != len(paths):
            raise _Broken
        return reply

    def stop(self, timeout: float = 5.0) -> None:
        for pipe in (self.popen.stdin, self.popen.stdout):
            if pipe is not None:
                pipe.close()  # end of input: the worker exits on its own
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


class HashProcs:
    """Up to ``count`` worker processes; :meth:`hash` runs one batch on one of them."""

    def __init__(self, count: int) -> None:
        # A frozen app's executable is the app itself, not an interpreter to run a script.
        usable = bool(sys.executable) and not getattr(sys, "frozen", False)
        self.count = count if usable else 0
        self._lock = threading.Lock()
        self._idle: list[_Proc] = []
        self._all: list[_Proc] = []
        self._closed = False
        self._drivers: ThreadPoolExecutor | None = None
        _live.add(self)

    def submit(self, func: Callable[[], T]) -> Future[T]:
        """Run ``func`` (which calls :meth:`hash`) on one of ``count`` driver threads.

        The drivers only wait on pipes, so they are apart from the digest
        pool: the thread that walks a tree keeps feeding them meanwhile.
        """
        with self._lock:
            if not self._closed:
                if self._drivers is None:
                    self._drivers = ThreadPoolExecutor(self.count, "tesengine-hashproc")
                return self._drivers.submit(func)
        done: Future[T] = Future()  # closed: hash() answers None, the caller hashes itself
        try:
            done.set_result(func())
        except BaseException as exc:  # handed over to whoever awaits it
            done.set_exception(exc)
        return done

    def hash(self, paths: list[str], stats: Sequence[FileStat]) -> list[str | None]:
        """The hex digest of each file, None where the worker could not tell.

        Blocks; call it from a pool thread. None for every file when no
        worker is available (closed, or one died): the caller hashes those.
        """
        raw = self._call(READ, paths, [v for s in stats for v in s])
        if raw is None:
            return [None] * len(paths)
        return [None if r is None else r.hex() for r in raw]

    def hash_mapped(self, path: str, expected: FileStat) -> str | None:
        """The hex digest of one large file, memory-mapped in a worker process.

        None when the worker could not tell: no worker free, the file no
        longer matches ``expected``, or the worker died (SIGBUS from a file
        truncated under its mapping). The caller then reads the file itself.
        """
        raw = self._call(MAP, [path], list(expected))
        return None if raw is None or raw[0] is None else raw[0].hex()

    def _call(self, kind: int, paths: list[str], flat: list[int]) -> list[bytes | None] | None:
        proc = self._take()
        if proc is None:
            return None
        try:
            raw = proc.call(kind, paths, flat)
        except _Broken:
            proc.stop(0)
            with self._lock:
                self._all.remove(proc)
            return None
        self._give_back(proc)
        return raw

    def _take(self) -> _Proc | None:
        with self._lock:
            if self._closed:
                return None
            if self._idle:
                return self._idle.pop()
            if len(self._all) >= self.count:
                return None  # every worker is busy: more threads than processes
            try:
                proc = _Proc()
            except OSError:
                return None
            self._all.append(proc)
            return proc

    def _give_back(self, proc: _Proc) -> None:
        with self._lock:
            if self._closed:
                stop = True
                self._all.remove(proc)
            else:
                self._idle.append(proc)
                stop = False
        if stop:
            proc.stop()

    def close(self) -> None:
        """Stop every worker process and wait for it (idempotent)."""
        with self._lock:
            self._closed = True
            drivers, self._drivers = self._drivers, None
        if drivers is not None:
            drivers.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            idle, self._idle = self._idle, []
            for proc in idle:
                self._all.remove(proc)
        for proc in idle:
            proc.stop()

    @property
    def running(self) -> int:
        """How many worker processes exist now."""
        with self._lock:
            return len(self._all)


def _read_exact(fd: int, n: int) -> bytes:
    data = read_exact(fd, n)
    if data is None:
        raise EOFError
    return data


@atexit.register
def _stop_all() -> None:
    for procs in list(_live):
        procs.close()
