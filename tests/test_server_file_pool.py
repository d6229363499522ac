"""The bounded pool for a task's file I/O: its deadline is for a hung call, not a queue.

Found at 10,000 tasks in flight on a loaded machine: a task failed with
"open_streams on the task's files took over 30 s" while its call had only
waited for one of the pool's threads.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from tesengine.errors import UnsafePath
from tesengine.server.safe_open import FILE_IO_THREADS, in_file_pool
from tests.support import await_until


def _blocked(release: threading.Event, started: list[int]) -> str:
    started.append(1)
    release.wait(30)
    return "released"


def _quick() -> str:
    return "done"


async def test_waiting_for_a_free_thread_does_not_count_against_the_deadline() -> None:
    release = threading.Event()
    started: list[int] = []
    try:
        holders = [
            asyncio.ensure_future(in_file_pool(_blocked, release, started, seconds=60))
            for _ in range(FILE_IO_THREADS)
        ]
        await await_until(lambda: len(started) == FILE_IO_THREADS, timeout=10)
        queued = asyncio.ensure_future(in_file_pool(_quick, seconds=0.2))
        # Queued five times longer than its own bound, it is still waiting, not refused.
        done, _ = await asyncio.wait({queued}, timeout=1.0)
        assert not done, queued.exception() if queued.done() else None
    finally:
        release.set()
    assert await queued == "done"
    assert await asyncio.gather(*holders) == ["released"] * FILE_IO_THREADS


async def test_a_call_that_hangs_on_its_thread_is_refused_and_frees_its_slot() -> None:
    release = threading.Event()
    started: list[int] = []
    try:
        with pytest.raises(UnsafePath, match=r"_blocked on the task's files took over 0.2 s"):
            await in_file_pool(_blocked, release, started, seconds=0.2)
        # Its thread is abandoned: every slot is free for the next calls.
        results = await asyncio.gather(
            *(in_file_pool(_quick, seconds=5) for _ in range(FILE_IO_THREADS * 2))
        )
        assert results == ["done"] * FILE_IO_THREADS * 2
    finally:
        release.set()
