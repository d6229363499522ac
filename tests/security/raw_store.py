"""A hostile S3 endpoint on raw TCP (127.0.0.1, an ephemeral port), for the storage boundary.

:class:`HostileS3` answers path-style ``HEAD``/``GET``/``PUT`` of objects and
``list-objects-v2`` (XML) like a small honest S3, until its :class:`Script`
tells it to misbehave: listings with keys from outside the asked prefix or
out of order, a listing that never ends, raw listing bodies (huge or
malformed XML), a lying ``Content-Length``, requests that hang, bursts or
storms of 5xx, redirects to another host, error bodies that echo the
request's headers. It runs its own event loop in a thread, so it keeps
answering (or hanging) whatever the test's loop does, and it records every
request it received.

HTTP is parsed by hand (one request per connection, ``Connection: close``):
what a hostile server sends must not depend on a well-behaved HTTP library.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from xml.sax.saxutils import escape

__all__ = ["REGION", "HostileS3", "Request", "Script"]

REGION = "us-east-1"
_PAGE = 1000
_LAST_MODIFIED = "2024-01-01T00:00:00.000Z"
_ERROR = b"<?xml version='1.0'?>\n<Error><Code>%s</Code><Message>%s</Message></Error>"


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the server read it (path decoded, headers lower-cased)."""

    method: str
    key: str  # the object key, "" for the bucket (a listing)
    query: dict[str, str]
    headers: dict[str, str]

    @property
    def is_list(self) -> bool:
        return self.method == "GET" and self.query.get("list-type") == "2"


@dataclass
class Script:
    """What the server does wrong; the default is an honest S3.

    Every field may be changed while the server runs (reads are per request).
    """

    #: Keys (with sizes) every listing shows, whatever prefix it asked for.
    listed_extra: dict[str, int] = field(default_factory=dict)
    #: List pages in reverse key order.
    reverse: bool = False
    #: Every listing page says ``IsTruncated`` with a fresh continuation token.
    endless: bool = False
    #: The raw body of every listing answer (``200``), instead of the real XML.
    list_body: bytes | None = None
    #: The ``Content-Length`` a HEAD of a present object claims.
    head_length: str | None = None
    #: A GET of a present object claims this many more bytes than it sends.
    short_body: int = 0
    #: Methods (``HEAD``, ``GET``, ``PUT``, ``LIST``) whose requests are never answered.
    hang: frozenset[str] = frozenset()
    #: Methods answered with ``fail_status`` (the next ``fail_times`` of them; None: all).
    fail: frozenset[str] = frozenset()
    fail_status: int = 503
    fail_times: int | None = None
    #: Error answers quote the request's headers back (a reflecting server).
    echo_headers: bool = False
    #: Every request is redirected (307) to this origin, same path and query.
    redirect_to: str | None = None


class HostileS3:
    """An S3 endpoint for one bucket, misbehaving as :attr:`script` says.

    ``with HostileS3("bucket") as s3:`` starts it on 127.0.0.1 and stops it
    (releasing every hanging request) on exit.
    """

    def __init__(self, bucket: str, script: Script | None = None) -> None:
        self.bucket = bucket
        self.script = script or Script()
        self.objects: dict[str, bytes] = {}
        self.requests: list[Request] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="hostile-s3", daemon=True)
        self._lock = threading.Lock()
        self._open: set[asyncio.Task[None]] = set()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, key: str = "") -> str:
        """The ``s3://`` URL of ``key`` in this server's bucket."""
        return f"s3://{self.bucket}/{key}".rstrip("/")

    def seen(self, method: str, key: str | None = None) -> list[Request]:
        """Requests received with ``method`` (``LIST`` for listings), for ``key`` if given."""
        with self._lock:
            got = list(self.requests)
        kind = [r for r in got if (r.is_list if method == "LIST" else r.method == method)]
        if method != "LIST":
            kind = [r for r in kind if not r.is_list]
        return [r for r in kind if key is None or r.key == key]

    def __enter__(self) -> HostileS3:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the hostile S3 server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        stopping = self._stopping
        if stopping is not None:
            self._loop.call_soon_threadsafe(stopping.set)
        self._thread.join(10)

    # -- the server thread ---------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stopping.wait()
        # the connections still open are the hanging ones: they end on ``_stopping``
        await asyncio.gather(*self._open, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._open.add(task)
        task.add_done_callback(self._open.discard)
        try:
            request, body = await _read_request(reader, self.bucket)
            with self._lock:
                self.requests.append(request)
            answer = await self._answer(request, body)
            if answer is not None:
                writer.write(answer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # a client that went away, or sent what this server does not parse
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, req: Request, body: bytes) -> bytes | None:
        script = self.script
        kind = "LIST" if req.is_list else req.method
        if kind in script.hang:
            assert self._stopping is not None
            await self._stopping.wait()  # never answered while the server runs
            return None
        if script.redirect_to is not None:
            path = f"/{self.bucket}/{quote(req.key)}" + _query(req.query)
            return _response(307, {"Location": script.redirect_to + path})
        if kind in script.fail and self._take_failure():
            message = repr(req.headers).encode() if script.echo_headers else b"try again"
            status = script.fail_status
            return _response(status, {}, _ERROR % (b"SlowDown", _escape_bytes(message)))
        if req.is_list:
            return self._list(req)
        if req.method == "PUT":
            return self._put(req, body)
        if req.method in ("HEAD", "GET"):
            return self._read(req)
        return _response(405, {}, _ERROR % (b"MethodNotAllowed", req.method.encode()))

    def _take_failure(self) -> bool:
        with self._lock:
            left = self.script.fail_times
            if left is None:
                return True
            if left <= 0:
                return False
            self.script.fail_times = left - 1
            return True

    def _read(self, req: Request) -> bytes:
        data = self.objects.get(req.key)
        if data is None:
            body = b"" if req.method == "HEAD" else _ERROR % (b"NoSuchKey", req.key.encode())
            return _response(404, {}, body, length=None if req.method == "GET" else "0")
        headers = {"ETag": f'"{len(data)}"', "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"}
        if req.method == "HEAD":
            return _response(200, headers, length=self.script.head_length or str(len(data)))
        claimed = str(len(data) + self.script.short_body)
        return _response(200, headers, data, length=claimed)

    def _put(self, req: Request, body: bytes) -> bytes:
        with self._lock:
            if req.headers.get("if-none-match") == "*" and req.key in self.objects:
                return _response(412, {}, _ERROR % (b"PreconditionFailed", req.key.encode()))
            self.objects[req.key] = body
        return _response(200, {"ETag": f'"{len(body)}"'})

    def _list(self, req: Request) -> bytes:
        script = self.script
        if script.list_body is not None:
            return _response(200, {"Content-Type": "application/xml"}, script.list_body)
        prefix = req.query.get("prefix", "")
        if script.endless:
            return _response(200, {"Content-Type": "application/xml"}, _endless(req, prefix))
        after = req.query.get("continuation-token") or req.query.get("start-after", "")
        with self._lock:
            keys = sorted(
                (k, len(v)) for k, v in self.objects.items() if k.startswith(prefix) and k > after
            )
        page = sorted([*keys[:_PAGE], *script.listed_extra.items()])[:_PAGE]
        truncated = len(keys) > _PAGE
        token = page[-1][0] if page else after
        if script.reverse:
            page.reverse()
        return _response(200, {"Content-Type": "application/xml"}, _listing(page, truncated, token))


def _escape_bytes(data: bytes) -> bytes:
    """``data`` made safe as XML text."""
    return escape(data.decode("utf-8", "replace")).encode()


async def _read_request(reader: asyncio.StreamReader, bucket: str) -> tuple[Request, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    elif headers.get("content-length"):
        body = await reader.readexactly(int(headers["content-length"]))
    parts = urlsplit(target)
    path = unquote(parts.path).lstrip("/")
    key = path[len(bucket) + 1 :] if path.startswith(f"{bucket}/") else ""
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return Request(method, key, query, headers), body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while size := int((await reader.readline()).split(b";")[0].strip() or b"0", 16):
        body += await reader.readexactly(size)
        await reader.readline()
    await reader.readline()  # the blank line after the last chunk
    return body


def _response(
    status: int, headers: dict[str, str], body: bytes = b"", *, length: str | None = None
) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Whatever')}"]
    all_headers = {"Content-Length": length or str(len(body)), "Connection": "close", **headers}
    lines += [f"{k}: {v}" for k, v in all_headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


_REASONS = {200: "OK", 307: "Temporary Redirect", 404: "Not Found", 405: "Method Not Allowed",
            412: "Precondition Failed", 500: "Internal Server Error",
            503: "Service Unavailable"}  # fmt: skip


def _query(query: dict[str, str]) -> str:
    return "?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items()) if query else ""


def _endless(req: Request, prefix: str) -> bytes:
    """A full page of new keys past the last, in order, and a token for more: forever."""
    token = req.query.get("continuation-token")
    if token:
        count, base = token.split(":", 1)
        n = int(count)
    else:
        n, base = 0, req.query.get("start-after") or prefix
    page = [(f"{base}{n:08d}{i:04d}", 1) for i in range(_PAGE)]
    return _listing(page, True, f"{n + 1}:{base}")


def _listing(page: list[tuple[str, int]], truncated: bool, token: str) -> bytes:
    contents = "".join(
        f"<Contents><Key>{escape(key)}</Key><LastModified>{_LAST_MODIFIED}</LastModified>"
        f'<ETag>"{size}"</ETag><Size>{size}</Size><StorageClass>STANDARD</StorageClass></Contents>'
        for key, size in page
    )
    more = f"<NextContinuationToken>{escape(token)}</NextContinuationToken>" if truncated else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<KeyCount>{len(page)}</KeyCount><MaxKeys>{_PAGE}</MaxKeys>"
        f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{more}{contents}"
        "</ListBucketResult>"
    ).encode()
