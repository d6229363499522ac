"""The server's task store on a real SQLite file: commits, rollback, shrinking, read-back.

Faults are real: another ``sqlite3`` connection holds ``BEGIN EXCLUSIVE``
while the store commits (a short busy timeout keeps the tests quick).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tesengine.errors import StoreUnavailable, TaskStoreError
from tesengine.server import LocalTesServer, store
from tesengine.server.store import TaskStore
from tesengine.tes.models import SUBMISSION_TAG
from tests.support import await_until

BIG = "x" * (store.LARGE_DOC + 1000)


def doc(state: str = "QUEUED", *, tag: str | None = None, content: str = "") -> dict[str, Any]:
    inputs = [{"path": "/in/a", "content": content}] if content else []
    tags = {SUBMISSION_TAG: tag} if tag else {}
    return {"id": uuid.uuid4().hex, "state": state, "tags": tags, "inputs": inputs}


@contextmanager
def locked(path: Path) -> Iterator[None]:
    db = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        db.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        db.execute("ROLLBACK")
        db.close()


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[TaskStore]:
    tasks = TaskStore(tmp_path / "tasks.sqlite3", busy_timeout=0.05)
    await tasks.open()
    yield tasks
    await tasks.close()


async def _reopen(path: Path) -> tuple[TaskStore, list[Any]]:
    again = TaskStore(path)
    return again, await again.open()


async def test_failed_commit_creates_nothing(opened: TaskStore, tmp_path: Path) -> None:
    db = tmp_path / "tasks.sqlite3"
    first = await opened.add(doc(tag="t1"))
    with locked(db), pytest.raises(StoreUnavailable):
        await opened.add(doc(tag="t2"))
    assert len(opened) == 1 and [r.id for r in opened.newest_first()] == [first.id]
    assert opened.by_submission("t2") is None
    assert await opened.find_submission("t2") is None
    retried = await opened.add(doc(tag="t2"))
    assert opened.by_submission("t2") is retried and len(opened) == 2
    await opened.close()
    again, records = await _reopen(db)
    assert [r.id for r in records] == [first.id, retried.id]
    await again.close()


async def test_changes_in_a_failed_commit_are_written_later(
    opened: TaskStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="tesengine.server.store")
    db = tmp_path / "tasks.sqlite3"
    record = await opened.add(doc())
    with locked(db):
        record.doc["state"] = "COMPLETE"
        opened.touch(record)
        with pytest.raises(StoreUnavailable):
            await opened.flush()
    assert "1 changes kept for another try" in caplog.text
    await opened.flush()
    await opened.close()
    again, records = await _reopen(db)
    assert [r.state for r in records] == ["COMPLETE"]
    await again.close()


async def test_a_second_creation_with_the_same_tag_waits_for_the_first(
    opened: TaskStore,
) -> None:
    creating = asyncio.create_task(opened.add(doc(tag="same")))
    await asyncio.sleep(0)  # the first add is now waiting for its commit
    assert opened.by_submission("same") is None  # not committed yet
    found = await opened.find_submission("same")
    assert found is not None and found is await creating


async def test_large_documents_shrink_and_read_back(opened: TaskStore, tmp_path: Path) -> None:
    small = await opened.add(doc(content="tiny"))
    large = await opened.add(doc(content=BIG))
    assert small.loaded and not large.loaded
    assert "content" not in large.summary["inputs"][0]  # BASIC view in memory
    assert (await opened.load(large))["inputs"][0]["content"] == BIG
    await opened.pin(large)  # a run holds it whole, across commits
    large.doc["state"] = "COMPLETE"
    opened.touch(large)
    await opened.flush()
    assert large.loaded
    opened.unpin(large)
    assert not large.loaded and large.state == "COMPLETE"
    await opened.close()
    again, records = await _reopen(tmp_path / "tasks.sqlite3")
    assert [r.loaded for r in records] == [True, False]  # finished and large: shrunk at load
    assert (await again.load(records[1]))["inputs"][0]["content"] == BIG
    await again.close()


async def test_read_back_cache_is_bounded(
    opened: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "CACHE_BYTES", int(4.5 * len(BIG)))  # room for four
    records = [await opened.add(doc("COMPLETE", content=BIG)) for _ in range(6)]
    for record in records:
        assert (await opened.load(record))["inputs"][0]["content"] == BIG
    held = [r for r in records if r.loaded]
    assert len(held) == 4
    assert records[-1].loaded  # the most recent read stays


async def test_full_view_of_a_shrunk_task_over_http(tmp_path: Path) -> None:
    body = {
        "name": "big",
        "inputs": [{"path": "/in/a", "content": BIG}],
        "executors": [{"image": "alpine", "command": ["true"]}],
    }
    async with (
        LocalTesServer(tmp_path, runtime="noop") as server,
        aiohttp.ClientSession() as session,
    ):
        api = f"{server.url}/ga4gh/tes/v1"
        async with session.post(f"{api}/tasks", json=body) as resp:
            task_id = (await resp.json())["id"]
        await await_until(lambda: _state_is(session, f"{api}/tasks/{task_id}", "COMPLETE"))
        async with session.get(f"{api}/tasks/{task_id}?view=FULL") as resp:
            assert (await resp.json())["inputs"][0]["content"] == BIG
        async with session.get(f"{api}/tasks?view=FULL") as resp:
            [listed] = (await resp.json())["tasks"]
            assert listed["inputs"][0]["content"] == BIG
        async with session.get(f"{api}/tasks/{task_id}?view=BASIC") as resp:
            assert "content" not in (await resp.json())["inputs"][0]


async def test_cancel_of_a_shrunk_queued_task(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tesengine.server.store")
    small = {"executors": [{"image": "alpine", "command": ["true"]}]}
    big = {**small, "inputs": [{"path": "/in/a", "content": BIG}]}
    server = LocalTesServer(tmp_path, runtime="noop", max_tasks=1, noop_delay=60)
    async with server, aiohttp.ClientSession() as session:
        api = f"{server.url}/ga4gh/tes/v1"
        ids = []
        for body in (small, big):  # the first holds the only slot: the big one waits
            async with session.post(f"{api}/tasks", json=body) as resp:
                ids.append((await resp.json())["id"])
        for task_id in reversed(ids):
            async with session.post(f"{api}/tasks/{task_id}:cancel") as resp:
                assert resp.status == 200
        for task_id in ids:
            url = f"{api}/tasks/{task_id}?view=FULL"
            await await_until(lambda url=url: _state_is(session, url, "CANCELED"))
        async with session.get(f"{api}/tasks/{ids[-1]}?view=FULL") as resp:
            assert (await resp.json())["inputs"][0]["content"] == BIG
    assert "read back on the event loop" not in caplog.text


async def _state_is(session: aiohttp.ClientSession, url: str, want: str) -> bool:
    async with session.get(url) as resp:
        return bool((await resp.json())["state"] == want)


async def test_a_database_from_before_schema_versions_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "tasks.sqlite3"
    old = doc("COMPLETE")
    with contextlib.closing(sqlite3.connect(path)) as db:  # as servers wrote it before versions
        db.execute(
            "CREATE TABLE tasks (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, doc TEXT)"
        )
        db.execute("INSERT INTO tasks VALUES (1, ?, ?)", (old["id"], json.dumps(old)))
        db.commit()
    tasks, records = await _reopen(path)
    assert [r.id for r in records] == [old["id"]]
    await tasks.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (1,)


async def test_a_database_of_another_schema_version_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "tasks.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE tasks (seq INTEGER PRIMARY KEY, id TEXT, doc TEXT)")
        db.execute("INSERT INTO tasks VALUES (1, 'a', '{}')")
        db.execute("PRAGMA user_version = 7")
        db.commit()
    with pytest.raises(TaskStoreError, match="has schema version 7; this tesengine knows 1"):
        await TaskStore(path).open()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT count(*) FROM tasks").fetchone() == (1,)
