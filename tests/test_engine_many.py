"""``backend.submit_many``: one validation pass, one staging batch, handles in order."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import tesengine.engine.validate as validation
from tesengine import Executor, InvalidTask, Task, TesBackend, TesClient
from tesengine.server import LocalTesServer
from tesengine.storage import StageResult
from tesengine.tes import State
from tesengine.tes import models as wire
from tests.fixtures.proxy import FaultProxy
from tests.support import await_until, file_config

Proxy = Callable[[str], Awaitable[FaultProxy]]


class Staged:
    """An EngineEvents hook that keeps the staging results."""

    def __init__(self) -> None:
        self.results: list[StageResult] = []

    def task_submitted(self, run: object) -> None:
        pass

    def task_state(self, run: object, state: State) -> None:
        pass

    def input_staged(self, result: StageResult) -> None:
        self.results.append(result)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LocalTesServer]:
    async with LocalTesServer(tmp_path / "srv", runtime="noop", max_tasks=16) as srv:
        yield srv


def _task(name: str, **kw: Any) -> Task:
    return Task(name=name, executors=[Executor("alpine", ["true"])], **kw)


def _backend(url: str, tmp_path: Path, **kw: Any) -> TesBackend:
    config = file_config(url, tmp_path / "storage", tmp_path / "cache")
    return TesBackend(config, **kw)


async def test_runs_come_back_in_order_with_inputs_staged_once(
    server: LocalTesServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared.txt"
    shared.write_text("same bytes for every task")
    stat_threads: set[str] = set()
    local = validation._local

    def watched(*args: Any) -> Any:  # the function that stats a local input
        stat_threads.add(threading.current_thread().name)
        return local(*args)

    monkeypatch.setattr(validation, "_local", watched)
    tasks = [
        _task(f"t{i}", inputs={"/in/shared.txt": shared}, outputs={"o": "/out/o"})
        for i in range(12)
    ]
    events = Staged()
    async with _backend(server.url, tmp_path, events=events) as backend:
        runs = await backend.submit_many(tasks)
        assert [r.name for r in runs] == [t.name for t in tasks]
        assert len({r.id for r in runs}) == 12
        results = [await run for run in runs]
    assert [r.name for r in results] == [t.name for t in tasks]
    assert all(r.state is State.COMPLETE for r in results)
    assert len(events.results) == 12  # one staging result per input, in one batch
    assert sum(r.uploaded for r in events.results) == 1  # the same bytes moved once
    assert stat_threads  # validation did stat the inputs...
    assert threading.main_thread().name not in stat_threads  # ...never on the loop


async def test_bad_tasks_are_named_by_index_and_none_is_submitted(
    server: LocalTesServer, tmp_path: Path, fault_proxy: Proxy
) -> None:
    proxy = await fault_proxy(server.url)
    good = tmp_path / "good.txt"
    good.write_text("g")
    tasks = [
        _task("ok", inputs={"/in/g": good}),
        _task("missing", inputs={"/in/x": tmp_path / "absent.txt"}),
        _task("ok2", inputs={"/in/g": good}),
        _task("relative", outputs={"o": "out/o"}),
    ]
    async with _backend(proxy.url, tmp_path) as backend:
        with pytest.raises(InvalidTask) as info:
            await backend.submit_many(tasks)
    message = str(info.value)
    assert message.startswith("2 of 4 tasks are invalid; none was submitted:")
    assert "tasks[1]: task 'missing': inputs['/in/x']: local path does not exist" in message
    assert "tasks[3]: task 'relative': outputs['o']: container path must be absolute" in message
    assert "tasks[0]" not in message
    assert proxy.forwarded["POST"] == 0  # the server saw no create
    assert not (tmp_path / "storage" / "inputs").exists()  # and nothing was staged


async def test_a_non_task_is_named_too(server: LocalTesServer, tmp_path: Path) -> None:
    async with _backend(server.url, tmp_path) as backend:
        with pytest.raises(InvalidTask, match=r"tasks\[1\]: expected a Task, got dict"):
            await backend.submit_many([_task("a"), {"name": "b"}])  # type: ignore[list-item]


async def test_validation_has_its_own_threads(tmp_path: Path) -> None:
    """submit_many's validation runs even while anyio's shared default limiter is all taken."""
    import anyio
    import anyio.to_thread

    shared = tmp_path / "in.txt"
    shared.write_text("x")
    default = anyio.to_thread.current_default_thread_limiter()
    total, someone_else = default.total_tokens, object()
    default.total_tokens = 1
    await default.acquire_on_behalf_of(someone_else)
    try:
        with anyio.fail_after(10):  # waits until then if validation queued on `default`
            (plan,) = await validation.validate_all_off_loop([_task("a", inputs={"/in/x": shared})])
    finally:
        default.release_on_behalf_of(someone_else)
        default.total_tokens = total
    assert [i.local for i in plan.local] == [shared.absolute()]


async def test_one_submit_checks_local_inputs_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task with a local input is stat'ed in a worker thread; a URL-only one needs no thread."""
    threads: list[int] = []
    real = validation.validate

    def spy(task: Task) -> validation.Plan:
        threads.append(threading.get_ident())
        return real(task)

    monkeypatch.setattr(validation, "validate", spy)
    local = tmp_path / "in.txt"
    local.write_text("x")
    plan = await validation.validate_off_loop(_task("a", inputs={"/in/x": local}))
    await validation.validate_off_loop(_task("b", inputs={"/in/x": "s3://bucket/key"}))
    assert [i.local for i in plan.local] == [local.absolute()]
    assert threads[0] != threading.get_ident()  # off the loop
    assert threads[1] == threading.get_ident()  # no disk to touch: no thread hop
    with pytest.raises(InvalidTask, match="expected a Task, got dict"):
        await validation.validate_off_loop({"name": "c"})  # type: ignore[arg-type]


class _GatedCreates:
    """A TES client whose creates wait at a gate, counting how many are in flight."""

    def __init__(self, client: TesClient) -> None:
        self._client = client
        self.gate = asyncio.Event()
        self.in_flight = self.peak = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def create_task(self, task: wire.TesTask) -> str:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self.gate.wait()
            return await self._client.create_task(task)
        finally:
            self.in_flight -= 1


async def test_concurrent_submits_build_and_send_at_most_max_concurrency_creates(
    server: LocalTesServer, tmp_path: Path
) -> None:
    # 100,000 submits at once must wait as coroutines, not as built requests queued on
    # the client: the backend itself lets max_concurrency creates through at a time.
    config = file_config(server.url, tmp_path / "storage", tmp_path / "cache", max_concurrency=3)
    async with TesClient(server.url) as tes:
        gated = _GatedCreates(tes)
        async with TesBackend(config, client=gated) as backend:
            submits = [asyncio.ensure_future(backend.submit(_task(f"t{i}"))) for i in range(10)]
            await await_until(lambda: gated.in_flight >= 3, what="3 creates in flight")
            for _ in range(50):  # every other submit had its turn to run, and still waits
                await asyncio.sleep(0)
            assert gated.peak == 3
            gated.gate.set()
            runs = await asyncio.gather(*submits)
            results = await asyncio.gather(*runs)
    assert gated.peak == 3
    assert sorted(r.name for r in results) == sorted(f"t{i}" for i in range(10))
