"""The bounded thread budget for blocking digest work: an anyio ``CapacityLimiter``.

Hashing is CPU and disk bound and the blake3 package releases the GIL, so
threads give real parallelism. Digest jobs run on anyio's worker threads,
at most ``threads`` at once per event loop: thousands of concurrent callers
queue on the limiter instead of starving the event loop's default executor
(which DNS lookups and aiofiles use) or anyio's shared default limiter.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Callable
from functools import partial
from typing import ParamSpec, TypeVar

import anyio
import anyio.to_thread

__all__ = ["DigestPool", "default_threads"]

P = ParamSpec("P")
T = TypeVar("T")


def default_threads() -> int:
    """One worker per CPU (at least 2, so a large file never blocks all small ones)."""
    return max(2, min(32, os.cpu_count() or 2))


class DigestPool:
    """At most ``threads`` blocking calls at once; ``run`` awaits one on a worker thread.

    One pool may serve several event loops (a limiter per loop). Cancelling a
    ``run`` that waits for its turn removes it from the queue; one that is
    running is waited for (a worker thread cannot be interrupted), so when
    every ``run`` has returned no thread of this pool is busy.
    """

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or default_threads()
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        self._limiters: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, anyio.CapacityLimiter
        ] = weakref.WeakKeyDictionary()

    async def run(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``func(*args, **kwargs)`` in a worker thread and return its result."""
        return await anyio.to_thread.run_sync(
            partial(func, *args, **kwargs), limiter=self._limiter()
        )

    async def run_stoppable(self, func: Callable[[threading.Event], T]) -> T:
        """Run ``func(stop)``; when cancelled, set ``stop`` and wait for ``func`` to return.

        For long jobs that check ``stop`` between steps: cancellation then
        ends them early instead of waiting for all of the work.
        """
        stop = threading.Event()
        job = asyncio.ensure_future(self.run(func, stop))
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            stop.set()
            await asyncio.gather(job, return_exceptions=True)
            raise

    def _limiter(self) -> anyio.CapacityLimiter:
        loop = asyncio.get_running_loop()
        limiter = self._limiters.get(loop)
        if limiter is None:
            limiter = self._limiters[loop] = anyio.CapacityLimiter(self.threads)
        return limiter
