"""The storage boundary of ``tesengine serve``: what a task can make the server read or write.

Each test performs the attack against a real server (``tesengine serve`` as a
subprocess with the local runtime and real bubblewrap, or in process) and
asserts that it fails safely.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tesengine import Executor, Task, TesBackend
from tesengine.errors import StorageError, TaskFailed
from tesengine.server import LocalTesServer
from tesengine.storage import Stager, Storage
from tesengine.tes import TesClient
from tests.fixtures.tes_server import ServedTes
from tests.support import await_until, file_config

SECRET = "host-secret-5d1e-never-copy-me"
FINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}


def _sh(script: str, **kw: Any) -> dict[str, Any]:
    return {"image": "debian:stable", "command": ["sh", "-c", script], **kw}


async def _post(served: ServedTes, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{served.api}/tasks", json=body) as resp,
    ):
        return resp.status, await resp.json()


async def _run(served: ServedTes, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = await _post(served, body)
    assert status == 200, answer
    async with aiohttp.ClientSession() as session:
        url = f"{served.api}/tasks/{answer['id']}?view=FULL"
        task: dict[str, Any] = {}

        async def final() -> bool:
            async with session.get(url) as resp:
                task.update(await resp.json())
            return task["state"] in FINAL

        await await_until(final, timeout=30, what=f"{url} to finish")
    return task


def _syslogs(task: dict[str, Any]) -> list[str]:
    return [line for log in task.get("logs", []) for line in log.get("system_logs", [])]


def _stdout(task: dict[str, Any]) -> str:
    return "".join(e.get("stdout", "") for log in task.get("logs", []) for e in log["logs"])


async def test_directory_input_never_follows_links_out_of_the_storage_root(
    local_tes: ServedTes, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    (outside / "elsewhere").mkdir(parents=True)
    (outside / "secret").write_text(SECRET)
    (outside / "elsewhere" / "x.txt").write_text(SECRET)
    case = local_tes.storage_dir / f"dirs-{uuid.uuid4().hex}"
    (case / "dir").mkdir(parents=True)
    (case / "dir" / "a.txt").write_text("plain file\n")
    (case / "kept.txt").write_text("inside the root\n")
    (case / "dir" / "s.txt").symlink_to(outside / "secret")
    (case / "dir" / "sub").symlink_to(outside / "elsewhere")
    (case / "dir" / "in.txt").symlink_to(case / "kept.txt")  # stays inside: resolved
    body = {
        "inputs": [{"url": (case / "dir").as_uri(), "path": "/in/d", "type": "DIRECTORY"}],
        "executors": [_sh("cd /in/d && find . | sort && cat a.txt in.txt; cat s.txt sub/x.txt")],
    }
    task = await _run(local_tes, body)
    out = _stdout(task)
    assert SECRET not in out
    assert "plain file\ninside the root\n" in out
    assert "./s.txt" not in out
    assert "./sub" not in out
    logs = "\n".join(_syslogs(task))
    assert "s.txt: links outside the directories" in logs
    assert "sub: links outside the directories" in logs


async def test_file_input_through_a_link_out_of_the_root_is_refused(
    local_tes: ServedTes, tmp_path: Path
) -> None:
    (tmp_path / "secret").write_text(SECRET)
    link = local_tes.storage_dir / f"link-{uuid.uuid4().hex}"
    link.symlink_to(tmp_path / "secret")
    body = {
        "inputs": [{"url": link.as_uri(), "path": "/in/s"}],
        "executors": [_sh("cat /in/s")],
    }
    status, answer = await _post(local_tes, body)
    assert status == 400
    assert answer["error"].startswith("inputs[0].url: ")
    assert "outside the directories this server may access (allowed: " in answer["error"]
    assert local_tes.storage_dir.resolve().as_uri() in answer["error"]


async def test_outputs_into_the_inputs_namespace_are_refused(local_tes: ServedTes) -> None:
    planted = local_tes.storage_dir / "inputs" / "file" / ("ab" * 32)
    body = {
        "outputs": [{"url": planted.as_uri(), "path": "/out/x"}],
        "executors": [_sh("echo evil > /out/x")],
    }
    status, answer = await _post(local_tes, body)
    assert status == 400
    assert answer["error"].startswith("outputs[0].url: ")
    assert "content-addressed inputs" in answer["error"]
    # Through a directory output whose files would land under inputs/: refused at upload.
    body = {
        "outputs": [{"url": local_tes.storage_dir.as_uri(), "path": "/out/d", "type": "DIRECTORY"}],
        "executors": [_sh("mkdir -p /out/d/inputs/file && echo evil > /out/d/inputs/file/cd")],
    }
    task = await _run(local_tes, body)
    assert task["state"] == "SYSTEM_ERROR"
    assert any("content-addressed inputs" in line for line in _syslogs(task))
    assert not planted.exists()
    assert not (local_tes.storage_dir / "inputs" / "file" / "cd").exists()


async def test_urls_the_server_can_never_access_are_400_at_create(local_tes: ServedTes) -> None:
    body = {
        "inputs": [{"url": "file:///etc/hostname", "path": "/in/h"}],
        "outputs": [{"url": "file:///tmp/never-here", "path": "/out/o"}],
        "executors": [_sh("true")],
    }
    status, answer = await _post(local_tes, body)
    assert (status, answer["error"].split(":")[0]) == (400, "inputs[0].url")
    body["inputs"] = []
    status, answer = await _post(local_tes, body)
    assert (status, answer["error"].split(":")[0]) == (400, "outputs[0].url")
    assert "(allowed: file://" in answer["error"]
    assert not Path("/tmp/never-here").exists()


async def test_missing_outputs_fail_naming_the_output(local_tes: ServedTes) -> None:
    storage = local_tes.storage_dir
    for kind, path in (("FILE", "/out/x"), ("FILE", "/out/sub/y")):
        body = {
            "outputs": [
                {
                    "name": "result",
                    "url": (storage / "o" / kind).as_uri(),
                    "path": path,
                    "type": kind,
                }
            ],
            "executors": [_sh("true")],
        }
        task = await _run(local_tes, body)
        assert task["state"] == "SYSTEM_ERROR"
        assert any(
            line.endswith(f"output 'result' ({path}): the task did not produce it")
            for line in _syslogs(task)
        ), _syslogs(task)


async def test_engine_names_the_missing_output(local_tes: ServedTes, tmp_path: Path) -> None:
    config = file_config(local_tes.url, local_tes.storage_dir, tmp_path / "cache")
    task = Task("nofile", [Executor("debian:stable", ["true"])], outputs={"d": "/out/x.txt"})
    async with TesBackend(config) as backend:
        with pytest.raises(TaskFailed) as info:
            await (await backend.submit(task))
    assert "SYSTEM_ERROR" in str(info.value)
    assert "output 'd' (/out/x.txt): the task did not produce it" in str(info.value)


async def test_url_and_content_together_is_valid_and_content_wins(local_tes: ServedTes) -> None:
    body = {
        "inputs": [{"url": "s3://nowhere/x", "content": "literal wins\n", "path": "/in/c"}],
        "executors": [_sh("cat /in/c")],
    }
    task = await _run(local_tes, body)
    assert task["state"] == "COMPLETE", _syslogs(task)
    assert _stdout(task) == "literal wins\n"


async def test_a_wrong_size_object_at_a_content_address_is_never_trusted(
    tmp_path: Path,
) -> None:
    storage = tmp_path / "storage"
    local = tmp_path / "data.txt"
    local.write_bytes(b"the real input, 31 bytes long.\n")
    # Learn the content address, then plant a different object of another size there.
    from tesengine.digest import Digester

    async with Digester(cache_dir=tmp_path / "dc") as digester:
        probe = await Stager(Storage(), digester, (tmp_path / "probe").as_uri()).stage(local)
    key = probe.url.rsplit("/probe/", 1)[1]
    planted = storage / "inputs" / key
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"planted by someone else")
    srv = LocalTesServer(tmp_path / "srv", runtime="noop", storage_url=storage.as_uri())
    async with srv:
        config = file_config(srv.url, storage, tmp_path / "cache")
        task = Task("t", [Executor("alpine", ["true"])], inputs={"/in/x": local})
        async with TesBackend(config) as backend:
            with pytest.raises(StorageError) as info:
                await backend.submit(task)
        async with TesClient(srv.url) as client:
            listed = await client.list_tasks()
    assert type(info.value).__name__ == "ContentMismatch"
    assert planted.as_uri() in str(info.value)
    assert "23 bytes" in str(info.value)
    assert list(listed.tasks or []) == []
    assert planted.read_bytes() == b"planted by someone else"
