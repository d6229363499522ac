"""``backend.logs(task_id)``: the captured streams, else the server's tails, never a
URL the server made up."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tesengine import Executor, Task, TaskFailed, TesBackend
from tesengine.server import LocalTesServer
from tesengine.tes import TesClient
from tesengine.tes import models as wire
from tests.fixtures.tes_server import bwrap_available
from tests.support import file_config, require

SCRIPT = "printf 'out %s\\n' $X; printf 'err\\n' >&2; exit $CODE"


async def _server(tmp_path: Path, runtime: str) -> AsyncIterator[LocalTesServer]:
    storage = tmp_path / "storage"
    storage.mkdir()
    async with LocalTesServer(
        tmp_path / "srv", storage_url=storage.as_uri(), runtime=runtime
    ) as server:
        yield server


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalTesServer]:
    require(bwrap_available(), "bubblewrap (bwrap) for the local runtime")
    async for server in _server(tmp_path, "local"):
        yield server


@pytest.fixture
async def noop(tmp_path: Path) -> AsyncIterator[LocalTesServer]:
    async for server in _server(tmp_path, "noop"):
        yield server


def _backend(server: LocalTesServer, tmp_path: Path) -> TesBackend:
    return TesBackend(file_config(server.url, tmp_path / "storage", tmp_path / "cache"))


def _executor(x: str, code: int) -> Executor:
    env = {"X": x, "CODE": str(code)}
    return Executor("debian:stable-slim", ["sh", "-c", SCRIPT], env=env)


async def test_logs_are_the_captured_streams_of_every_executor(
    local: LocalTesServer, tmp_path: Path
) -> None:
    async with _backend(local, tmp_path) as backend:
        run = await backend.submit(
            Task(name="two", executors=[_executor("a", 0), _executor("b", 0)])
        )
        await run
        logs = await backend.logs(run.id)
    assert logs.task_id == run.id
    assert logs.state is wire.State.COMPLETE
    assert logs.captured
    assert [(e.index, e.stdout, e.stderr) for e in logs.executors] == [
        (0, b"out a\n", b"err\n"),
        (1, b"out b\n", b"err\n"),
    ]


async def test_a_failed_tasks_logs_are_the_servers_tails(
    local: LocalTesServer, tmp_path: Path
) -> None:
    async with _backend(local, tmp_path) as backend:
        run = await backend.submit(Task(name="bad", executors=[_executor("a", 3)]))
        with pytest.raises(TaskFailed, match="executor 0 exited 3"):
            await run
        logs = await backend.logs(run.id)
    assert logs.state is wire.State.EXECUTOR_ERROR
    assert not logs.captured  # this server delivers no output of a failed task
    assert [(e.stdout, e.stderr) for e in logs.executors] == [(b"out a\n", b"err\n")]


async def test_a_prefix_outside_the_outputs_is_never_read(
    noop: LocalTesServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "elsewhere" / "_logs" / "0.stdout"
    secret.parent.mkdir(parents=True)
    secret.write_text("not yours")
    task = wire.TesTask(
        name="planted",
        executors=[wire.Executor(image="a", command=["true"])],
        tags={"tesengine-prefix": (tmp_path / "elsewhere").as_uri()},
    )
    async with TesClient(noop.url) as client:
        task_id = await client.create_task(task)
    caplog.set_level(logging.WARNING, logger="tesengine.engine")
    async with _backend(noop, tmp_path) as backend:
        logs = await backend.logs(task_id)
    assert not logs.captured
    assert all(b"not yours" not in e.stdout for e in logs.executors)
    assert "is not under this backend's outputs" in caplog.text
