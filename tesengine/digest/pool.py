"""The digest engine's bounded thread budget (a :class:`~tesengine.thread_limits.ThreadLimit`).

Hashing is CPU and disk bound and the blake3 package releases the GIL, so
threads give real parallelism; at most ``threads`` digest jobs run at once
per event loop, and thousands of callers queue on the limiter.
"""

from __future__ import annotations

import os

from ..thread_limits import ThreadLimit

__all__ = ["DigestPool", "default_threads"]


def default_threads() -> int:
    """One worker per CPU (at least 2, so a large file never blocks all small ones)."""
    return max(2, min(32, os.cpu_count() or 2))


class DigestPool(ThreadLimit):
    """``threads`` digest workers (default :func:`default_threads`)."""

    def __init__(self, threads: int | None = None) -> None:
        super().__init__(threads or default_threads())
