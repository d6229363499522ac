"""Uploading one local file to its content address, verified on the way out.

A file up to :data:`~tesengine.storage.ops.MULTIPART_THRESHOLD` is read
whole (in a thread), hashed again, and sent as one create-only PUT; a
larger one streams as a multipart upload whose chunks are hashed as they
are read (:mod:`tesengine.storage.verify`). Either way a file edited since
it was digested fails with :class:`~tesengine.errors.InputChanged` before
anything becomes visible. Bodies held in memory, across all uploads, are
bounded by a :class:`~tesengine.storage.verify.ByteBudget`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import anyio

from ..thread_limits import ThreadLimit
from .ops import MULTIPART_THRESHOLD, PART_CONCURRENCY, PART_SIZE
from .protocol import StorageLike
from .reports import StagingProgress, StagingStats
from .verify import ByteBudget, VerifiedChunks, read_verified

__all__ = ["UPLOAD_MEMORY", "Uploader"]

#: Bytes of upload bodies held in memory at once, across all uploads.
UPLOAD_MEMORY = 128 * 1024 * 1024
_STREAM_COST = PART_SIZE * (PART_CONCURRENCY + 1)


class Uploader:
    """Sends files to content addresses for a :class:`~tesengine.storage.Stager`.

    ``slot`` bounds the requests in flight (the stager's), ``threads`` the
    reads and re-hashes; ``stats`` and ``progress`` are the stager's too.
    """

    def __init__(
        self,
        storage: StorageLike,
        stats: StagingStats,
        progress: StagingProgress,
        slot: Callable[[], asyncio.Semaphore],
        threads: ThreadLimit,
        *,
        memory: int = UPLOAD_MEMORY,
    ) -> None:
        self.storage = storage
        self._stats = stats
        self._progress = progress
        self._slot = slot
        self._threads = threads
        self._budget = ByteBudget(memory)

    async def upload(self, url: str, path: Path, hex_: str, size: int | None = None) -> bool:
        """Upload ``path`` to ``url``, verified against ``hex_``; True if written.

        ``size`` (when known) only chooses one PUT or a multipart upload:
        the bytes sent are read and verified against ``hex_`` either way.
        """
        if size is None:
            size = (await anyio.Path(path).stat()).st_size
        if size <= MULTIPART_THRESHOLD:
            written = await self._put(url, path, hex_, size)
        else:
            written = await self._stream(url, path, hex_)
        if written:
            self._stats.files_uploaded += 1
            self._stats.bytes_uploaded += size
            self._progress.file_uploaded(url, size)
        return written

    async def _put(self, url: str, path: Path, hex_: str, size: int) -> bool:
        async with self._budget.hold(size), self._slot():
            data = await self._threads.run(read_verified, path, hex_)
            self._stats.puts += 1
            written = await self.storage.put_bytes(url, data, create_only=True)
        self._progress.bytes_uploaded(len(data))
        return written

    async def _stream(self, url: str, path: Path, hex_: str) -> bool:
        chunks = VerifiedChunks(path, hex_, self._threads, self._progress.bytes_uploaded)
        async with self._budget.hold(_STREAM_COST), self._slot():
            self._stats.puts += 1
            try:
                # existence was checked just before: a second check would cost a request
                return await self.storage.put_stream(url, chunks)
            except Exception:
                if chunks.error is not None:
                    raise chunks.error from None
                raise
            finally:
                chunks.close()
