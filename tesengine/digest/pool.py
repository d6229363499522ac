"""A bounded pool of worker threads for blocking digest work.

Hashing is CPU and disk bound and the blake3 package releases the GIL, so
threads give real parallelism. The pool is private to the digest engine:
thousands of concurrent callers queue here instead of starving the event
loop's default executor, which aiofiles and DNS lookups also use.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["DigestPool", "default_threads"]

P = ParamSpec("P")
T = TypeVar("T")


def default_threads() -> int:
    """One worker per CPU (at least 2, so a large file never blocks all small ones)."""
    return max(2, min(32, os.cpu_count() or 2))


class DigestPool:
    """``threads`` worker threads; ``run`` awaits a blocking call on one of them.

    The pool is not tied to an event loop, so one pool may serve several.
    Cancelling a ``run`` that has not started yet removes it from the queue;
    one that is running finishes in its thread and its result is dropped.
    """

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or default_threads()
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="tesengine-digest")

    async def run(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``func(*args, **kwargs)`` in a worker thread and return its result."""
        future = self._executor.submit(func, *args, **kwargs)
        return await asyncio.wrap_future(future)

    def close(self, *, wait: bool = True) -> None:
        """Stop accepting work; with ``wait``, block until running jobs end."""
        self._executor.shutdown(wait=wait, cancel_futures=True)
