"""What the client adds to a :class:`~tesengine.tes.transport.Transport`.

:class:`Channel` bounds requests in flight, adds the ``Authorization``
header (only for the TES server's origin, never for another host a redirect
points at), asks the credentials to refresh once on a 401, follows
redirects itself, and retries transient failures (see :mod:`.retry`).

A hostile or broken server cannot hold a request: each exchange (connect,
send, headers and the whole body) must end within ``request_deadline``
seconds, whatever the socket timeouts allow, or it is retried as a timeout
(:class:`~.retry.DeadlineExceeded`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urljoin, urlsplit

from ..auth import AuthProvider, same_origin
from ..errors import AuthError, ConnectError, ProtocolError, TesApiError, redact_url
from .retry import (
    RETRY_STATUSES,
    DeadlineExceeded,
    RetryableStatus,
    RetryPolicy,
    describe_failure,
    is_retryable,
    parse_retry_after,
)
from .transport import DEFAULT_DEADLINE, Request, RequestCounts, Response, Transport

__all__ = ["Channel", "Reply", "may_have_reached_server"]

log = logging.getLogger("tesengine.tes")

_T = TypeVar("_T")
MAX_REDIRECTS = 5
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

    A connection never made sent nothing, and a 429 is an explicit refusal;
    anything else (reset after sending, read timeout, 5xx) may have created
    the task.
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


class Channel:
    """Sends requests to one TES server through a transport; see the module docstring."""

    def __init__(
        self,
        server_url: str,
        transport: Transport,
        *,
        auth: AuthProvider | None,
        max_concurrency: int,
        policy: RetryPolicy,
        request_deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        self.server_url = server_url
        self.transport = transport
        self.policy = policy
        self.request_deadline = request_deadline
        self._auth = auth
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._reached = False
        self._requests = 0
        self._retries = 0

    @property
    def counts(self) -> RequestCounts:
        """Requests sent and retries made so far."""
        return RequestCounts(self._requests, self._retries)

    async def call(self, method: str, url: str, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``attempt``, retrying retryable failures; TesUnavailable once they run out."""
        retrying = None
        while True:
            try:
                return await attempt()
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                if retrying is None:  # the common, successful call pays nothing for this
                    retrying = self.policy.retrying(method, url, reached=self._reached)
                log.debug("%s %s failed (%s)", method, redact_url(url), describe_failure(exc))
                await retrying.wait(exc)  # raises TesUnavailable once the retries are spent
                self._retries += 1

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
        request = Request(method, url, headers, body)
        deadline = asyncio.timeout(self.request_deadline)
        try:
            async with deadline:
                response = await self._send(request)
        except TimeoutError:
            if not deadline.expired():
                raise  # a socket timeout: retried as it is
            raise DeadlineExceeded(
                f"no complete answer within {self.request_deadline:g} s (request_deadline)"
            ) from None
        self._reached = True  # it answered: from now on a refusal is an outage, retried
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s -> %d", method, redact_url(url), response.status)
        return Reply(
            method,
            response.status,
            response.body,
            url,
            response.header("Retry-After"),
            response.header("Location"),
            response.header("Content-Type"),
        )

    async def _send(self, request: Request) -> Response:
        """The transport's answer, counting every request that went out."""
        try:
            response = await self.transport.send(request)
        except ConnectError:
            raise  # no connection was made: nothing went out
        except BaseException:
            self._requests += 1  # it went out (or may have) before it failed or was cut off
            raise
        self._requests += 1
        return response


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
