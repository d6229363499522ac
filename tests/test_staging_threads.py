"""Staging and digests keep off the event loop's default executor (their own thread limits)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tesengine.digest import Digester
from tesengine.storage import Stager, Storage
from tesengine.storage.ops import MULTIPART_THRESHOLD
from tesengine.thread_limits import ThreadLimit
from tests.support import await_until


class _Recording(ThreadPoolExecutor):
    """A default executor that records every job it is handed."""

    def __init__(self) -> None:
        super().__init__(1)
        self.jobs: list[str] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.jobs.append(getattr(fn, "__qualname__", repr(fn)))
        return super().submit(fn, *args, **kwargs)


async def test_staging_files_and_directories_never_use_the_default_executor(
    tmp_path: Path,
) -> None:
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    for i in range(20):
        (tmp_path / "tree" / "sub" / f"f{i}").write_bytes(os.urandom(100 + i))
    (tmp_path / "small").write_bytes(b"small")
    (tmp_path / "big").write_bytes(os.urandom(MULTIPART_THRESHOLD + 10))
    recording = _Recording()
    asyncio.get_running_loop().set_default_executor(recording)
    async with Storage() as storage, Digester(threads=2, cache_dir=tmp_path / "c") as digester:
        stager = Stager(storage, digester, "memory://threads/in")
        results = await stager.stage_many([tmp_path / "tree", tmp_path / "small", tmp_path / "big"])
    assert [r.uploaded for r in results] == [True, True, True]
    assert recording.jobs == []


async def test_a_thread_limit_bounds_its_calls_and_queues_the_rest() -> None:
    limit = ThreadLimit(2)
    gate = threading.Event()
    lock, running, peak = threading.Lock(), [0], [0]

    def blocking() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        gate.wait(30)
        with lock:
            running[0] -= 1

    calls = [asyncio.create_task(limit.run(blocking)) for _ in range(6)]
    await await_until(lambda: limit.limiter().borrowed_tokens == 2, what="two calls running")
    assert limit.limiter().statistics().tasks_waiting == 4
    gate.set()
    await asyncio.gather(*calls)
    assert peak[0] == 2


async def test_cancelling_a_stoppable_call_sets_its_stop_event() -> None:
    limit = ThreadLimit(1)
    started = threading.Event()
    seen: list[bool] = []

    def long_job(stop: threading.Event) -> None:
        started.set()
        seen.append(stop.wait(30))

    call = asyncio.create_task(limit.run_stoppable(long_job))
    await await_until(started.is_set, what="the job to start")
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert seen == [True]  # the job saw stop, and had returned before the cancel completed
