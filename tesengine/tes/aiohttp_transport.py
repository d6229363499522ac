"""The client's default :class:`~tesengine.tes.transport.Transport`, over aiohttp.

It owns an ``aiohttp.ClientSession`` (a connection pool sized to the
client's concurrency limit) unless it is given one, which it then leaves
open. aiohttp's redirect handling is off: the client follows each hop
itself, so that credentials go only to the TES server's origin.

A reply larger than ``max_response_bytes`` is refused with
:class:`~tesengine.errors.ResponseTooLarge` as soon as it is known to be
(by its ``Content-Length``, else while it is read, counting inflated bytes
of a compressed body), and its connection is not reused.

Every aiohttp, parser or socket exception is translated here into the
:class:`~tesengine.errors.TransportError` family (``raise ... from exc``):
nothing of aiohttp's leaves this module.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import (
    ConnectError,
    ConnectionLost,
    ExchangeTimeout,
    ProtocolError,
    ResponseTooLarge,
    TransportError,
    redact_url,
)
from .transport import DEFAULT_MAX_RESPONSE, Request, Response

__all__ = ["AiohttpTransport", "translate_fault"]

_CHUNK = 64 << 10


class AiohttpTransport:
    """Sends requests with aiohttp; see the module docstring."""

    def __init__(
        self,
        *,
        max_concurrency: int = 256,
        connect_timeout: float = 10,
        read_timeout: float = 60,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.max_response_bytes = max_response_bytes
        self._max_concurrency = max_concurrency
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._session = session
        self._owns_session = session is None

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

    async def send(self, request: Request) -> Response:
        """One exchange: the response whatever its status, or a TransportError."""
        session = self._get_session()
        try:
            # per request: a session passed in by the caller keeps its own defaults
            async with session.request(
                request.method,
                request.url,
                data=request.body,
                headers=request.headers,
                allow_redirects=False,
                raise_for_status=False,  # every status is the client's to judge
                timeout=self._timeout,
            ) as resp:
                try:
                    body = await self._read_capped(request, resp)
                except BaseException:
                    resp.close()  # never hand a half-read connection back to the pool
                    raise
                return Response(resp.status, resp.headers, body)
        except _AIOHTTP_FAULTS as exc:
            raise translate_fault(request.method, request.url, exc) from exc

    async def _read_capped(self, request: Request, resp: aiohttp.ClientResponse) -> bytes:
        """The whole body, or :class:`ResponseTooLarge` once it passes the cap."""
        cap = self.max_response_bytes
        if resp.content_length is not None and resp.content_length > cap:
            raise self._too_large(request, f"{resp.content_length} bytes announced")
        if resp.content_length is not None and "Content-Encoding" not in resp.headers:
            return await resp.read()  # no more than announced: one buffer, no copy
        # Chunked, or compressed (a small gzip body can inflate to gigabytes): count.
        data = bytearray()
        async for chunk in resp.content.iter_chunked(_CHUNK):
            data += chunk
            if len(data) > cap:
                raise self._too_large(request, f"more than {cap} bytes sent")
        return bytes(data)

    def _too_large(self, request: Request, what: str) -> ResponseTooLarge:
        return ResponseTooLarge(
            f"{request.method} {redact_url(request.url)}: the TES server's answer is too large"
            f" ({what}; max_response_bytes = {self.max_response_bytes}): refused"
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


#: aiohttp >= 3.11 tells a name that does not resolve apart from other connect errors.
_DNS_ERRORS: tuple[type[BaseException], ...] = tuple(
    kind for kind in (getattr(aiohttp, "ClientConnectorDNSError", None),) if kind is not None
)


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
