"""The seam between the TES client and HTTP: one request in, one response out.

A :class:`Transport` sends one :class:`Request` and returns its
:class:`Response`, whatever the status; it follows no redirects, adds no
credentials and retries nothing (the client does all three, the same way
for every transport). Network and HTTP faults are raised as the
:class:`~tesengine.errors.TransportError` family, never as a library's own
exceptions::

    TransportError
    ├── ConnectError       nothing was sent (refused, unresolvable, connect timeout)
    ├── ConnectionLost     reset or closed after sending, or the reply cut short
    ├── ExchangeTimeout    no complete answer in time
    └── ProtocolError      the reply is not valid HTTP

The client uses :class:`~tesengine.tes.aiohttp_transport.AiohttpTransport`
unless it is given another; :class:`tesengine.testing.MockTransport` answers
from a plain function, for tests. This module imports no HTTP library.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_RESPONSE",
    "Request",
    "RequestCounts",
    "Response",
    "Transport",
]

#: Defaults of the backend keys ``request_deadline`` and ``max_response_bytes``.
DEFAULT_DEADLINE = 300.0
DEFAULT_MAX_RESPONSE = 64 << 20


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request to the TES server (``body`` is None for a GET)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None

    @property
    def path(self) -> str:
        """The URL's path, still percent-encoded (``/ga4gh/tes/v1/tasks/a%2Fb``)."""
        return urlsplit(self.url).path

    @property
    def query(self) -> list[tuple[str, str]]:
        """The query as decoded ``(key, value)`` pairs, in order (tag filters repeat keys)."""
        return parse_qsl(urlsplit(self.url).query, keep_blank_values=True)

    def json(self) -> Any:
        """The body parsed as JSON (None without a body)."""
        return None if self.body is None else json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Response:
    """The server's answer to one :class:`Request`: any status, the whole body."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def of_json(
        cls, document: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Response:
        """A response whose body is ``document`` as JSON (``Content-Type: application/json``)."""
        return cls(
            status,
            {"Content-Type": "application/json", **(headers or {})},
            json.dumps(document).encode(),
        )

    def header(self, name: str) -> str | None:
        """The value of header ``name``, whatever its case; None when absent."""
        value = self.headers.get(name)
        if value is not None:
            return value
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


@runtime_checkable
class Transport(Protocol):
    """Sends one request and returns the response; see the module docstring."""

    async def send(self, request: Request) -> Response:
        """The response to ``request``, or a :class:`~tesengine.errors.TransportError`."""
        ...  # pragma: no cover

    async def aclose(self) -> None:
        """Release connections; the client calls it only for a transport it created."""
        ...  # pragma: no cover


@dataclass(frozen=True, slots=True)
class RequestCounts:
    """What a client has sent so far: for run reports and tests.

    ``requests`` counts HTTP requests that went out (each redirect hop and
    each retry included; a connection that was never made sends nothing and
    is not counted); ``retries`` counts the re-sends of the retry loop.
    """

    requests: int = 0
    retries: int = 0

    def __iter__(self) -> Iterator[int]:
        """``requests, retries = client.counts`` (what the run report takes)."""
        yield self.requests
        yield self.retries
