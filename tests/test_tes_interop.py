"""TesClient against real servers over loopback: ``tesengine serve`` and py-tes as a peer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tesengine.errors import AuthError, TesApiError
from tesengine.server import LocalTesServer
from tesengine.tes import (
    SUBMISSION_TAG,
    Executor,
    Input,
    Resources,
    State,
    TesClient,
    TesTask,
    View,
)
from tests.fixtures.tes_server import ServedTes
from tests.fixtures.tes_spec import TesSpec
from tests.support import await_until


def sample(name: str = "interop", **tags: str) -> TesTask:
    return TesTask(
        name=name,
        description="made by tesengine",
        inputs=[Input(path="/in/greeting.txt", content="hello")],
        executors=[Executor(image="alpine", command=["cat", "/in/greeting.txt"])],
        resources=Resources(cpu_cores=1, ram_gb=0.5),
        tags={"suite": "interop", **tags},
    )


async def wait_final(tes: TesClient, task_id: str, timeout: float = 20.0) -> TesTask:
    async def final() -> bool:
        return (await tes.get_task(task_id)).current_state.is_final

    await await_until(final, timeout=timeout, what=f"task {task_id} to be final")
    return await tes.get_task(task_id, View.FULL)


async def test_against_tesengine_serve(noop_tes: ServedTes, tes_spec: TesSpec) -> None:
    async with TesClient(noop_tes.url) as tes:  # root URL: the base path is discovered
        info = await tes.service_info()
        assert await tes.base_url() == noop_tes.api
        tes_spec.validate("tesServiceInfo", info.to_wire())

        task_id = await tes.create_task(sample(run="r-serve"))
        task = await wait_final(tes, task_id)
        assert task.state is State.COMPLETE
        tes_spec.validate("tesTask", task.to_wire())
        assert task.logs and task.logs[0].logs[0].exit_code == 0
        tag = (task.tags or {})[SUBMISSION_TAG]

        found = [t.id async for t in tes.iter_tasks(tags={SUBMISSION_TAG: tag})]
        assert found == [task_id]
        basic = await tes.get_task(task_id, View.BASIC)
        assert basic.inputs and basic.inputs[0].content is None  # BASIC leaves content out

        with pytest.raises(TesApiError) as info_err:
            await tes.get_task("no-such-task")
        assert info_err.value.status == 404


async def test_cancel_and_auth(tmp_path: Path) -> None:
    server = LocalTesServer(tmp_path / "w", runtime="noop", noop_delay=60, bearer="right")
    async with server:
        from tesengine.auth import BearerToken

        async with TesClient(server.url, auth=BearerToken("right")) as tes:
            task_id = await tes.create_task(sample("cancel-me"))
            await tes.cancel_task(task_id)
            assert (await wait_final(tes, task_id)).state is State.CANCELED
        async with TesClient(server.url + "/ga4gh/tes/v1", auth=BearerToken("wrong")) as tes:
            with pytest.raises(AuthError, match="HTTP 401"):
                await tes.get_task(task_id)


async def test_py_tes_reads_ours_and_we_read_theirs(inproc_tes: LocalTesServer) -> None:
    import tes as py_tes

    peer = py_tes.HTTPClient(inproc_tes.url)
    async with TesClient(inproc_tes.url) as tes:
        ours = await tes.create_task(sample("ours"))
        await wait_final(tes, ours)
        seen = await asyncio.to_thread(peer.get_task, ours, "FULL")
        assert (seen.id, seen.name, seen.state) == (ours, "ours", "COMPLETE")
        assert seen.executors[0].command == ["cat", "/in/greeting.txt"]
        assert seen.inputs[0].content == "hello"

        theirs_task = py_tes.Task(
            name="theirs",
            executors=[py_tes.Executor(image="alpine", command=["echo", "peer"])],
            tags={"from": "py-tes"},
        )
        theirs = await asyncio.to_thread(peer.create_task, theirs_task)
        task = await wait_final(tes, theirs)  # py-tes returns the id
        assert (task.name, task.state, task.tags) == ("theirs", State.COMPLETE, {"from": "py-tes"})
        assert task.executors[0].command == ["echo", "peer"]
