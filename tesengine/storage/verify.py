"""Reading a local file for upload while proving it still has the digest it was staged under.

Every byte that is uploaded is hashed again on its way out; if the BLAKE3
of what was read is not the digest the object is published under, the
upload fails with :class:`~tesengine.errors.InputChanged` before the object
becomes visible (a single PUT is never sent; a multipart upload is aborted
because the stream raises before its last part). So a file edited between
hashing and upload can never poison its old content address.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

from blake3 import blake3

from ..errors import DigestError, InputChanged
from ..thread_limits import ThreadLimit

__all__ = ["ByteBudget", "VerifiedChunks", "read_verified"]

#: Read size while streaming a large file (obstore regroups reads into parts).
STREAM_READ = 4 * 1024 * 1024


def read_verified(path: Path, expected_hex: str) -> bytes:
    """The whole content of ``path`` (blocking; run in a thread), checked against the digest."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DigestError(f"cannot read {path}: {exc.strerror}", path=str(path)) from exc
    if blake3(data, max_threads=1).hexdigest() != expected_hex:
        raise _changed(path)
    return data


class VerifiedChunks:
    """An async iterator over ``path``'s bytes that fails at the end if the digest differs.

    Each read (and its hashing) runs on one of ``threads``.

    The check runs inside the last ``__anext__`` call, before the iterator
    reports its end, so a consumer (obstore's multipart upload) never sees a
    complete stream of the wrong bytes. ``error`` keeps what was raised, since
    the consumer may wrap it.
    """

    def __init__(
        self,
        path: Path,
        expected_hex: str,
        threads: ThreadLimit,
        on_chunk: Callable[[int], None] | None = None,
    ) -> None:
        self._path = path
        self._threads = threads
        self._expected = expected_hex
        self._on_chunk = on_chunk
        self._hasher = blake3()
        self._fh: BinaryIO | None = None
        self._closed = False
        self.error: BaseException | None = None

    def __aiter__(self) -> VerifiedChunks:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._threads.run(self._read)
        except BaseException as exc:
            self.error = exc
            self.close()
            raise
        if chunk:
            if self._on_chunk is not None:
                self._on_chunk(len(chunk))
            return chunk
        self.close()
        if self._hasher.hexdigest() != self._expected:
            self.error = _changed(self._path)
            raise self.error
        raise StopAsyncIteration

    def _read(self) -> bytes:
        if self._closed:
            # never end the stream early: a short stream could complete an upload
            raise DigestError(f"{self._path}: read after the upload was abandoned")
        try:
            if self._fh is None:
                self._fh = self._path.open("rb")
            chunk = self._fh.read(STREAM_READ)
        except OSError as exc:
            message = f"cannot read {self._path}: {exc.strerror}"
            raise DigestError(message, path=str(self._path)) from exc
        self._hasher.update(chunk)
        return chunk

    def close(self) -> None:
        """Close the file (also done at the end of the stream and on errors)."""
        self._closed = True
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None


class ByteBudget:
    """A weighted semaphore: at most ``limit`` bytes of upload bodies held at once.

    A request larger than the whole budget takes all of it, so it still runs,
    alone.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = limit
        self._cond: asyncio.Condition | None = None

    @contextlib.asynccontextmanager
    async def hold(self, nbytes: int) -> AsyncIterator[None]:
        """Hold ``nbytes`` of the budget for the duration of the block."""
        need = min(max(nbytes, 0), self.limit)
        if self._cond is None:
            self._cond = asyncio.Condition()
        cond = self._cond
        async with cond:
            await cond.wait_for(lambda: self._free >= need)
            self._free -= need
        try:
            yield
        finally:
            async with cond:
                self._free += need
                cond.notify_all()


def _changed(path: Path) -> InputChanged:
    return InputChanged(
        f"{path} changed after it was hashed; it was not uploaded (stage it again)",
        path=str(path),
    )
