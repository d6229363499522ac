"""Property: whatever a broken server sends, the client raises only tesengine errors.

A real loopback socket server (asyncio streams, no HTTP library) writes a
response built by hypothesis: valid and garbage status lines, odd and huge
headers, redirects to nowhere valid, JSON cut short or nested past the
recursion limit, broken chunked and gzip bodies, and then closes or resets
the connection. Every public method of :class:`TesClient` is driven against
it; anything but a :class:`TesEngineError` coming out is a failure.

Bounded (a fixed number of derandomised examples) so it runs in seconds.
No request may leave loopback: a redirect can name any host, so the
client's session refuses, before connecting, every URL whose host is not
127.0.0.1 (and that refusal would fail the test: it is not a tesengine error).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tesengine.auth import BearerToken
from tesengine.errors import (
    ConnectError,
    ConnectionLost,
    ExchangeTimeout,
    ProtocolError,
    TesApiError,
    TesEngineError,
    TesUnavailable,
    TransportError,
)
from tesengine.tes import Executor, TesClient, TesTask, View
from tesengine.tes.aiohttp_transport import translate_fault
from tesengine.tes.retry import set_testing

API = "/ga4gh/tes/v1"
_NO_CRLF = st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"])


@dataclass(frozen=True)
class Script:
    """One broken reply: the bytes written, and how the connection ends."""

    head: bytes
    body: bytes
    ending: str  # "close" or "reset"


def _status_lines() -> st.SearchStrategy[bytes]:
    codes = st.sampled_from(
        [200, 201, 204, 301, 302, 303, 307, 308, 400, 401, 403, 404, 429, 500, 503, 99, 999]
    )
    valid = st.builds(
        lambda c, r: f"HTTP/1.1 {c} {r}".encode(), codes, st.text(_NO_CRLF, max_size=8)
    )
    garbage = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
    return st.one_of(valid, valid, garbage)


# Where a redirect may point: never a host other than loopback (see the module docstring).
_LOCATIONS = st.one_of(
    st.sampled_from(
        [
            "http://[bad",
            "http://[::1",
            "http://127.0.0.1:notaport/x",
            "http://127.0.0.1:99999/x",
            "ftp://127.0.0.1/x",
            "file:///etc/passwd",
            "http://user:secret@127.0.0.1:1/x",
            "http://",
            "",
            "/ga4gh/tes/v1/tasks/x",
            "?page_token=2",
            "\x00",
            "%zz",
        ]
    ),
    st.text(
        st.characters(blacklist_characters="\r\n/\\:", blacklist_categories=["Cs"]), max_size=30
    ),
)

_HEADER_VALUES: dict[str, st.SearchStrategy[str]] = {
    "Content-Type": st.sampled_from(["application/json", "text/html", "", "json; charset=x"]),
    "Content-Length": st.one_of(st.integers(-5, 400).map(str), st.sampled_from(["x", "1e3", ""])),
    "Transfer-Encoding": st.sampled_from(["chunked", "gzip", "chunked, chunked", "bogus"]),
    "Content-Encoding": st.sampled_from(["gzip", "deflate", "br", "zstd", "bogus"]),
    "Retry-After": st.one_of(
        st.sampled_from(["0", "²", "-1", "Mon, 01 Jan 99999"]), st.text(_NO_CRLF, max_size=12)
    ),
    "Location": _LOCATIONS,
    "X-Junk": st.text(_NO_CRLF, max_size=20),
}


def _headers() -> st.SearchStrategy[bytes]:
    one = st.sampled_from(sorted(_HEADER_VALUES)).flatmap(
        lambda name: _HEADER_VALUES[name].map(lambda value: f"{name}: {value}".encode())
    )
    huge = st.sampled_from([9000, 70000]).map(lambda n: b"X-Huge: " + b"a" * n)
    odd = st.sampled_from([b"no colon here", b": empty name", b" folded: line", b"\x00: nul"])
    return st.lists(st.one_of(one, one, one, huge, odd), max_size=5).map(b"\r\n".join)


_DOCUMENTS = [
    b'{"id": "x", "state": "RUNNING"}',
    b'{"tasks": [{"id": "x", "state": "QUEUED"}], "next_page_token": "t"}',
    b'{"tasks": [{"id": "x"}]}',
    b'{"name": "tes", "storage": []}',
    b'{"error": "broken"}',
    b'{"tasks": [[]], "next_page_token": 3}',
    b'{"tasks": "no"}',
    b"[" * 5000,
    b'{"error": ' + b"[" * 5000,
    b"\xff\xfe not utf-8",
    b"\x1f\x8b\x08\x00 not really gzip",
]


def _bodies() -> st.SearchStrategy[bytes]:
    cut = st.sampled_from(_DOCUMENTS).flatmap(
        lambda doc: st.integers(0, len(doc)).map(lambda n: doc[:n])
    )
    chunks = st.lists(
        st.sampled_from(
            [b"5\r\nhello\r\n", b"10\r\nabc", b"zz\r\n", b"0\r\n\r\n", b"\r\n", b"-1\r\n"]
        ),
        max_size=4,
    ).map(b"".join)
    return st.one_of(st.sampled_from(_DOCUMENTS), cut, chunks, st.binary(max_size=100))


_SCRIPTS = st.builds(
    lambda status, headers, body, ending: Script(
        status + b"\r\n" + headers + (b"\r\n" if headers else b"") + b"\r\n", body, ending
    ),
    _status_lines(),
    _headers(),
    _bodies(),
    st.sampled_from(["close", "reset"]),
)

Call = Callable[[TesClient], Awaitable[Any]]


async def _all_tasks(tes: TesClient) -> list[TesTask]:
    return [t async for t in tes.iter_tasks(tags={"a": "b"})]


_CALLS: dict[str, Call] = {
    "service_info": lambda tes: tes.service_info(),
    "get_task": lambda tes: tes.get_task("x"),
    "get_task FULL": lambda tes: tes.get_task("x", View.FULL),
    "list_tasks": lambda tes: tes.list_tasks(tags={"a": "b"}, page_size=5),
    "list_states": lambda tes: tes.list_states(),
    "iter_tasks": _all_tasks,
    "create_task": lambda tes: tes.create_task(
        TesTask(executors=[Executor(image="alpine", command=["true"])])
    ),
    "cancel_task": lambda tes: tes.cancel_task("x"),
}


async def _serve(script: Script, stream: asyncio.StreamReader, out: asyncio.StreamWriter) -> None:
    with contextlib.suppress(
        ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError
    ):
        await stream.readuntil(b"\r\n\r\n")
    try:
        out.write(script.head + script.body)
        with contextlib.suppress(ConnectionError):
            await out.drain()
    finally:
        if script.ending == "reset":
            sock = out.get_extra_info("socket")
            if sock is not None:  # SO_LINGER 0: close sends RST
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        out.close()


async def _only_loopback(
    _session: aiohttp.ClientSession, _context: SimpleNamespace, params: Any
) -> None:
    if params.url.host != "127.0.0.1":
        raise AssertionError(f"the client tried to leave loopback: {params.url}")


async def _fresh_token() -> str:
    return uuid.uuid4().hex  # always new: a 401 is always worth one more try


async def _drive(
    script: Script, call: str, discover: bool, auth: bool = False
) -> TesEngineError | None:
    server = await asyncio.start_server(lambda r, w: _serve(script, r, w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(_only_loopback)
    root = f"http://127.0.0.1:{port}"
    try:
        async with (
            # raise_for_status: a caller's session setting must not change what comes out
            aiohttp.ClientSession(trace_configs=[trace], raise_for_status=True) as session,
            TesClient(
                root if discover else root + API,
                auth=BearerToken(source=_fresh_token) if auth else None,
                session=session,
                retries=1,
                connect_timeout=2,
                read_timeout=2,
                request_deadline=3,
            ) as tes,
            asyncio.timeout(20),
        ):
            try:
                await _CALLS[call](tes)
            except TesEngineError as exc:
                return exc  # the promise: only errors of the tree come out
    finally:
        server.close()
        await server.wait_closed()
    return None


@settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(script=_SCRIPTS, call=st.sampled_from(sorted(_CALLS)), discover=st.booleans())
def test_broken_replies_raise_only_tesengine_errors(
    script: Script, call: str, discover: bool
) -> None:
    set_testing(True)  # retries without waits
    try:
        asyncio.run(_drive(script, call, discover))
    finally:
        set_testing(False)


def test_known_escapes_are_translated() -> None:
    """The two escapes reported in the issue, and three more the property found."""
    cases: list[tuple[bytes, type[TesEngineError], str]] = [
        # aiohttp.ClientResponseError before
        (b"HTTP/1.1 abc\r\n\r\n", ProtocolError, "not a valid HTTP reply: Bad status line"),
        # a bare ValueError from urljoin before
        (
            b"HTTP/1.1 302 Found\r\nLocation: http://[bad\r\nContent-Length: 0\r\n\r\n",
            ProtocolError,
            "redirect to an invalid Location 'http://[bad'",
        ),
        # a header over aiohttp's line limit: aiohttp.ClientResponseError before
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 9000 + b"\r\n\r\n", ProtocolError, "8190 bytes"),
        # RecursionError from json.loads of the error body before
        (
            b"HTTP/1.1 400 Bad\r\nContent-Length: 5000\r\n\r\n" + b"[" * 5000,
            TesApiError,
            "HTTP 400: [[[[",
        ),
        # float("²") (a unicode digit in Retry-After) before
        (
            b"HTTP/1.1 503 Busy\r\nRetry-After: \xc2\xb2\r\nContent-Length: 0\r\n\r\n",
            TesUnavailable,
            "after 2 attempts: HTTP 503",
        ),
    ]
    set_testing(True)
    try:
        for raw, kind, message in cases:
            head, _, body = raw.partition(b"\r\n\r\n")
            script = Script(head + b"\r\n\r\n", body, "close")
            error = asyncio.run(_drive(script, "get_task", False))
            assert isinstance(error, kind), (raw[:60], error)
            assert message in str(error), (raw[:60], str(error))
    finally:
        set_testing(False)


def test_each_aiohttp_fault_has_its_kind() -> None:
    """The table behind the property, kind by kind (the property rarely hits connect errors)."""
    key = aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 9, False, True, None, None, None)
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))
    unroutable = aiohttp.ClientConnectorError(key, OSError(113, "no route to host"))
    cases: list[tuple[BaseException, type[TransportError], str]] = [
        (refused, ConnectError, "connection refused"),
        (unroutable, ConnectError, "cannot connect: [Errno 113] no route to host"),
        (aiohttp.ConnectionTimeoutError(), ConnectError, "timed out connecting"),
        (aiohttp.SocketTimeoutError(), ExchangeTimeout, "timed out"),
        (aiohttp.ServerDisconnectedError(), ConnectionLost, "the server closed the connection"),
        (aiohttp.ClientPayloadError("x"), ConnectionLost, "the reply was cut short"),
        (ConnectionResetError(104, "reset"), ConnectionLost, "the connection failed: [Errno 104]"),
        (aiohttp.InvalidURL("http://[x"), ProtocolError, "GET http://h/a: not a valid HTTP reply"),
        (ValueError("odd\nsecond line"), ProtocolError, "not a valid HTTP reply: odd"),
    ]
    for fault, kind, message in cases:
        error = translate_fault("GET", "http://h/a", fault)
        assert type(error) is kind, (fault, error)
        assert message in str(error), (fault, str(error))
    for fault, unreachable in ((refused, True), (unroutable, False)):
        error = translate_fault("GET", "http://h", fault)
        assert isinstance(error, ConnectError) and error.unreachable is unreachable
