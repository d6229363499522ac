"""When and how long to wait before retrying a TES request.

Retried: connection errors, timeouts (including an exchange that outlasts
its ``request_deadline``), HTTP 500/502/503/504 and 429, and a 2xx JSON
reply whose body does not parse (a body cut short in transit). The wait
is exponential backoff with full jitter (``uniform(0, min(cap, base * 2**n))``),
except that a ``Retry-After`` header (seconds or an HTTP date) is honoured
as given, up to :attr:`RetryPolicy.retry_after_max`.

The policy sleeps with its ``sleep`` (``asyncio.sleep`` unless a test gives
a fake clock), and test mode (:func:`set_testing`) makes every wait zero.

A server that has never answered is not a server having a transient outage:
a refused connection (or a name that does not resolve) before the first
reply is retried only :attr:`RetryPolicy.first_contact_retries` times, so a
wrong URL or a server that is not running fails in a second or two.

Each scheduled retry is one readable log line on ``tesengine.tes``
(WARNING)::

    retrying GET http://tes:8000/ga4gh/tes/v1/tasks (attempt 2 of 9, in 2.0 s): connection refused

and, however many tasks retry at once, at most one such line per
:data:`RETRY_LOG_INTERVAL` seconds (the next one says how many were not shown).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit, urlunsplit

from ..errors import (
    ConnectError,
    ConnectionLost,
    DeadlineExceeded,
    TesUnavailable,
    TransportError,
    redact_url,
)

__all__ = [
    "RETRY_LOG_INTERVAL",
    "RETRY_STATUSES",
    "DeadlineExceeded",
    "MalformedReply",
    "RetryPolicy",
    "RetryableStatus",
    "Retrying",
    "describe_failure",
    "is_retryable",
    "is_unreachable",
    "parse_retry_after",
    "set_testing",
]

log = logging.getLogger("tesengine.tes")

#: At most one "retrying ..." line per this many seconds, across all requests.
RETRY_LOG_INTERVAL = 5.0

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class RetryableStatus(Exception):
    """The server answered with a status worth retrying; turned into TesUnavailable at the end."""

    def __init__(self, status: int, body: str, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.retry_after = retry_after


class MalformedReply(Exception):
    """A 2xx reply whose JSON body does not parse (cut short on the way): worth another try."""


def is_retryable(exc: BaseException) -> bool:
    """True for failures that another attempt may cure.

    ``asyncio.CancelledError`` is a BaseException, so a cancelled request
    stops at once instead of being retried.
    """
    return isinstance(
        exc,
        RetryableStatus | MalformedReply | ConnectError | ConnectionLost | TimeoutError,
    )


def is_unreachable(exc: BaseException) -> bool:
    """True when nothing listens at the address (refused) or the host name does not resolve."""
    return isinstance(exc, ConnectError) and exc.unreachable


def describe_failure(exc: BaseException) -> str:
    """A failure in a few words: ``connection refused``, ``timed out``, ``HTTP 503: ...``."""
    if isinstance(exc, RetryableStatus):
        return f"HTTP {exc.status}: {exc.body[:300]}" if exc.body else f"HTTP {exc.status}"
    if isinstance(exc, TransportError | MalformedReply) and str(exc):
        return str(exc)  # written to be read: "connection refused", "within 5 s (...)"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date); None if bad."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not str.isdigit alone: "²" is a digit too
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())


Sleep = Callable[[float], Awaitable[object]]
_testing = False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times to retry (``retries`` after the first try) and how long to wait.

    ``sleep`` waits between tries: a test passes a fake one to see the waits
    without spending them. ``rng`` draws the jittered wait.
    """

    retries: int = 8
    #: retries of a refused connection before the server ever answered
    first_contact_retries: int = 2
    wait_initial: float = 0.5
    wait_max: float = 30.0
    retry_after_max: float = 300.0
    rng: Callable[[float, float], float] = field(default=random.uniform, repr=False)
    sleep: Sleep = field(default=asyncio.sleep, repr=False)

    def delay(self, retry_number: int, exc: BaseException) -> float:
        """The wait before retry ``retry_number`` (1-based) after ``exc``."""
        if isinstance(exc, RetryableStatus) and exc.retry_after is not None:
            return min(exc.retry_after, self.retry_after_max)
        ceiling = min(self.wait_max, self.wait_initial * 2.0 ** (retry_number - 1))
        return self.rng(0.0, ceiling)

    def retrying(self, method: str = "", url: str = "", *, reached: bool = True) -> Retrying:
        """The retry budget of one request that has just failed once.

        ``reached`` is false until the server has answered once: then an
        unreachable server gives up after :attr:`first_contact_retries`.
        """
        return Retrying(self, method, url, reached=reached)


class Retrying:
    """One request's retries: each :meth:`wait` is one more, until they are spent."""

    __slots__ = ("_first_contact", "count", "method", "policy", "url")

    def __init__(self, policy: RetryPolicy, method: str, url: str, *, reached: bool) -> None:
        self.policy = policy
        self.method = method
        self.url = url
        self.count = 0  # retries so far
        self._first_contact = not reached

    async def wait(self, exc: Exception) -> None:
        """Wait before the next try after ``exc``; raise TesUnavailable when none is left."""
        policy = self.policy
        if (
            self._first_contact
            and is_unreachable(exc)
            and self.count >= policy.first_contact_retries
        ):
            raise TesUnavailable(
                f"{self._where()}: cannot reach the TES server ({describe_failure(exc)});"
                " is it running, and is the url in the configuration right?"
            ) from exc
        if self.count >= policy.retries:
            raise TesUnavailable(
                f"{self._where()}: TES server unavailable after {policy.retries + 1} attempts:"
                f" {describe_failure(exc)}"
            ) from exc
        self.count += 1
        delay = 0.0 if _testing else policy.delay(self.count, exc)
        _log_retry(self, delay, exc)
        await policy.sleep(delay)

    def _where(self) -> str:
        return f"{self.method} {redact_url(self.url)}"


class _RetryLog:
    """At most one "retrying ..." line per RETRY_LOG_INTERVAL, across all requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # clients may run on several event loops' threads
        self._last = -RETRY_LOG_INTERVAL
        self._hidden = 0

    def __call__(self, retrying: Retrying, delay: float, exc: BaseException) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < RETRY_LOG_INTERVAL:
                self._hidden += 1
                return
            hidden, self._hidden, self._last = self._hidden, 0, now
        more = f" ({hidden} more retries not shown)" if hidden else ""
        log.warning(
            "retrying %s %s (attempt %d of %d, in %.1f s): %s%s",
            retrying.method,
            _short_url(retrying.url),
            retrying.count + 1,
            retrying.policy.retries + 1,
            delay,
            describe_failure(exc),
            more,
        )


_log_retry = _RetryLog()


def _short_url(url: str) -> str:
    """The URL without its query (tag filters, page tokens) and without secrets."""
    parts = urlsplit(redact_url(url))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def set_testing(testing: bool) -> None:
    """Test mode: every wait is zero; the configured number of retries is kept."""
    global _testing  # noqa: PLW0603 - a process-wide switch, like tesengine.testing's
    _testing = testing
