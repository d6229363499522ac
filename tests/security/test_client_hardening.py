"""The client against hostile inputs and hostile servers: it fails safely and lives.

- an input truncated while it is hashed (memory-mapped: SIGBUS) is InputChanged;
- a TES server that trickles its answer, or sends a huge one, is cut off;
- a task whose outputs point outside the backend's ``outputs`` prefix is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tesengine import TesBackend
from tesengine.config import BackendConfig, Config
from tesengine.engine.recover import under_outputs as _under_outputs
from tesengine.errors import (
    ResponseTooLarge,
    TesEngineError,
    TesError,
    TesUnavailable,
    UnsafeReply,
)
from tesengine.tes import TesClient, View
from tesengine.tes.retry import set_testing
from tests.support import user_env, wait_until

GIB = 1 << 30

_EMBEDDER = """
import asyncio, sys
from tesengine.digest import Digester
from tesengine.errors import InputChanged

async def main() -> int:
    async with Digester(cache=False) as digester:
        try:
            digest = await digester.digest(sys.argv[1])
        except InputChanged as exc:
            print("InputChanged:", exc, flush=True)
            return 0
    print("no error:", digest.hex, flush=True)
    return 1

sys.exit(asyncio.run(main()))
"""


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                parents[int(entry)] = int(fh.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    found, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        found.update(children)
        frontier.extend(children)
    return found


def _maps(pid: int, path: Path) -> bool:
    try:
        with open(f"/proc/{pid}/maps") as fh:
            return str(path) in fh.read()
    except OSError:
        return False


def _mapped_under(root: int, path: Path) -> list[int]:
    """The processes of ``root``'s tree that have ``path`` memory-mapped now."""
    return [pid for pid in _descendants(root) if _maps(pid, path)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to see the mapping")
def test_input_truncated_while_mapped_is_input_changed_and_the_process_lives(
    tmp_path: Path,
) -> None:
    """A real file, truncated the moment it is memory-mapped for hashing.

    A sparse 32 GiB file takes seconds to hash, so the truncation, made as soon
    as a process of the embedding program's tree has it mapped, lands while
    it is hashed. Before the fix the embedding process itself mapped it and
    died of SIGBUS (exit -7); now a worker process maps it and dies instead.
    """
    victim = tmp_path / "input.bin"
    with victim.open("wb") as fh:
        fh.truncate(32 * GIB)  # sparse: no disk space, no time
    embedder = subprocess.Popen(
        [sys.executable, "-c", _EMBEDDER, str(victim)],
        env=user_env(tmp_path / "cache"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(
            lambda: bool(_mapped_under(embedder.pid, victim)) or embedder.poll() is not None,
            timeout=30,
            what="the input to be memory-mapped",
        )
        mappers = _mapped_under(embedder.pid, victim)
        os.truncate(victim, 0)
        out, err = embedder.communicate(timeout=60)
    finally:
        if embedder.poll() is None:
            embedder.kill()
            embedder.wait()
    assert mappers, f"nothing mapped the input: {out!r} {err!r}"
    assert embedder.returncode == 0, (embedder.returncode, out, err)
    assert embedder.pid not in mappers  # the embedding process never maps an input
    assert b"InputChanged:" in out
    assert b"input.bin: file shrank from 34359738368 to 0 bytes" in out
    assert b"Traceback" not in err


# -- hostile TES servers -------------------------------------------------------

API = "/ga4gh/tes/v1"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HostileTes:
    """A real HTTP server on loopback whose task route runs ``handler``; counts requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests = 0
        self.url = ""

    async def _task(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        return await self.handler(request)


@pytest.fixture
async def hostile() -> AsyncIterator[Callable[[Handler], Awaitable[HostileTes]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> HostileTes:
        server = HostileTes(handler)
        app = web.Application()
        app.router.add_get(API + "/tasks/{id}", server._task)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        server.url = f"http://127.0.0.1:{port}{API}"
        return server

    set_testing(True)  # retries without waits
    try:
        yield start
    finally:
        set_testing(False)
        for runner in runners:
            await runner.cleanup()


async def _trickle(request: web.Request) -> web.StreamResponse:
    """A valid start of a task, then one byte every 50 ms, for ever."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    await resp.write(b'{"id": "x", "state": "RUNNING"')
    with contextlib.suppress(ConnectionError):
        while True:
            await asyncio.sleep(0.05)  # the attack's pace, not a wait for a race
            await resp.write(b" ")
    return resp


async def test_trickling_server_is_cut_off_by_the_request_deadline(hostile: Any) -> None:
    """One byte per 50 ms never trips ``read_timeout = 2``; the whole-exchange deadline does."""
    server = await hostile(_trickle)
    started = time.monotonic()
    async with TesClient(server.url, retries=1, read_timeout=2, request_deadline=0.5) as tes:
        with pytest.raises(TesUnavailable, match=r"within 0\.5 s \(request_deadline\)") as info:
            await tes.get_task("x")
    took = time.monotonic() - started
    assert server.requests == 2  # the deadline is a timeout: retried, then reported
    assert 1.0 <= took < 10, took
    assert "after 2 attempts" in str(info.value)
    assert isinstance(info.value, TesEngineError)


def _huge(announce: bool) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        """A task whose description never ends (300 MiB announced, or chunked for ever)."""
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        if announce:
            resp.content_length = 300 << 20
        await resp.prepare(request)
        await resp.write(b'{"id": "x", "state": "COMPLETE", "description": "')
        with contextlib.suppress(ConnectionError):
            for _ in range(300):
                await resp.write(b"A" * (1 << 20))
        return resp

    return handle


async def _gzip_bomb(request: web.Request) -> web.StreamResponse:
    """100 MiB of task description that travels as ~100 KiB of gzip."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(b'{"id": "x", "state": "COMPLETE", "description": "')]
    block = b"A" * (1 << 20)
    parts += [packer.compress(block) for _ in range(100)]
    parts.append(packer.compress(b'"}') + packer.flush())
    return web.Response(
        body=b"".join(parts),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )


async def test_compressed_reply_is_capped_by_its_inflated_size(hostile: Any) -> None:
    server = await hostile(_gzip_bomb)
    tracemalloc.start()
    try:
        async with TesClient(server.url, max_response_bytes=2 << 20) as tes:
            with pytest.raises(ResponseTooLarge, match="more than 2097152 bytes sent"):
                await tes.get_task("x", View.FULL)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert server.requests == 1
    assert peak < 16 << 20, peak


@pytest.mark.parametrize("announce", [True, False], ids=["content-length", "chunked"])
async def test_huge_reply_is_refused_and_memory_stays_flat(
    hostile: Any, tmp_path: Path, announce: bool
) -> None:
    server = await hostile(_huge(announce))
    backend = BackendConfig(
        type="tes",
        url=server.url,
        inputs=(tmp_path / "in").as_uri(),
        outputs=(tmp_path / "out").as_uri(),
        max_response_bytes=2 << 20,  # the configuration key reaches the client
    )
    tracemalloc.start()
    try:
        async with TesClient.from_config(Config(backend_name="h", backend=backend)) as tes:
            with pytest.raises(ResponseTooLarge, match="max_response_bytes = 2097152") as info:
                await tes.get_task("x", View.FULL)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert server.requests == 1  # too large stays too large: not retried
    assert peak < 16 << 20, peak  # a 300 MiB answer, never held
    assert isinstance(info.value, TesError)
    assert ("announced" in str(info.value)) is announce


def _task_with(prefix: str, output_url: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "id": request.match_info["id"],
                "state": "COMPLETE",
                "executors": [{"image": "alpine", "command": ["true"]}],
                "tags": {"tesengine-prefix": prefix},
                "outputs": [{"url": output_url, "path": "/out/x", "type": "FILE"}],
            }
        )

    return handle


@pytest.mark.parametrize(
    ("prefix", "output"),
    [
        ("file:///", "file://{secret}"),  # the report: a prefix at the root of the host
        ("{outputs}/t-1", "file://{secret}"),  # a genuine prefix, an output elsewhere
        ("{outputs}/t-1", "{outputs}/t-1/../../secret.bin"),  # dot segments out of it
        ("{outputs}/t-1", "memory://other/secret.bin"),  # another store entirely
    ],
    ids=["root-prefix", "output-elsewhere", "dot-dot", "other-store"],
)
async def test_attach_refuses_outputs_outside_the_outputs_prefix(
    hostile: Any, tmp_path: Path, prefix: str, output: str
) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"host file the server wants copied")
    outputs = (tmp_path / "outputs").as_uri()
    fill = {"secret": str(secret), "outputs": outputs}
    server = await hostile(_task_with(prefix.format(**fill), output.format(**fill)))
    cache = tmp_path / "cache"
    backend = BackendConfig(
        type="tes",
        url=server.url,
        inputs=(tmp_path / "in").as_uri(),
        outputs=outputs,
        cache_dir=cache,
    )
    async with TesBackend(Config(backend_name="h", backend=backend)) as engine:
        with pytest.raises(UnsafeReply, match="is not under this backend's outputs") as info:
            await engine.attach("t-1")  # the old client attached, then copied the file
        with pytest.raises(UnsafeReply):
            await engine.attach("t-1", outputs={"x": "/out/x"})
    assert "t-1" in str(info.value)
    copied = [p for p in cache.rglob("*") if p.is_file() and p.read_bytes() == secret.read_bytes()]
    assert copied == []


async def test_attach_keeps_outputs_under_the_prefix_and_takes_their_query_from_config(
    hostile: Any, tmp_path: Path
) -> None:
    outputs = (tmp_path / "outputs").as_uri()
    server = await hostile(_task_with(f"{outputs}/t-1", f"{outputs}/t-1/x?sig=from-the-server"))
    backend = BackendConfig(
        type="tes",
        url=server.url,
        inputs=(tmp_path / "in").as_uri(),
        outputs=outputs,
        cache_dir=tmp_path / "cache",
        interval=0.05,
    )
    async with TesBackend(Config(backend_name="h", backend=backend)) as engine:
        result = await (await engine.attach("t-1"))
    assert {name: out.url for name, out in result.outputs.items()} == {"x": f"{outputs}/t-1/x"}


AZ_OUT = "https://acct.blob.core.windows.net/c/out?sv=1&sig=from-config"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (  # the query (credentials) comes from the configuration, not the server
            "https://acct.blob.core.windows.net/c/out/t/x?sv=9&sig=other",
            "https://acct.blob.core.windows.net/c/out/t/x?sv=1&sig=from-config",
        ),
        ("az://c/out/t/x", None),  # another form, no account: not provably the same store
        ("https://evil.blob.core.windows.net/c/out/t/x", None),  # another account
        ("https://acct.blob.core.windows.net/c/out-evil/x", None),  # a sibling prefix
        ("https://acct.blob.core.windows.net/other/out/x", None),  # another container
        ("https://acct.blob.core.windows.net/c/out", None),  # the prefix itself
        ("https://acct.blob.core.windows.net/c/out/./x", None),
        ("not a url", None),
    ],
)
def test_outputs_prefix_check(url: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(UnsafeReply, match="sig=<redacted>"):
            _under_outputs(url, AZ_OUT, "t-1", "output x")
    else:
        assert _under_outputs(url, AZ_OUT, "t-1", "output x") == expected
