"""SSRF: a task must not make ``tesengine serve`` fetch internal services for it.

The "internal service" is a real HTTP server on 127.0.0.1 that records every
request (standing in for a cloud metadata endpoint); the TES server is a
real ``tesengine serve`` subprocess with the local runtime (bubblewrap).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tesengine.storage.stores import StoreCache
from tesengine.storage.urls import parse_url
from tests.fixtures.tes_server import ServedTes

METADATA = b"iam-role-credentials-7a3c-never-fetch-me"
FINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}


class Internal:
    """An HTTP server that records every request it gets (path and headers)."""

    def __init__(self, redirect_to: str | None = None) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.redirect_to = redirect_to
        self.url = ""
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.headers)))
        if self.redirect_to is not None:
            raise web.HTTPFound(self.redirect_to)
        return web.Response(body=METADATA)


Start = Callable[..., Awaitable[Internal]]


@pytest.fixture
async def internal() -> AsyncIterator[Start]:
    runners: list[web.AppRunner] = []

    async def start(host: str = "127.0.0.1", redirect_to: str | None = None) -> Internal:
        server = Internal(redirect_to)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", server.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, 0)
        await site.start()
        runners.append(runner)
        server.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        server.url = f"http://{host}:{server.port}"
        return server

    yield start
    for runner in runners:
        await runner.cleanup()


def _task(url: str) -> dict[str, Any]:
    return {
        "inputs": [{"url": url, "path": "/in/creds"}],
        "executors": [{"image": "debian:stable", "command": ["cat", "/in/creds"]}],
    }


async def _post(served: ServedTes, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{served.api}/tasks", json=body) as resp,
    ):
        return resp.status, await resp.json()


async def _final(served: ServedTes, task_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            async with session.get(f"{served.api}/tasks/{task_id}?view=FULL") as resp:
                task: dict[str, Any] = await resp.json()
            if task["state"] in FINAL:
                return task
            await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish")


def _text(task: dict[str, Any]) -> str:
    logs = task.get("logs", [])
    syslogs = [line for log in logs for line in log.get("system_logs", [])]
    return "\n".join(syslogs + [e.get("stdout", "") for log in logs for e in log["logs"]])


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("localhost", "loopback"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("169.254.169.254", "link-local"),
        ("[fe80::1]", "link-local"),
        ("10.0.0.1", "private"),
        ("0.0.0.0", "unspecified"),
    ],
)
async def test_private_address_inputs_are_refused_at_create(
    local_tes: ServedTes, internal: Start, host: str, kind: str
) -> None:
    target = await internal()
    status, answer = await _post(local_tes, _task(f"http://{host}:{target.port}/latest/meta-data"))
    assert status == 400
    assert answer["error"].startswith("inputs[0].url: ")
    assert f"a {kind} address" in answer["error"] or f"an {kind} address" in answer["error"]
    assert "--allow-private-urls" in answer["error"]
    assert target.requests == []


async def test_a_name_resolving_to_loopback_is_refused_after_dns(
    local_tes: ServedTes, internal: Start
) -> None:
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 80)}
    except OSError:
        pytest.skip(f"this machine's own name {name!r} does not resolve")
    target = await internal()
    status, answer = await _post(local_tes, _task(f"http://{name}:{target.port}/latest/meta-data"))
    assert status == 200, answer  # a name: only DNS can tell, at fetch time
    task = await _final(local_tes, answer["id"])
    assert task["state"] == "SYSTEM_ERROR"
    text = _text(task)
    assert METADATA.decode() not in text
    assert f"{name} resolves to" in text
    assert any(address in text for address in addresses)
    assert target.requests == []


async def test_every_redirect_hop_is_checked(
    internal: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No public address is reachable here, so the first hop's 127.0.0.1 is
    # declared public (fault injection); the redirect goes to 127.0.0.2,
    # which stays loopback.
    from tesengine.server import access
    from tesengine.server.fetch import FetchRefused, fetch_http

    real = access.address_problem
    monkeypatch.setattr(
        "tesengine.server.access.address_problem",
        lambda ip: None if str(ip) == "127.0.0.1" else real(ip),
    )
    target = await internal(host="127.0.0.2")
    redirector = await internal(redirect_to=f"{target.url}/latest/meta-data")
    dest = tmp_path / "got"
    with pytest.raises(FetchRefused, match=r"127\.0\.0\.2 is a loopback address"):
        await fetch_http(f"{redirector.url}/start", dest, allow_private=False)
    assert len(redirector.requests) == 1
    assert target.requests == []
    await fetch_http(f"{redirector.url}/start", dest, allow_private=True)
    assert dest.read_bytes() == METADATA


async def test_allow_private_urls_opts_in(serve_tes: Any, internal: Start) -> None:
    served = serve_tes(runtime="local", args=["--allow-private-urls"])
    target = await internal()
    status, answer = await _post(served, _task(f"{target.url}/latest/meta-data"))
    assert status == 200, answer
    task = await _final(served, answer["id"])
    assert task["state"] == "COMPLETE", _text(task)
    assert METADATA.decode() in _text(task)
    assert [(m, p) for m, p, _h in target.requests] == [("GET", "/latest/meta-data")]


async def test_no_credentials_configured_never_asks_the_metadata_endpoint(
    serve_tes: Any, internal: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    metadata = await internal()
    s3 = await internal()
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED", raising=False)
    env = {
        "AWS_METADATA_ENDPOINT": metadata.url,  # where obstore looks for instance credentials
        "AWS_ENDPOINT_URL": s3.url,
        "AWS_REGION": "us-east-1",
    }
    served = serve_tes(runtime="local", env=env)
    status, answer = await _post(served, _task("s3://some-bucket/creds.txt"))
    assert status == 200, answer
    task = await _final(served, answer["id"])
    assert metadata.requests == [], _text(task)
    assert s3.requests, _text(task)  # the request was made, unsigned
    assert all("Authorization" not in headers for _m, _p, headers in s3.requests)


@pytest.mark.parametrize("url", ["s3://b/k", "gs://b/k", "abfs://c@acct.dfs.core.windows.net/k"])
def test_server_stores_without_credentials_are_unsigned(url: str) -> None:
    server_side = StoreCache(ambient_credentials=False).store_for(parse_url(url))
    assert server_side.config.get("skip_signature") in (True, "true")  # type: ignore[union-attr]
    client_side = StoreCache().store_for(parse_url(url))
    assert "skip_signature" not in client_side.config  # type: ignore[union-attr]


def test_configured_credentials_are_still_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    store = StoreCache(ambient_credentials=False).store_for(parse_url("s3://b/k"))
    assert "skip_signature" not in store.config  # type: ignore[union-attr]
