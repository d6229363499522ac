"""Auth providers, against real aiohttp servers on 127.0.0.1.

Covers: the header each config makes, token_command / token_file refresh on
401 (once per 401, then AuthError), the header never crossing to another
origin on a redirect, and secrets absent from reprs, errors and DEBUG logs.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import SecretStr

from tesengine.auth import AuthProvider, BasicAuth, BearerToken, auth_from_config, same_origin
from tesengine.config import BasicAuthConfig, BearerAuthConfig
from tesengine.errors import AuthError
from tesengine.tes import State, TesClient

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Server:
    """A TES-ish server that records the Authorization header of each request."""

    url: str = ""
    seen: list[str | None] = field(default_factory=list)
    accept: set[str] = field(default_factory=set)  # header values that pass; empty: all pass
    on_401: Callable[[], None] | None = None

    async def task(self, request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization")
        self.seen.append(header)
        if self.accept and header not in self.accept:
            if self.on_401 is not None:
                self.on_401()
            return web.json_response({"error": "token expired"}, status=401)
        return web.json_response({"id": request.match_info["id"], "state": "RUNNING"})


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Server, dict[str, Handler] | None], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(server: Server, extra: dict[str, Handler] | None = None) -> str:
        app = web.Application()
        app.router.add_get("/ga4gh/tes/v1/tasks/{id}", server.task)
        for path, handler in (extra or {}).items():
            app.router.add_get(path, handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        server.url = f"http://127.0.0.1:{port}"
        return server.url

    yield start
    for runner in runners:
        await runner.cleanup()


def counter_command(tmp_path: Path) -> list[str]:
    """A token_command printing token-1, token-2... (its run count is in the file)."""
    counter = tmp_path / "count"
    counter.write_text("0")
    script = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = int(p.read_text()) + 1;"
        " p.write_text(str(n)); print(f'token-{n}')"
    )
    return [sys.executable, "-c", script, str(counter)]


def runs(tmp_path: Path) -> int:
    return int((tmp_path / "count").read_text())


def client_for(url: str, auth: AuthProvider | None) -> TesClient:
    return TesClient(url + "/ga4gh/tes/v1", auth=auth, retries=0)


# --- pure parts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "server", "same"),
    [
        ("https://tes.example.org/v1/tasks", "https://tes.example.org", True),
        ("https://TES.example.org:443/x", "https://tes.example.org/ga4gh/tes/v1", True),
        ("http://127.0.0.1:8000/a", "http://127.0.0.1:8000", True),
        ("http://tes.example.org/x", "https://tes.example.org", False),  # scheme
        ("https://tes.example.org:8443/x", "https://tes.example.org", False),  # port
        ("https://storage.example.org/x", "https://tes.example.org", False),  # host
        ("https://tes.example.org.evil.com/x", "https://tes.example.org", False),
        ("s3://tes.example.org/x", "https://tes.example.org", False),
        ("/relative/path", "https://tes.example.org", False),
        ("http://[::1]:99999999/", "http://[::1]:80", False),  # unparseable port
    ],
)
def test_same_origin(url: str, server: str, same: bool) -> None:
    assert same_origin(url, server) is same


async def test_basic_header_and_repr() -> None:
    auth = auth_from_config(
        BasicAuthConfig(type="basic", username="ada", password=SecretStr("hunter2"))
    )
    assert isinstance(auth, BasicAuth)
    assert await auth.header() == "Basic " + base64.b64encode(b"ada:hunter2").decode()
    assert await auth.refresh() is False
    assert "hunter2" not in repr(auth) and "YWRh" not in repr(auth)


async def test_static_bearer() -> None:
    auth = auth_from_config(BearerAuthConfig(type="bearer", token=SecretStr("tok-xyz")))
    assert isinstance(auth, AuthProvider)
    assert await auth.header() == "Bearer tok-xyz"
    assert await auth.refresh() is False
    assert "tok-xyz" not in repr(auth)


def test_no_auth_table() -> None:
    assert auth_from_config(None) is None


async def test_token_command_as_string_is_split_without_a_shell(tmp_path: Path) -> None:
    script = tmp_path / "tok.py"
    script.write_text("print('  from-string  ')")
    auth = auth_from_config(
        BearerAuthConfig(type="bearer", token_command=f"'{sys.executable}' '{script}'")
    )
    assert auth is not None
    assert await auth.header() == "Bearer from-string"


async def test_failing_token_command_names_only_the_program(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; sys.exit(3)", "--secret=abc123"]
    auth = auth_from_config(BearerAuthConfig(type="bearer", token_command=argv))
    assert auth is not None
    with pytest.raises(AuthError, match="exited with status 3") as info:
        await auth.header()
    assert "abc123" not in str(info.value)
    assert Path(sys.executable).name in str(info.value)


async def test_empty_token_and_missing_file(tmp_path: Path) -> None:
    empty = auth_from_config(BearerAuthConfig(type="bearer", token_command=["true"]))
    assert empty is not None
    with pytest.raises(AuthError, match="empty token"):
        await empty.header()
    missing = auth_from_config(BearerAuthConfig(type="bearer", token_file=tmp_path / "nope"))
    assert missing is not None
    with pytest.raises(AuthError, match=r"cannot read bearer token_file .*nope"):
        await missing.header()


# --- refresh on 401, over real HTTP --------------------------------------------------------


async def test_token_command_rerun_once_on_401(serve: Callable, tmp_path: Path) -> None:
    server = Server(accept={"Bearer token-2"})
    url = await serve(server)
    auth = auth_from_config(
        BearerAuthConfig(type="bearer", token_command=counter_command(tmp_path))
    )
    async with client_for(url, auth) as tes:
        task = await tes.get_task("t1")
        assert task.state is State.RUNNING
        assert server.seen == ["Bearer token-1", "Bearer token-2"]
        assert runs(tmp_path) == 2
        await tes.get_task("t2")  # the new token is kept
    assert runs(tmp_path) == 2 and server.seen[-1] == "Bearer token-2"


async def test_refresh_that_does_not_help_fails_clearly(serve: Callable, tmp_path: Path) -> None:
    server = Server(accept={"Bearer never"})
    url = await serve(server)
    auth = auth_from_config(
        BearerAuthConfig(type="bearer", token_command=counter_command(tmp_path))
    )
    async with client_for(url, auth) as tes:
        with pytest.raises(AuthError, match=r"HTTP 401 again after .*refreshed: token expired"):
            await tes.get_task("t1")
    assert runs(tmp_path) == 2  # first fetch, then exactly one refresh for the one 401
    assert len(server.seen) == 2


async def test_static_token_401_is_final(serve: Callable) -> None:
    server = Server(accept={"Bearer good"})
    url = await serve(server)
    async with client_for(url, BearerToken("bad")) as tes:
        with pytest.raises(AuthError, match="no new credentials"):
            await tes.get_task("t1")
    assert server.seen == ["Bearer bad"]


async def test_burst_of_401s_runs_the_command_once(serve: Callable, tmp_path: Path) -> None:
    server = Server(accept={"Bearer token-2"})
    url = await serve(server)
    auth = auth_from_config(
        BearerAuthConfig(type="bearer", token_command=counter_command(tmp_path))
    )
    async with client_for(url, auth) as tes:
        await auth.header()  # token-1 for everybody
        tasks = await asyncio.gather(*(tes.get_task(f"t{i}") for i in range(20)))
    assert len(tasks) == 20
    assert runs(tmp_path) == 2


async def test_token_file_reread_on_401(serve: Callable, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("old-token\n")
    rotate = lambda: token_file.write_text("new-token\n")  # noqa: E731 - an agent rotates it
    server = Server(accept={"Bearer new-token"}, on_401=rotate)
    url = await serve(server)
    auth = auth_from_config(BearerAuthConfig(type="bearer", token_file=token_file))
    async with client_for(url, auth) as tes:
        await tes.get_task("t1")
    assert server.seen == ["Bearer old-token", "Bearer new-token"]


# --- origins -------------------------------------------------------------------------------


async def test_redirect_to_another_origin_drops_the_header(serve: Callable) -> None:
    elsewhere = Server()
    other = await serve(elsewhere)  # another port on 127.0.0.1: another origin
    redirector = Server()

    async def redirect_away(request: web.Request) -> web.StreamResponse:
        redirector.seen.append(request.headers.get("Authorization"))
        raise web.HTTPTemporaryRedirect(f"{other}/ga4gh/tes/v1/tasks/{request.match_info['id']}")

    url = await serve(redirector, {"/moved/ga4gh/tes/v1/tasks/{id}": redirect_away})
    async with TesClient(url + "/moved/ga4gh/tes/v1", auth=BearerToken("s3cr3t"), retries=0) as tes:
        task = await tes.get_task("t1")
    assert task.id == "t1"
    assert redirector.seen == ["Bearer s3cr3t"]
    assert elsewhere.seen == [None]


async def test_same_origin_redirect_keeps_the_header(serve: Callable) -> None:
    server = Server(accept={"Bearer s3cr3t"})

    async def redirect_here(request: web.Request) -> web.StreamResponse:
        server.seen.append(request.headers.get("Authorization"))
        raise web.HTTPFound(f"/ga4gh/tes/v1/tasks/{request.match_info['id']}")

    url = await serve(server, {"/old/ga4gh/tes/v1/tasks/{id}": redirect_here})
    async with TesClient(url + "/old/ga4gh/tes/v1", auth=BearerToken("s3cr3t"), retries=0) as tes:
        assert (await tes.get_task("t1")).id == "t1"
    assert server.seen == ["Bearer s3cr3t", "Bearer s3cr3t"]


# --- secrets stay secret -------------------------------------------------------------------


async def test_secrets_absent_from_logs_reprs_and_errors(
    serve: Callable, tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    debug_logs.set_level(logging.DEBUG)  # aiohttp and stamina too
    server = Server(accept={"Bearer token-2"})
    url = await serve(server)
    cfg = BearerAuthConfig(type="bearer", token_command=counter_command(tmp_path))
    auth = auth_from_config(cfg)
    async with client_for(url, auth) as tes:
        await tes.get_task("t1")
        server.accept = {"Bearer never"}
        with pytest.raises(AuthError) as info:
            await tes.get_task("t2")
        texts = [debug_logs.text, repr(auth), repr(tes), str(info.value), repr(cfg)]
    assert debug_logs.records, "DEBUG logging must have been captured"
    for text in texts:
        assert "token-1" not in text and "token-2" not in text and "token-3" not in text
    basic = BasicAuth("ada", "hunter2")
    assert "hunter2" not in repr(basic)
