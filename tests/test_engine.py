"""The engine end to end, over real HTTP against ``tesengine serve`` (in process)."""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tesengine import (
    Executor,
    InvalidTask,
    OutputMissing,
    RemoteDirectory,
    RemoteFile,
    Task,
    TaskFailed,
    TesBackend,
)
from tesengine.config import BackendConfig, Config
from tesengine.server import LocalTesServer
from tesengine.storage import StageResult
from tesengine.tes import State, TesClient
from tests.fixtures.tes_server import bwrap_available
from tests.support import file_config, require

SH = "debian:stable-slim"


def sh(script: str, **kw: Any) -> Executor:
    return Executor(image=SH, command=["sh", "-c", script], **kw)


@dataclass
class Recorder:
    """An EngineEvents hook that remembers everything."""

    staged: list[StageResult]
    states: list[tuple[str, State]]

    def task_submitted(self, run: Any) -> None:
        pass

    def task_state(self, run: Any, state: State) -> None:
        self.states.append((run.name, state))

    def input_staged(self, result: StageResult) -> None:
        self.staged.append(result)


@dataclass
class Env:
    server: LocalTesServer
    root: Path
    storage: Path

    def backend(self, **kw: Any) -> TesBackend:
        events = kw.pop("events", None)
        config = file_config(self.server.url, self.storage, self.root / "cache", **kw)
        return TesBackend(config, events=events)


async def _env(tmp_path: Path, runtime: str, **kw: Any) -> AsyncIterator[Env]:
    storage = tmp_path / "storage"
    storage.mkdir()
    server = LocalTesServer(
        tmp_path / "server", storage_url=storage.as_uri(), runtime=runtime, **kw
    )
    async with server:
        yield Env(server, tmp_path, storage)


@pytest.fixture
async def local_env(tmp_path: Path) -> AsyncIterator[Env]:
    require(bwrap_available(), "bubblewrap (bwrap) for the local runtime")
    async for env in _env(tmp_path, "local"):
        yield env


@pytest.fixture
async def noop_env(tmp_path: Path) -> AsyncIterator[Env]:
    async for env in _env(tmp_path, "noop", max_tasks=64):
        yield env


async def _server_tasks(env: Env) -> list[Any]:
    async with TesClient(env.server.url) as client:
        return [t async for t in client.iter_tasks()]


async def test_end_to_end_local_inputs_and_lazy_outputs(local_env: Env, tmp_path: Path) -> None:
    (tmp_path / "reads.txt").write_text("a\nb\nc\n")
    ref = tmp_path / "ref"
    (ref / "sub").mkdir(parents=True)
    (ref / "sub" / "x.txt").write_text("xx")
    remote = local_env.storage / "shared" / "db.txt"
    remote.parent.mkdir()
    remote.write_text("db-content\n")
    recorder = Recorder([], [])
    async with local_env.backend(events=recorder) as backend:
        run = await backend.submit(
            Task(
                name="count",
                executors=[
                    sh(
                        "wc -l < /in/reads.txt > /out/n.txt && mkdir -p /out/dir"
                        " && cp /in/ref/sub/x.txt /out/dir/x.txt && cat /in/db.txt"
                        " > /out/dir/db.txt && echo hello-out && echo hello-err >&2"
                    )
                ],
                inputs={
                    "/in/reads.txt": tmp_path / "reads.txt",
                    "/in/ref": ref,
                    "/in/db.txt": remote.as_uri(),
                },
                outputs={"n": "/out/n.txt", "results": "/out/dir/"},
            )
        )
        result = await run
        assert result.state is State.COMPLETE
        assert result.exit_codes == (0,)
        n = result.outputs["n"]
        assert isinstance(n, RemoteFile)
        assert n.url.startswith((local_env.storage / "outputs").as_uri() + "/count-")
        cache = local_env.root / "cache" / "outputs"
        assert not cache.exists() or not any(cache.rglob("n.txt"))  # lazy: nothing read yet
        assert (await n.read_text()).strip() == "3"
        results = result.outputs["results"]
        assert isinstance(results, RemoteDirectory)
        names = sorted(f.url.rsplit("/", 1)[-1] for f in await results.list())
        assert names == ["db.txt", "x.txt"]
        local = await results.download()
        assert (local / "db.txt").read_text() == "db-content\n"
        assert result.logs is not None
        assert (await result.logs.file("0.stdout").read_text()) == "hello-out\n"
        assert (await result.logs.file("0.stderr").read_text()) == "hello-err\n"
    kinds = sorted((s.kind, s.uploaded) for s in recorder.staged)
    assert kinds == [("directory", True), ("file", True)]
    assert [s for _, s in recorder.states][-1] is State.COMPLETE


async def test_empty_directory_output_lists_empty_and_downloads_empty(local_env: Env) -> None:
    async with local_env.backend() as backend:
        run = await backend.submit(
            Task(name="empty", executors=[sh("mkdir -p /out/none")], outputs={"d": "/out/none/"})
        )
        result = await run
        assert result.state is State.COMPLETE
        empty = result.directory("d")
        assert await empty.list() == []
        local = await empty.download()
        assert local.is_dir()
        assert list(local.iterdir()) == []


async def test_output_feeds_next_task_by_url(local_env: Env, tmp_path: Path) -> None:
    recorder = Recorder([], [])
    async with local_env.backend(events=recorder) as backend:
        first = await (
            await backend.submit(
                Task(
                    name="first",
                    executors=[sh("echo 41 > /out/n.txt")],
                    outputs={"n": "/out/n.txt"},
                )
            )
        )
        n = first.outputs["n"]
        second = await (
            await backend.submit(
                Task(
                    name="second",
                    executors=[sh("echo $(( $(cat /in/n.txt) + 1 )) > /out/m.txt")],
                    inputs={"/in/n.txt": n},
                    outputs={"m": "/out/m.txt"},
                )
            )
        )
        assert recorder.staged == []  # nothing uploaded
        cache = local_env.root / "cache" / "outputs"
        assert not cache.exists()  # nothing downloaded to pass n along
        assert (await second.outputs["m"].read_text()).strip() == "42"  # type: ignore[union-attr]


async def test_identical_inputs_of_50_tasks_uploaded_once(noop_env: Env, tmp_path: Path) -> None:
    data = tmp_path / "big.bin"
    data.write_bytes(b"x" * 300_000)
    recorder = Recorder([], [])
    async with noop_env.backend(events=recorder) as backend:
        runs = await asyncio.gather(
            *(
                backend.submit(
                    Task(name=f"t{i}", executors=[sh("true")], inputs={"/in/big.bin": data})
                )
                for i in range(50)
            )
        )
        await asyncio.gather(*runs)
    assert len(recorder.staged) == 50
    assert sum(s.uploaded for s in recorder.staged) == 1
    assert len({s.url for s in recorder.staged}) == 1
    objects = [p for p in (noop_env.storage / "inputs").rglob("*") if p.is_file()]
    assert len(objects) == 1


async def test_executor_error_raises_task_failed(local_env: Env) -> None:
    async with local_env.backend() as backend:
        run = await backend.submit(
            Task(name="boom", executors=[sh("echo first; echo 'bad thing' >&2; exit 3")])
        )
        with pytest.raises(TaskFailed) as info:
            await run
    failed = info.value
    assert failed.state == "EXECUTOR_ERROR"
    assert failed.exit_codes == (3,)
    assert "executor 0 exited 3: bad thing" in str(failed)
    assert failed.stderr_tail == "bad thing"


async def test_ignore_error_then_missing_output(local_env: Env) -> None:
    async with local_env.backend() as backend:
        run = await backend.submit(
            Task(
                name="ignored",
                executors=[sh("exit 4", ignore_error=True), sh("echo ok > /out/a.txt")],
                outputs={"a": "/out/a.txt"},
            )
        )
        result = await run
        assert result.exit_codes == (4, 0)
        missing = backend.remote_file(result.outputs["a"].url + "-not-there")
        with pytest.raises(OutputMissing, match="did not produce it"):
            await missing.read_bytes()


async def test_invalid_task_submits_and_uploads_nothing(noop_env: Env, tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("g")
    async with noop_env.backend() as backend:
        with pytest.raises(InvalidTask, match=r"inputs\['/in/b'\]: local path does not exist"):
            await backend.submit(
                Task(
                    name="bad",
                    executors=[sh("true")],
                    inputs={"/in/a": good, "/in/b": tmp_path / "absent.txt"},
                )
            )
    assert await _server_tasks(noop_env) == []
    assert not (noop_env.storage / "inputs").exists()


async def test_cancel_running_task(local_env: Env) -> None:
    async with local_env.backend() as backend:
        run = await backend.submit(Task(name="sleepy", executors=[sh("sleep 60")]))
        assert await asyncio.wait_for(run.wait_for(State.RUNNING), 30) is State.RUNNING
        await run.cancel()
        with pytest.raises(TaskFailed, match="CANCELED"):
            await asyncio.wait_for(run, 30)


async def test_attach_from_another_backend(noop_env: Env) -> None:
    async with noop_env.backend() as first:
        run = await first.submit(
            Task(name="attachable", executors=[sh("true")], outputs={"n": "/out/n.txt"})
        )
        task_id, url = run.id, None
        result = await run
        url = result.outputs["n"].url
    async with noop_env.backend() as second:
        again = await second.attach(task_id)
        result = await again
        assert result.id == task_id
        assert result.outputs["n"].url == url
        named = await (await second.attach(task_id, outputs={"renamed": "/out/n.txt"}))
        assert list(named.outputs) == ["renamed"]


async def test_one_thousand_concurrent_tasks(noop_env: Env) -> None:
    async with noop_env.backend(interval=0.05) as backend:
        runs = await asyncio.gather(
            *(backend.submit(Task(name=f"n{i}", executors=[sh("true")])) for i in range(1000))
        )
        results = await asyncio.gather(*runs)
    assert len({r.id for r in results}) == 1000
    assert all(r.state is State.COMPLETE for r in results)


async def test_on_close_cancel_and_leave(noop_env: Env, tmp_path: Path) -> None:
    slow = LocalTesServer(tmp_path / "slow", runtime="noop", noop_delay=30)
    async with slow:
        env = Env(slow, tmp_path, noop_env.storage)
        async with env.backend(on_close="leave") as backend:
            left = await backend.submit(Task(name="left", executors=[sh("true")]))
        async with env.backend() as backend:
            cancelled = await backend.submit(Task(name="cancelled", executors=[sh("true")]))
        async with TesClient(slow.url) as client:
            left_state = (await client.get_task(left.id)).current_state
            gone_state = (await client.get_task(cancelled.id)).current_state
        assert left_state.is_active
        assert gone_state in (State.CANCELED, State.CANCELING)


async def test_no_unclosed_session_warnings(
    noop_env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with noop_env.backend() as backend:
            await (await backend.submit(Task(name="w", executors=[sh("true")])))
        del backend
        gc.collect()
    assert not [w for w in caught if "Unclosed" in str(w.message)]
    assert "Unclosed" not in caplog.text


class PreemptingServer:
    """A tiny TES server whose first N tasks end PREEMPTED, the rest COMPLETE."""

    def __init__(self, preempt: int) -> None:
        self.preempt = preempt
        self.created: list[dict[str, Any]] = []

    def app(self) -> Any:
        from aiohttp import web

        async def create(request: web.Request) -> web.Response:
            self.created.append(await request.json())
            return web.json_response({"id": f"p{len(self.created)}"})

        async def get(request: web.Request) -> web.Response:
            index = int(request.match_info["id"][1:])
            state = "PREEMPTED" if index <= self.preempt else "COMPLETE"
            body = {**self.created[index - 1], "id": f"p{index}", "state": state}
            return web.json_response(body)

        app = web.Application()
        app.router.add_post("/ga4gh/tes/v1/tasks", create)
        app.router.add_get("/ga4gh/tes/v1/tasks/{id}", get)
        return app


async def _preempting(preempt: int, retries: int, tmp_path: Path) -> tuple[Any, PreemptingServer]:
    from aiohttp.test_utils import TestServer

    fake = PreemptingServer(preempt)
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    config = Config(
        backend_name="t",
        backend=BackendConfig(
            type="tes",
            url=f"http://127.0.0.1:{server.port}/ga4gh/tes/v1",
            inputs=(tmp_path / "in").as_uri(),
            outputs=(tmp_path / "out").as_uri(),
            interval=0.01,
            cache_dir=tmp_path / "cache",
            preempted_retries=retries,
        ),
    )
    async with TesBackend(config) as backend:
        run = await backend.submit(
            Task(name="pre", executors=[sh("true")], outputs={"n": "/out/n"})
        )
        try:
            return await run, fake
        except TaskFailed as exc:
            return exc, fake
        finally:
            await server.close()


async def test_preempted_task_is_resubmitted(tmp_path: Path) -> None:
    result, fake = await _preempting(preempt=2, retries=2, tmp_path=tmp_path)
    assert not isinstance(result, TaskFailed)
    assert result.id == "p3"
    assert len(fake.created) == 3
    prefixes = {task["tags"]["tesengine-prefix"] for task in fake.created}
    assert len(prefixes) == 3  # each execution writes under a new prefix
    assert result.outputs["n"].url.startswith(fake.created[2]["tags"]["tesengine-prefix"])


async def test_preempted_too_often_fails(tmp_path: Path) -> None:
    result, fake = await _preempting(preempt=5, retries=1, tmp_path=tmp_path)
    assert isinstance(result, TaskFailed)
    assert result.state == "PREEMPTED"
    assert "preempted too many times" in str(result)
    assert len(fake.created) == 2


async def test_testing_mode_zeroes_the_poll_interval(noop_env: Env) -> None:
    import tesengine.testing

    async with noop_env.backend(interval=3600) as backend:
        with tesengine.testing.testing():
            assert tesengine.testing.is_testing()
            result = await asyncio.wait_for(
                await backend.submit(Task(name="fast", executors=[sh("true")])), 30
            )
        assert not tesengine.testing.is_testing()
    assert result.state is State.COMPLETE
