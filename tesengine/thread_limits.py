"""Bounded thread budgets for blocking work: one anyio ``CapacityLimiter`` per kind of work.

tesengine never sends its heavy blocking work (hashing, reading upload
bodies) to the event loop's default executor, which DNS lookups and
aiofiles use, nor to anyio's shared default limiter: each kind of work has
its own :class:`ThreadLimit` (the digest pool, the uploads of a stager), so
thousands of callers queue on it and nothing else starves.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from functools import partial
from typing import ParamSpec, TypeVar

import anyio
import anyio.to_thread

__all__ = ["ThreadLimit"]

P = ParamSpec("P")
T = TypeVar("T")


class ThreadLimit:
    """At most ``threads`` blocking calls at once; ``run`` awaits one on an anyio worker thread.

    One instance may serve several event loops (a limiter per loop). Cancelling
    a ``run`` that waits for its turn removes it from the queue; one that is
    running is waited for (a thread cannot be interrupted), so when every
    ``run`` has returned no thread works for this limit.
    """

    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = threads
        self._limiters: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, anyio.CapacityLimiter
        ] = weakref.WeakKeyDictionary()

    async def run(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``func(*args, **kwargs)`` in a worker thread and return its result."""
        job = partial(func, *args, **kwargs)
        return await anyio.to_thread.run_sync(job, limiter=self.limiter())

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

    def limiter(self) -> anyio.CapacityLimiter:
        """This event loop's limiter (made on first use)."""
        loop = asyncio.get_running_loop()
        found = self._limiters.get(loop)
        if found is None:
            found = self._limiters[loop] = anyio.CapacityLimiter(self.threads)
        return found
