"""One HTTP exchange with the TES server, and the retry loop around it.

:class:`Transport` owns the shared ``aiohttp.ClientSession`` (a connection
pool sized to the concurrency limit), the semaphore that bounds requests in
flight, redirects and the ``Authorization`` header. aiohttp's own redirect
handling is off: each hop is followed here so that the header goes only to
the TES server's origin, never to another host a redirect points at.

A hostile or broken server cannot hold a request or the client's memory:
each exchange (connect, send, headers and the whole body) must end within
``request_deadline`` seconds, whatever the socket timeouts allow, or it is
retried as a timeout (:class:`~.retry.DeadlineExceeded`); a body larger than
``max_response_bytes`` is refused with
:class:`~tesengine.errors.ResponseTooLarge` as soon as it is known to be
(by its ``Content-Length``, else while it is read), and not retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

from ..auth import AuthProvider, same_origin
from ..errors import (
    AuthError,
    ConnectError,
    ConnectionLost,
    ExchangeTimeout,
    ProtocolError,
    ResponseTooLarge,
    TesApiError,
    TransportError,
    redact_url,
)
from .retry import (
    RETRY_STATUSES,
    DeadlineExceeded,
    RetryableStatus,
    RetryPolicy,
    describe_failure,
    is_retryable,
    parse_retry_after,
)

__all__ = ["Reply", "Transport", "may_have_reached_server"]

log = logging.getLogger("tesengine.tes")

_T = TypeVar("_T")
MAX_REDIRECTS = 5
#: Defaults of the backend keys ``request_deadline`` and ``max_response_bytes``.
DEFAULT_DEADLINE = 300.0
DEFAULT_MAX_RESPONSE = 64 << 20
_CHUNK = 64 << 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_JSON_HEADERS = {"Accept": "application/json"}
_POST_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}


@dataclass(frozen=True, slots=True)
class Reply:
    """A final (non-redirect) answer from the server."""

    method: str
    status: int
    body: bytes
    url: str
    retry_after: str | None = None
    location: str | None = None
    content_type: str | None = None


def may_have_reached_server(exc: BaseException) -> bool:
    """True when a failed POST may still have been acted on by the server.

    A refused connection or a connect timeout sent nothing, and a 429 is an
    explicit refusal; anything else (reset after sending, read timeout, 5xx)
    may have created the task.
    """
    if isinstance(exc, RetryableStatus):
        return exc.status != 429
    return not isinstance(exc, ConnectError)


def server_message(body: bytes) -> str:
    """The server's error text: ``{"error": ...}`` (Funnel), ``message``/``detail``, or the body."""
    text = body.decode("utf-8", errors="replace")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the limit
        return text
    if isinstance(doc, dict):
        for key in ("error", "message", "detail", "msg"):
            if doc.get(key):
                value = doc[key]
                return value if isinstance(value, str) else json.dumps(value)
    return text


class Transport:
    """Sends requests to one TES server; see the module docstring."""

    def __init__(
        self,
        server_url: str,
        *,
        auth: AuthProvider | None,
        max_concurrency: int,
        policy: RetryPolicy,
        connect_timeout: float,
        read_timeout: float,
        request_deadline: float = DEFAULT_DEADLINE,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.server_url = server_url
        self.policy = policy
        self.request_deadline = request_deadline
        self.max_response_bytes = max_response_bytes
        self._auth = auth
        self._max_concurrency = max_concurrency
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._session = session
        self._owns_session = session is None
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._reached = False

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_concurrency,
                limit_per_host=self._max_concurrency,
                ttl_dns_cache=300,
                keepalive_timeout=30,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, raise_for_status=False
            )
        return self._session

    async def aclose(self) -> None:
        """Close the session if this transport created it."""
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    async def call(self, method: str, url: str, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``attempt``, retrying retryable failures; TesUnavailable once they run out."""
        try:
            return await attempt()
        except Exception as exc:
            if not is_retryable(exc):
                raise
            pending: Exception | None = exc
            log.debug("%s %s failed (%s); retrying", method, redact_url(url), describe_failure(exc))
        attempts = self.policy.attempts(method, url, reached=self._reached)
        try:
            async for retry in attempts:
                with retry:
                    if pending is not None:
                        replay, pending = pending, None
                        raise replay
                    return await attempt()
        except Exception as exc:
            if not is_retryable(exc):
                raise
            raise attempts.give_up(exc) from exc
        raise AssertionError("unreachable: the retry loop returns or raises")

    async def request(self, method: str, url: str, body: bytes | None = None) -> Reply:
        """One exchange with retries: a 2xx reply, or an error from the tesengine tree."""
        return await self.call(method, url, lambda: self.send_once(method, url, body))

    async def send_once(self, method: str, url: str, body: bytes | None = None) -> Reply:
        """One exchange without retries; retryable statuses raise RetryableStatus."""
        async with self._semaphore:
            reply = await self._authorised(method, url, body)
        return _check(method, reply)

    async def _authorised(self, method: str, url: str, body: bytes | None) -> Reply:
        used = await self._header_for(url)
        reply = await self._follow(method, url, body)
        if reply.status != 401 or self._auth is None:
            return reply
        # Someone else may have refreshed already; else ask the provider once.
        if await self._header_for(url) == used and not await self._auth.refresh():
            raise _auth_error(method, reply, "and there are no new credentials to try")
        reply = await self._follow(method, url, body)
        if reply.status == 401:
            raise _auth_error(method, reply, "again after the credentials were refreshed")
        return reply

    async def _header_for(self, url: str) -> str | None:
        if self._auth is None or not same_origin(url, self.server_url):
            return None
        return await self._auth.header()

    async def _follow(self, method: str, url: str, body: bytes | None) -> Reply:
        for _ in range(MAX_REDIRECTS + 1):
            reply = await self._exchange(method, url, body)
            if reply.status not in _REDIRECTS or not reply.location:
                return reply
            url = _redirect_target(method, url, reply.location)
            if reply.status == 303 or (reply.status in (301, 302) and method != "GET"):
                method, body = "GET", None
            log.debug("redirected to %s", redact_url(url))
        raise TesApiError(method, url, reply.status, f"more than {MAX_REDIRECTS} redirects")

    async def _exchange(self, method: str, url: str, body: bytes | None) -> Reply:
        headers = _POST_HEADERS if body is not None else _JSON_HEADERS
        auth = await self._header_for(url)
        if auth is not None:
            headers = {**headers, "Authorization": auth}
        deadline = asyncio.timeout(self.request_deadline)
        try:
            async with deadline:
                reply = await self._send(method, url, body, headers)
        except TimeoutError:
            if not deadline.expired():
                raise  # a socket timeout: retried as it is
            raise DeadlineExceeded(
                f"no complete answer within {self.request_deadline:g} s (request_deadline)"
            ) from None
        self._reached = True  # it answered: from now on a refusal is an outage, retried
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s -> %d", method, redact_url(url), reply.status)
        return reply

    async def _send(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Reply:
        session = self._get_session()
        try:
            # timeout per request: a session passed in by the caller keeps its own default
            async with session.request(
                method,
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout,
            ) as resp:
                try:
                    data = await self._read_capped(method, url, resp)
                except BaseException:
                    resp.close()  # never hand a half-read connection back to the pool
                    raise
                return Reply(
                    method,
                    resp.status,
                    data,
                    url,
                    resp.headers.get("Retry-After"),
                    resp.headers.get("Location"),
                    resp.headers.get("Content-Type"),
                )
        except _AIOHTTP_FAULTS as exc:
            raise translate_fault(method, url, exc) from exc

    async def _read_capped(self, method: str, url: str, resp: aiohttp.ClientResponse) -> bytes:
        """The whole body, or :class:`ResponseTooLarge` once it passes the cap."""
        cap = self.max_response_bytes
        if resp.content_length is not None and resp.content_length > cap:
            raise self._too_large(method, url, f"{resp.content_length} bytes announced")
        if resp.content_length is not None and "Content-Encoding" not in resp.headers:
            return await resp.read()  # no more than announced: one buffer, no copy
        # Chunked, or compressed (a small gzip body can inflate to gigabytes): count.
        data = bytearray()
        async for chunk in resp.content.iter_chunked(_CHUNK):
            data += chunk
            if len(data) > cap:
                raise self._too_large(method, url, f"more than {cap} bytes sent")
        return bytes(data)

    def _too_large(self, method: str, url: str, what: str) -> ResponseTooLarge:
        return ResponseTooLarge(
            f"{method} {redact_url(url)}: the TES server's answer is too large ({what};"
            f" max_response_bytes = {self.max_response_bytes}): refused"
        )


#: What aiohttp (and the socket under it) raises for a fault of the network or the reply.
_AIOHTTP_FAULTS = (aiohttp.ClientError, HttpProcessingError, OSError, ValueError)


def translate_fault(method: str, url: str, exc: BaseException) -> TransportError:
    """The tesengine error for an aiohttp or socket failure of one exchange."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _connect_error(exc)
    for kind, make in _FAULTS:
        if isinstance(exc, kind):
            return make(exc)
    what = exc.message if isinstance(exc, aiohttp.ClientResponseError) else _first_line(exc)
    return ProtocolError(f"{method} {redact_url(url)}: not a valid HTTP reply: {what}")


def _connect_error(exc: aiohttp.ClientConnectorError) -> ConnectError:
    if isinstance(exc, _DNS_ERRORS):
        return ConnectError(f"cannot resolve host {exc.host!r}", unreachable=True)
    if isinstance(exc.os_error, ConnectionRefusedError):
        return ConnectError("connection refused", unreachable=True)
    return ConnectError(f"cannot connect: {exc.os_error}")


_Kinds = type[BaseException] | tuple[type[BaseException], ...]
#: Faults after connecting, most specific first; anything else is a ProtocolError.
_FAULTS: tuple[tuple[_Kinds, Callable[[BaseException], TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, lambda _: ConnectError("timed out connecting")),
    (TimeoutError, lambda _: ExchangeTimeout("timed out")),
    (aiohttp.ServerDisconnectedError, lambda _: ConnectionLost("the server closed the connection")),
    (aiohttp.ClientPayloadError, lambda _: ConnectionLost("the reply was cut short")),
    (
        (aiohttp.ClientConnectionError, OSError),
        lambda exc: ConnectionLost(f"the connection failed: {_first_line(exc)}"),
    ),
)


#: aiohttp >= 3.11 tells a name that does not resolve apart from other connect errors.
_DNS_ERRORS: tuple[type[BaseException], ...] = tuple(
    kind for kind in (getattr(aiohttp, "ClientConnectorDNSError", None),) if kind is not None
)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _redirect_target(method: str, url: str, location: str) -> str:
    try:
        target = urljoin(url, location)
        parts = urlsplit(target)
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        raise ProtocolError(
            f"{method} {redact_url(url)}: redirect to an invalid Location"
            f" {redact_url(location)[:200]!r}"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProtocolError(
            f"{method} {redact_url(url)}: redirect to {redact_url(target)[:200]!r},"
            " which is not an http(s) URL"
        )
    return target


def _check(method: str, reply: Reply) -> Reply:
    status = reply.status
    if status < 300:
        return reply
    if status in RETRY_STATUSES:
        wait = parse_retry_after(reply.retry_after)
        raise RetryableStatus(status, server_message(reply.body), wait)
    if status == 401:
        raise _auth_error(method, reply, "and no credentials are configured")
    if status == 403:
        raise _auth_error(method, reply, "(forbidden)")
    raise TesApiError(method, reply.url, status, server_message(reply.body))


def _auth_error(method: str, reply: Reply, why: str) -> AuthError:
    message = server_message(reply.body)
    return AuthError(
        f"{method} {redact_url(reply.url)} -> HTTP {reply.status} {why}: {message[:300]}"
    )
