"""Task states of ``tesengine serve``: the whole transition table, and a cancel mid-staging.

The table below is written out by hand, apart from the code's: each of the
11 states times 8 events is the state it leads to, ``=`` (unchanged) or
``-`` (a server bug: :class:`IllegalTransition`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tesengine.errors import IllegalTransition
from tesengine.server import LocalTesServer
from tesengine.server.runtime.noop import NoopRuntime
from tesengine.server.states import TRANSITIONS, Event, advance
from tesengine.tes.models import State
from tests.support import await_until

TABLE = """
state          start staged  succeeded executor_failed system_failed cancel    stopped  restarted
QUEUED         INIT  -       -         -               -             CANCELED  -        =
INITIALIZING   -     RUNNING -         -               SYS_ERR       CANCELING -        SYS_ERR
RUNNING        -     -       COMPLETE  EXEC_ERR        SYS_ERR       CANCELING -        SYS_ERR
PAUSED         -     -       -         -               -             CANCELING -        SYS_ERR
CANCELING      -     -       CANCELED  CANCELED        CANCELED      =         CANCELED CANCELED
UNKNOWN        -     -       -         -               -             CANCELED  -        =
COMPLETE       -     -       -         -               -             =         -        =
EXECUTOR_ERROR -     -       -         -               -             =         -        =
SYSTEM_ERROR   -     -       -         -               -             =         -        =
CANCELED       -     -       -         -               -             =         -        =
PREEMPTED      -     -       -         -               -             =         -        =
"""
SHORT = {"INIT": "INITIALIZING", "EXEC_ERR": "EXECUTOR_ERROR", "SYS_ERR": "SYSTEM_ERROR"}


def _cells() -> list[tuple[State, Event, State | None]]:
    header, *rows = [line.split() for line in TABLE.strip().splitlines()]
    events = [Event(name) for name in header[1:]]
    cells = []
    for state_name, *targets in rows:
        assert len(targets) == len(events), state_name
        for event, target in zip(events, targets, strict=True):
            name = state_name if target == "=" else SHORT.get(target, target)
            cells.append((State(state_name), event, None if target == "-" else State(name)))
    return cells


CELLS = _cells()


def test_the_table_covers_every_pair() -> None:
    assert {(s, e) for s, e, _ in CELLS} == {(s, e) for s in State for e in Event}
    assert {(s, e) for s, e, target in CELLS if target is not None} == set(TRANSITIONS)


@pytest.mark.parametrize(("state", "event", "target"), CELLS, ids=str)
def test_transition(state: State, event: Event, target: State | None) -> None:
    if target is None:
        with pytest.raises(IllegalTransition, match=f"a {state} task cannot take the event"):
            advance(state, event)
    else:
        assert advance(state, event) is target


@pytest.fixture
async def hanging_url() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """An http URL on loopback that never answers, and an event set once it is asked."""
    asked = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        asked.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_get("/slow", hang)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/slow", asked
    await runner.cleanup()


class _StagingNoop(NoopRuntime):
    """The noop runtime, but the server stages the task's files as for a real one."""

    stages_files = True


async def test_cancel_while_initializing_ends_canceled(
    tmp_path: Path, hanging_url: tuple[str, asyncio.Event]
) -> None:
    url, asked = hanging_url
    server = LocalTesServer(tmp_path / "w", runtime=_StagingNoop(), allow_private_urls=True)
    body = {
        "executors": [{"image": "alpine", "command": ["true"]}],
        "inputs": [{"path": "/in/a", "url": url}],
    }
    async with server, aiohttp.ClientSession(server.url + "/ga4gh/tes/v1/") as session:
        async with session.post("tasks", json=body) as resp:
            assert resp.status == 200, await resp.text()
            task_id = (await resp.json())["id"]

        async def state() -> str:
            async with session.get(f"tasks/{task_id}") as resp:
                return str((await resp.json())["state"])

        async def canceled() -> bool:
            return await state() == "CANCELED"

        await asyncio.wait_for(asked.wait(), 30)
        assert await state() == "INITIALIZING"
        async with session.post(f"tasks/{task_id}:cancel") as resp:
            assert resp.status == 200
        await await_until(canceled, what="the task to end CANCELED")
        async with session.get(f"tasks/{task_id}?view=FULL") as resp:
            task = await resp.json()
        assert task["logs"][0]["end_time"] >= task["logs"][0]["start_time"]
        assert not task["logs"][0]["logs"], "no executor ran"
