"""The one exception tree of tesengine.

Every error tesengine raises on purpose derives from :class:`TesEngineError`,
so an embedding program can catch the whole family with one clause. Errors
of third-party libraries (aiohttp, obstore, pydantic, blake3) are translated
at the boundary where they occur (``raise ... from exc``), so they never leak
out of the public API untranslated::

    TesEngineError
    ├── ConfigError            bad or missing configuration (names file and key)
    ├── AuthError              credentials refused or unobtainable
    ├── InvalidTask            a task failed validation before anything was sent
    ├── DigestError            a local input cannot be hashed
    │   └── InputChanged       a file changed while it was hashed or uploaded
    ├── StorageError           an object store fault (names the URL)
    │   ├── ObjectNotFound     the object does not exist
    │   └── ContentMismatch    an object at a content address has the wrong size
    ├── TesError               talking to the TES server went wrong
    │   ├── TesApiError        the server answered with an error status
    │   ├── UnsafeReply        an answer refused: outputs outside the outputs prefix...
    │   │   └── ResponseTooLarge   ...or larger than max_response_bytes
    │   ├── TesUnavailable     retries exhausted (or each try past request_deadline)
    │   └── TransportError     one exchange failed on the way (raised by a Transport)
    │       ├── ConnectError       no connection: nothing was sent (retried)
    │       ├── ConnectionLost     reset, closed or cut short after sending (retried)
    │       ├── ExchangeTimeout    no complete answer in time (retried)
    │       │   └── DeadlineExceeded   ...within request_deadline, a trickling server
    │       └── ProtocolError      not HTTP: bad status line, header, redirect (not retried)
    ├── TaskFailed             a task ended in EXECUTOR_ERROR, SYSTEM_ERROR, CANCELED
    ├── OutputMissing          an output was read that the task did not produce
    ├── TaskNotFound           no task of that id where it was looked up (the embedded store)
    ├── NotReady               the object cannot serve the call: closed, unbound or not started
    ├── ReportError            a run report could not be written
    ├── StoreUnavailable       ``tesengine serve`` could not commit a task (HTTP 503)
    └── ServerError            a fault inside ``tesengine serve`` (start-up, a task's system log)
        ├── RuntimeUnavailable   the chosen runtime cannot run here (missing tool, no daemon)
        ├── ExecutorRefused      the runtime cannot run an executor as written
        ├── TaskStoreError       the task database cannot be opened or read back
        ├── StagingError         an input not fetched, an output not published
        │   └── MissingOutput      a declared output the task did not produce
        ├── UnsafePath           a task's path is a link or special file where it must not be
        └── IllegalTransition    a task state change the server never makes (a bug)

Messages never contain secrets: credentials are held as ``SecretStr`` and
URLs are passed through :func:`redact_url` (from :mod:`tesengine.redact`)
before they are formatted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .redact import redact_url

__all__ = [
    "AuthError",
    "ConfigError",
    "ConnectError",
    "ConnectionLost",
    "ContentMismatch",
    "DeadlineExceeded",
    "DigestError",
    "ExchangeTimeout",
    "ExecutorRefused",
    "IllegalTransition",
    "InputChanged",
    "InvalidTask",
    "MissingOutput",
    "NotReady",
    "ObjectNotFound",
    "OutputMissing",
    "ProtocolError",
    "ReportError",
    "ResponseTooLarge",
    "RuntimeUnavailable",
    "ServerError",
    "StagingError",
    "StorageError",
    "StoreUnavailable",
    "TaskFailed",
    "TaskNotFound",
    "TaskStoreError",
    "TesApiError",
    "TesEngineError",
    "TesError",
    "TesUnavailable",
    "TransportError",
    "UnsafePath",
    "UnsafeReply",
    "redact_url",
]


class TesEngineError(Exception):
    """Root of every error tesengine raises on purpose."""


class ConfigError(TesEngineError):
    """The configuration is missing, malformed or invalid.

    The message names the file and the key path (``run.backends.default.url``).
    """


class AuthError(TesEngineError):
    """Credentials were refused by the server or could not be obtained."""


class InvalidTask(TesEngineError):
    """A task failed validation; nothing was uploaded or submitted for it."""


class DigestError(TesEngineError):
    """A local input could not be hashed (missing, unreadable, FIFO, loop...)."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class InputChanged(DigestError):
    """A local file changed while it was being hashed or uploaded."""


class StorageError(TesEngineError):
    """An object store operation failed. ``url`` is already redacted."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class ObjectNotFound(StorageError):
    """The object does not exist."""


class ContentMismatch(StorageError):
    """An object at a content address is not what the address names (wrong size)."""


class TesError(TesEngineError):
    """Talking to the TES server went wrong."""


class TesApiError(TesError):
    """The TES server answered with an error status that is not retried.

    Carries the request method, redacted URL, HTTP status and the server's
    message (Funnel and tesengine's own server send ``{"error": ...}``).
    """

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        self.method = method
        self.url = redact_url(url)
        self.status = status
        self.body = body
        super().__init__(f"{method} {self.url} -> HTTP {status}: {_short(body)}")


class UnsafeReply(TesError):
    """An answer of the TES server that tesengine refuses to act on.

    For example a task recovered by ``attach`` whose outputs lie outside the
    backend's ``outputs`` prefix: reading them would copy whatever the
    server names (``file:///``, another bucket) into the local cache.
    """


class ResponseTooLarge(UnsafeReply):
    """A reply larger than the backend's ``max_response_bytes``; it is not retried."""


class TesUnavailable(TesError):
    """The TES server could not be reached, even after every retry."""


class TransportError(TesError):
    """One exchange with the TES server failed on the way there or back.

    A :class:`~tesengine.tes.transport.Transport` raises these (and only
    these) for network and HTTP faults; a mock transport's handler raises
    them to simulate one. The client retries every kind but
    :class:`ProtocolError` and raises :class:`TesUnavailable` once the
    retries are spent, so callers of the client rarely see them.
    """


class ConnectError(TransportError):
    """No connection could be made, so nothing was sent.

    ``unreachable`` is true when nothing listens there (connection refused)
    or the host name does not resolve: before the server has ever answered,
    such a failure is retried only a few times.
    """

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


class ConnectionLost(TransportError):
    """The connection broke, or the reply was cut short, after the request went out."""


class ExchangeTimeout(TransportError, TimeoutError):
    """No complete answer in time: a socket timeout or the exchange's ``request_deadline``."""


class DeadlineExceeded(ExchangeTimeout):
    """One exchange (connect, send, headers and the whole body) outlasted its deadline.

    A read timeout alone cannot catch a server that trickles a byte a
    second; this can. It is a timeout, so it is retried like one.
    """


class ProtocolError(TransportError):
    """The reply is not valid HTTP (status line, headers, chunking) or redirects nowhere valid.

    Not retried: a server that speaks broken HTTP is broken, not busy.
    """


class StoreUnavailable(TesEngineError):
    """``tesengine serve`` could not commit to its task database; nothing was created."""


class TaskFailed(TesEngineError):
    """A task ended in EXECUTOR_ERROR, SYSTEM_ERROR or CANCELED.

    The message says in one line what happened, for example
    ``task count (id abc) EXECUTOR_ERROR: executor 0 exited 3: no such file``.
    """

    def __init__(
        self,
        summary: str,
        *,
        task_id: str,
        state: str,
        exit_codes: Sequence[int | None] = (),
        stderr_tail: str = "",
        system_logs: Sequence[str] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(summary)
        self.task_id = task_id
        self.state = state
        self.exit_codes = tuple(exit_codes)
        self.stderr_tail = stderr_tail
        self.system_logs = tuple(system_logs)
        self.extra = dict(extra or {})


class OutputMissing(TesEngineError):
    """An output was read that its task did not produce."""


class TaskNotFound(TesEngineError):
    """No task of that id where it was looked up (a server answers 404: :class:`TesApiError`)."""


class NotReady(TesEngineError):
    """The object cannot serve the call now, whatever its arguments.

    A closed backend, an output URL not bound to a backend, a blocking
    facade whose loop did not start, or a blocking call made from that
    loop's own thread (it would deadlock).
    """


class ReportError(TesEngineError):
    """A run report (:mod:`tesengine.report`) could not be written."""


class ServerError(TesEngineError):
    """A fault inside ``tesengine serve``: at start-up, or ending a task as SYSTEM_ERROR."""


class RuntimeUnavailable(ServerError):
    """The chosen runtime cannot run here (missing tool, no daemon...)."""


class ExecutorRefused(ServerError):
    """This runtime cannot run this executor as written (argument limits, unsafe names...)."""


class TaskStoreError(ServerError):
    """The server's task database cannot be opened, or a task in it cannot be read back."""


class StagingError(ServerError):
    """An input could not be fetched or an output could not be published."""


class MissingOutput(StagingError):
    """A declared output that the task did not produce."""


class UnsafePath(ServerError):
    """A task-controlled path is a link, a special file, or otherwise not what it must be."""


class IllegalTransition(ServerError):
    """A task state change that :func:`tesengine.server.states.advance` forbids: a server bug."""


def _short(body: str, limit: int = 500) -> str:
    text = " ".join(body.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
