"""The TES API of ``tesengine serve`` over real HTTP on loopback (noop runtime).

Every response body is validated against the official OpenAPI schemas.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tesengine.errors import ConfigError
from tesengine.server import LocalTesServer
from tests.fixtures.tes_spec import TesSpec
from tests.support import await_until

API = "/ga4gh/tes/v1"
# The spec's MINIMAL view is "id and state only", yet its tesTask schema requires
# executors: a MINIMAL task is checked against everything else.
MINIMAL_GAP = "'executors' is a required property"
TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"}


def task_body(name: str = "t", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "executors": [{"image": "alpine", "command": ["echo", "hi"]}],
        "inputs": [{"path": "/data/a.txt", "content": "inline"}],
        **extra,
    }


class Api:
    """A tiny JSON client that checks every body against the spec."""

    def __init__(self, session: aiohttp.ClientSession, base: str, spec: TesSpec) -> None:
        self.session, self.base, self.spec = session, base, spec

    async def call(
        self, method: str, path: str, *, schema: str | None = None, **kw: Any
    ) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, **kw) as resp:
            body = await resp.json(content_type=None)
        if resp.status >= 400:
            assert isinstance(body, dict) and isinstance(body.get("error"), str), body
        elif schema is not None:
            problems = self.spec.errors(schema, body)
            if method == "GET" and ("view=" not in path or "view=MINIMAL" in path):
                problems = [p for p in problems if not p.endswith(MINIMAL_GAP)]
            assert not problems, f"not a valid {schema}: {problems}"
        return resp.status, body

    async def create(self, body: dict[str, Any]) -> str:
        status, created = await self.call(
            "POST", "/tasks", json=body, schema="tesCreateTaskResponse"
        )
        assert status == 200, created
        return str(created["id"])

    async def get(self, task_id: str, view: str = "MINIMAL") -> dict[str, Any]:
        status, task = await self.call("GET", f"/tasks/{task_id}?view={view}", schema="tesTask")
        assert status == 200, task
        return dict(task)

    async def wait(self, task_id: str, states: set[str], timeout: float = 10.0) -> dict[str, Any]:
        task: dict[str, Any] = {}

        async def reached() -> bool:
            nonlocal task
            task = await self.get(task_id, "FULL")
            return task["state"] in states

        what = f"task {task_id} to reach {' or '.join(sorted(states))}"
        await await_until(reached, timeout=timeout, what=what)
        return task


@pytest.fixture
async def api(inproc_tes: LocalTesServer, tes_spec: TesSpec) -> Any:
    async with aiohttp.ClientSession() as session:
        yield Api(session, inproc_tes.url + API, tes_spec)


async def test_service_info_on_both_prefixes(inproc_tes: LocalTesServer, tes_spec: TesSpec) -> None:
    async with aiohttp.ClientSession() as session:
        for prefix in (API, "/v1"):
            async with session.get(f"{inproc_tes.url}{prefix}/service-info") as resp:
                assert resp.status == 200
                info = await resp.json()
            tes_spec.validate("tesServiceInfo", info)
            assert info["type"]["artifact"] == "tes"
            assert info["storage"][0].startswith("file://")
            assert info["tesResources_backend_parameters"] == []


async def test_create_get_views_and_completion(api: Api) -> None:
    task_id = await api.create(task_body(tags={"k": "v"}))
    minimal = await api.get(task_id)
    assert set(minimal) == {"id", "state"}
    full = await api.wait(task_id, TERMINAL)
    assert full["state"] == "COMPLETE"
    assert full["inputs"][0]["content"] == "inline"
    log = full["logs"][0]
    assert log["logs"][0]["exit_code"] == 0
    assert log["start_time"] <= log["end_time"]
    basic = await api.get(task_id, "BASIC")
    assert "content" not in basic["inputs"][0]
    assert basic["tags"] == {"k": "v"} and basic["creation_time"] == full["creation_time"]
    assert all("stdout" not in e and "stderr" not in e for e in basic["logs"][0]["logs"])
    assert all("system_logs" not in log for log in basic["logs"])


async def test_same_submission_tag_is_created_once(api: Api) -> None:
    tag = {"tesengine-submission": "0f3c7a52-1111-4c1e-9d0e-5c0ffee00001"}
    first = await api.create(task_body("once", tags=tag))
    again = await api.create(task_body("once", tags=tag))
    other = await api.create(task_body("once", tags={"tesengine-submission": "another"}))
    assert again == first
    assert other != first


async def test_backend_parameters_warning_is_a_full_view_system_log(api: Api) -> None:
    body = task_body(resources={"backend_parameters": {"VmSize": "x"}})
    task = await api.wait(await api.create(body), TERMINAL)
    assert "resources" in task and "backend_parameters" not in task["resources"]
    assert any("VmSize" in line for line in task["logs"][0]["system_logs"])


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "needle"),
    [
        ("POST", "/tasks", {"data": b"{not json"}, 400, "body"),
        ("POST", "/tasks", {"json": {"executors": [{"image": "a"}]}}, 400, "command"),
        ("POST", "/tasks", {"json": {"executors": [], "name": "x"}}, 400, "executors"),
        ("GET", "/tasks?view=EVERYTHING", {}, 400, "view"),
        ("GET", "/tasks?page_size=2048", {}, 400, "page_size"),
        ("GET", "/tasks?page_size=-1", {}, 400, "page_size"),
        ("GET", "/tasks?state=DONE", {}, 400, "state"),
        ("GET", "/tasks?page_token=xyz", {}, 400, "page_token"),
        ("GET", "/tasks/nope", {}, 404, "nope"),
        ("GET", "/tasks/nope?view=BAD", {}, 400, "view"),
        ("POST", "/tasks/nope:cancel", {}, 404, "nope"),
        ("GET", "/nothing-here", {}, 404, ""),
        ("DELETE", "/tasks", {}, 405, ""),
    ],
)
async def test_client_errors(
    api: Api, method: str, path: str, kwargs: dict[str, Any], status: int, needle: str
) -> None:
    got, body = await api.call(method, path, **kwargs)
    assert got == status
    assert needle in body["error"]


async def test_filters(api: Api) -> None:
    ids = {
        "a1": await api.create(task_body("align-1", tags={"run": "r1", "kind": "x"})),
        "a2": await api.create(task_body("align-2", tags={"run": "r2"})),
        "c1": await api.create(task_body("call-1", tags={"run": "r1", "kind": ""})),
    }
    for task_id in ids.values():
        await api.wait(task_id, TERMINAL)

    async def listed(query: str) -> set[str]:
        status, body = await api.call("GET", f"/tasks?{query}", schema="tesListTasksResponse")
        assert status == 200, body
        return {t["id"] for t in body["tasks"]}

    assert await listed("name_prefix=align") == {ids["a1"], ids["a2"]}
    assert await listed("tag_key=run&tag_value=r1") == {ids["a1"], ids["c1"]}
    assert await listed("tag_key=kind") == {ids["a1"], ids["c1"]}
    assert await listed("tag_key=run&tag_value=r1&tag_key=kind&tag_value=x") == {ids["a1"]}
    assert await listed("state=COMPLETE&name_prefix=call") == {ids["c1"]}
    assert await listed("state=QUEUED&name_prefix=call") == set()


async def test_paging_over_3000_tasks(api: Api) -> None:
    limit = asyncio.Semaphore(32)

    async def one(i: int) -> str:
        async with limit:
            return await api.create(task_body(f"page-{i}", tags={"batch": "paging"}))

    created = await asyncio.gather(*(one(i) for i in range(3000)))
    status, first = await api.call("GET", "/tasks?tag_key=batch", schema="tesListTasksResponse")
    assert status == 200 and len(first["tasks"]) == 256 and "next_page_token" in first

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        query = "/tasks?tag_key=batch&tag_value=paging&page_size=2047&view=BASIC"
        status, page = await api.call(
            "GET", query + (f"&page_token={token}" if token else ""), schema="tesListTasksResponse"
        )
        assert status == 200, page
        pages += 1
        seen += [t["id"] for t in page["tasks"]]
        token = page.get("next_page_token", "")
        if not token:
            break
    assert pages == 2
    assert len(seen) == len(set(seen)) == 3000
    assert set(seen) == set(created)
    assert seen[0] == created[-1], "newest first"


async def test_cancel_queued_running_and_finished(tmp_path: Path, tes_spec: TesSpec) -> None:
    server = LocalTesServer(tmp_path / "w", runtime="noop", noop_delay=60, max_tasks=1)
    async with server, aiohttp.ClientSession() as session:
        api = Api(session, server.url + API, tes_spec)
        running = await api.create(task_body("running"))
        queued = await api.create(task_body("queued"))
        await api.wait(running, {"RUNNING"})
        assert (await api.get(queued))["state"] == "QUEUED", "max_tasks=1 keeps it queued"

        status, body = await api.call(
            "POST", f"/tasks/{queued}:cancel", schema="tesCancelTaskResponse"
        )
        assert (status, body) == (200, {})
        assert (await api.get(queued))["state"] == "CANCELED"

        await api.call("POST", f"/tasks/{running}:cancel")
        task = await api.wait(running, {"CANCELED"}, timeout=2.0)
        assert task["logs"][0]["end_time"]
        status, _ = await api.call("POST", f"/tasks/{running}:cancel")
        assert status == 200 and (await api.get(running))["state"] == "CANCELED"

    async with (
        LocalTesServer(tmp_path / "w2", runtime="noop") as server,
        aiohttp.ClientSession() as session,
    ):
        api = Api(session, server.url + API, tes_spec)
        done = await api.create(task_body())
        await api.wait(done, {"COMPLETE"})
        status, _ = await api.call("POST", f"/tasks/{done}:cancel")
        assert status == 200 and (await api.get(done))["state"] == "COMPLETE"


async def test_cpu_cores_take_slots(tmp_path: Path, tes_spec: TesSpec) -> None:
    server = LocalTesServer(tmp_path / "w", runtime="noop", noop_delay=60, max_tasks=2)
    async with server, aiohttp.ClientSession() as session:
        api = Api(session, server.url + API, tes_spec)
        big = await api.create(task_body("big", resources={"cpu_cores": 8}))
        small = await api.create(task_body("small"))
        await api.wait(big, {"RUNNING"})
        assert (await api.get(small))["state"] == "QUEUED", "big holds every slot"
        await api.call("POST", f"/tasks/{big}:cancel")
        await api.wait(small, {"RUNNING"})


async def test_restart_keeps_tasks(tmp_path: Path, tes_spec: TesSpec) -> None:
    work = tmp_path / "w"
    async with (
        LocalTesServer(work, runtime="noop", noop_delay=60, max_tasks=1) as server,
        aiohttp.ClientSession() as session,
    ):
        api = Api(session, server.url + API, tes_spec)
        running = await api.create(task_body("r"))
        queued = await api.create(task_body("q"))
        await api.wait(running, {"RUNNING"})
    async with (
        LocalTesServer(work, runtime="noop", max_tasks=1) as server,
        aiohttp.ClientSession() as session,
    ):
        api = Api(session, server.url + API, tes_spec)
        task = await api.get(running, "FULL")
        assert task["state"] == "SYSTEM_ERROR"
        assert any("shut down" in s for s in task["logs"][0]["system_logs"])
        assert (await api.wait(queued, TERMINAL))["state"] == "COMPLETE"


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
async def test_auth(tmp_path: Path, scheme: str) -> None:
    creds: dict[str, Any] = (
        {"basic": ("alice", "s3cret")} if scheme == "basic" else {"bearer": "tok"}
    )
    good = (
        "Basic " + base64.b64encode(b"alice:s3cret").decode() if scheme == "basic" else "Bearer tok"
    )
    async with LocalTesServer(tmp_path / "w", runtime="noop", **creds) as server:
        url = f"{server.url}{API}/service-info"
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as resp:
                assert resp.status == 401
                assert resp.headers["WWW-Authenticate"].startswith(scheme.capitalize())
                assert "missing" in (await resp.json())["error"]
            async with session.get(url, headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401
            async with session.get(url, headers={"Authorization": good}) as resp:
                assert resp.status == 200
    assert "s3cret" not in repr(server.settings) and "tok" not in repr(server.settings)


def test_refuses_open_non_loopback_bind(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="non-loopback"):
        LocalTesServer(tmp_path, host="0.0.0.0", runtime="noop")
    LocalTesServer(tmp_path, host="0.0.0.0", runtime="noop", bearer="t")
