"""``tesengine serve`` against a hostile or unlucky client: issue 13 item 5 and its smaller list.

Each test performs the attack or the fault for real, against a real server
(a ``tesengine serve`` subprocess, or :class:`LocalTesServer` in process),
with a real SQLite lock from another connection where the database is the
point, and asserts the server fails safely.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tesengine import Executor, Task, TesBackend
from tesengine.server import LocalTesServer
from tesengine.tes import Executor as WireExecutor
from tesengine.tes import State, TesClient, TesTask, View
from tesengine.tes.models import SUBMISSION_TAG
from tests.support import await_until, file_config, user_env

API = "/ga4gh/tes/v1"


def _task_body(tag: str) -> dict[str, Any]:
    return {
        "name": "locked",
        "executors": [{"image": "alpine", "command": ["true"]}],
        "tags": {SUBMISSION_TAG: tag},
    }


@contextmanager
def exclusive_lock(db_path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding ``BEGIN EXCLUSIVE`` on the task database until the block ends."""
    db = sqlite3.connect(db_path, isolation_level=None, timeout=0)
    try:
        db.execute("BEGIN EXCLUSIVE")
        yield db
    finally:
        if db.in_transaction:
            db.execute("ROLLBACK")
        db.close()


async def _tagged(session: aiohttp.ClientSession, api: str, tag: str) -> list[str]:
    url = f"{api}/tasks?view=BASIC&tag_key={SUBMISSION_TAG}&tag_value={tag}"
    async with session.get(url) as resp:
        assert resp.status == 200
        return [t["id"] for t in (await resp.json())["tasks"]]


async def _wait_state(session: aiohttp.ClientSession, url: str, want: str) -> dict[str, Any]:
    doc: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal doc
        async with session.get(url) as resp:
            assert resp.status == 200, await resp.text()
            doc = await resp.json()
        return doc["state"] == want

    await await_until(reached, timeout=20, what=f"{url} to be {want}")
    return doc


# -- item 5: a failed commit never leaves an acknowledged-but-lost task ----------------


async def test_locked_database_is_503_and_the_retry_is_one_durable_task(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    tag = str(uuid.uuid4())
    server = LocalTesServer(tmp_path, runtime="noop", db_busy_timeout=0.5)
    async with server, aiohttp.ClientSession() as session:
        api = f"{server.url}{API}"
        with exclusive_lock(tmp_path / "tasks.sqlite3"):
            async with session.post(f"{api}/tasks", json=_task_body(tag)) as resp:
                assert resp.status == 503, await resp.text()
                assert resp.headers.get("Retry-After", "").isdigit()
                assert "nothing was created" in (await resp.json())["error"]
            # Still locked: the refused task must not be visible anywhere.
            assert await _tagged(session, api, tag) == []
        async with session.post(f"{api}/tasks", json=_task_body(tag)) as resp:
            assert resp.status == 200, await resp.text()
            task_id = (await resp.json())["id"]
        await _wait_state(session, f"{api}/tasks/{task_id}", "COMPLETE")
        assert await _tagged(session, api, tag) == [task_id]
    assert not [r for r in caplog.records if r.exc_info]

    again = LocalTesServer(tmp_path, runtime="noop")
    async with again, aiohttp.ClientSession() as session:
        async with session.get(f"{again.url}{API}/tasks/{task_id}") as resp:
            assert resp.status == 200, "the acknowledged task was lost on restart"
            assert (await resp.json())["state"] == "COMPLETE"
        assert await _tagged(session, f"{again.url}{API}", tag) == [task_id]


async def test_engine_submit_through_a_503_ends_with_one_completed_task(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="tesengine.server.store")
    storage = tmp_path / "storage"
    server = LocalTesServer(tmp_path / "server", storage_url=storage.as_uri(), runtime="noop")
    async with server:
        config = file_config(server.url, storage, tmp_path / "cache")
        task = Task(name="through-503", executors=[Executor(image="alpine", command=["true"])])
        async with TesBackend(config) as backend:
            with exclusive_lock(server.settings.work_dir / "tasks.sqlite3"):
                submitting = asyncio.create_task(backend.submit(task))

                def commit_failed() -> bool:
                    assert not submitting.done(), submitting
                    return any("failed" in r.getMessage() for r in caplog.records)

                # The server's busy wait is 5 s.
                await await_until(commit_failed, timeout=20, what="the failed commit's log")
            run = await submitting
            result = await asyncio.wait_for(run, 20)
        assert result.state is State.COMPLETE
        async with TesClient(server.url) as client:
            tasks = [t async for t in client.iter_tasks(view=View.BASIC)]
        assert [t.id for t in tasks] == [run.id]
        assert tasks[0].state is State.COMPLETE


# -- Authorization: odd bytes and scheme case -----------------------------------------


async def _raw(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()


def _get(path: str, *headers: bytes) -> bytes:
    lines = [f"GET {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", *headers, b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def _problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_non_ascii_authorization_is_401_without_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with LocalTesServer(tmp_path, runtime="noop", bearer="s3cret") as server:
        for value in (b"Bearer \xff\xfe\x80", b"\xc3\xa9t\xc3\xa9 x", b"Basic \xe2\x82\xac=="):
            reply = await _raw(server.url, _get(f"{API}/service-info", b"Authorization: " + value))
            assert _status(reply) == 401, reply
            assert b"WWW-Authenticate: Bearer" in reply
    assert _problems(caplog) == []


@pytest.mark.parametrize("scheme", ["basic", "BASIC", "Basic", "bearer", "BEARER", "bEaReR"])
async def test_auth_scheme_names_are_case_insensitive(tmp_path: Path, scheme: str) -> None:
    async with LocalTesServer(
        tmp_path, runtime="noop", basic=("ann", "pw"), bearer="tok"
    ) as server:
        secret = "YW5uOnB3" if scheme.lower() == "basic" else "tok"
        async with aiohttp.ClientSession() as session:
            url = f"{server.url}{API}/service-info"
            async with session.get(url, headers={"Authorization": f"{scheme} {secret}"}) as ok:
                assert ok.status == 200
            wrong = {"Authorization": f"{scheme} {secret}x"}
            async with session.get(url, headers=wrong) as refused:
                assert refused.status == 401


# -- a NUL byte in a header -----------------------------------------------------------


async def test_nul_byte_in_a_header_logs_one_line_not_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with LocalTesServer(tmp_path, runtime="noop") as server:
        for header in (b"X-Evil: a\x00b", b"User-Agent: \x00", b"Authorization: Bearer \x00"):
            caplog.clear()
            reply = await _raw(server.url, _get(f"{API}/service-info", header))
            assert _status(reply) == 400, reply
            about = [r for r in caplog.records if r.name.startswith(("aiohttp", "tesengine"))]
            about = [r for r in about if r.levelno >= logging.INFO]
            assert len(about) <= 1, [r.getMessage() for r in about]
            for record in about:
                assert record.exc_info is None and record.levelno < logging.ERROR
                assert "\n" not in record.getMessage()
        async with (
            aiohttp.ClientSession() as session,  # and it still serves
            session.get(f"{server.url}{API}/service-info") as resp,
        ):
            assert resp.status == 200


# -- the task database at start-up ----------------------------------------------------


async def _create(url: str, n: int) -> list[str]:
    async with TesClient(url) as client:
        task = TesTask(executors=[WireExecutor(image="alpine", command=["true"])])
        return [await client.create_task(task) for _ in range(n)]


async def test_unreadable_rows_are_logged_and_skipped_at_start_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tesengine")
    async with LocalTesServer(tmp_path, runtime="noop") as server:
        kept = await _create(server.url, 2)
    db = sqlite3.connect(tmp_path / "tasks.sqlite3")
    with db:
        db.executemany(
            "INSERT INTO tasks (seq, id, doc) VALUES (?, ?, ?)",
            [
                (100, "bad-json", "{not json"),
                (101, "no-id", json.dumps({"state": "QUEUED", "executors": []})),
                (102, "a-list", "[1, 2]"),
            ],
        )
    db.close()
    async with (
        LocalTesServer(tmp_path, runtime="noop") as server,
        TesClient(server.url) as client,
    ):
        listed = {t.id async for t in client.iter_tasks()}
        assert listed == set(kept)
        fresh = await client.create_task(
            TesTask(executors=[WireExecutor(image="a", command=["x"])])
        )
        assert (await client.get_task(fresh)).id == fresh
    warned = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    for seq in ("seq=100", "seq=101", "seq=102"):
        assert seq in warned
    assert "not valid JSON" in warned and "no task id" in warned
    assert not [r for r in caplog.records if r.exc_info]


def test_empty_database_beside_task_directories_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "tasks" / "0123abcd" / "root").mkdir(parents=True)
    (work / "tasks.sqlite3").write_bytes(b"")
    argv = [sys.executable, "-m", "tesengine", "serve", "--port", "0", "--work-dir", str(work)]
    argv += ["--runtime", "noop", "--storage", (tmp_path / "storage").as_uri()]
    done = subprocess.run(argv, capture_output=True, timeout=60, env=user_env(), check=False)
    err = done.stderr.decode()
    assert done.returncode != 0
    assert "is empty (0 bytes)" in err and str(work / "tasks.sqlite3") in err
    assert "Traceback" not in err
    assert (work / "tasks" / "0123abcd").is_dir(), "the evidence was deleted"
    assert (work / "tasks.sqlite3").stat().st_size == 0


async def test_empty_database_without_task_directories_starts(tmp_path: Path) -> None:
    (tmp_path / "tasks.sqlite3").write_bytes(b"")
    async with LocalTesServer(tmp_path, runtime="noop") as server:
        assert len(await _create(server.url, 1)) == 1
