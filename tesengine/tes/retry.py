"""When and how long to wait before retrying a TES request.

Retried: connection errors, timeouts (including an exchange that outlasts
its ``request_deadline``), HTTP 500/502/503/504 and 429, and a 2xx JSON
reply whose body does not parse (a body cut short in transit). The wait
is exponential backoff with full jitter (``uniform(0, min(cap, base * 2**n))``),
except that a ``Retry-After`` header (seconds or an HTTP date) is honoured
as given, up to :attr:`RetryPolicy.retry_after_max`.

The loop itself is stamina's (``stamina.retry_context``): stamina accepts a
backoff hook that returns the wait for each failure, which is how
``Retry-After`` is honoured, and stamina's test mode (:func:`set_testing`)
makes every wait zero.

A server that has never answered is not a server having a transient outage:
a refused connection (or a name that does not resolve) before the first
reply is retried only :attr:`RetryPolicy.first_contact_retries` times, so a
wrong URL or a server that is not running fails in a second or two.

Each scheduled retry is one readable log line on ``tesengine.tes``
(WARNING), instead of stamina's ``stamina.retry_scheduled`` record::

    retrying GET http://tes:8000/ga4gh/tes/v1/tasks (attempt 2 of 9, in 2.0 s): connection refused

and, however many tasks retry at once, at most one such line per
:data:`RETRY_LOG_INTERVAL` seconds (the next one says how many were not shown).
Stamina's hooks stay in place for every other retry in the process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit, urlunsplit

import stamina
import stamina.instrumentation

from ..errors import (
    ConnectError,
    ConnectionLost,
    ExchangeTimeout,
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
    "describe_failure",
    "is_retryable",
    "is_unreachable",
    "parse_retry_after",
    "set_testing",
]

log = logging.getLogger("tesengine.tes")

#: At most one "retrying ..." line per this many seconds, across all requests.
RETRY_LOG_INTERVAL = 5.0
_HOOK_NAME = "tesengine.tes.request"

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


class DeadlineExceeded(ExchangeTimeout):
    """One exchange (connect, send, headers and the whole body) outlasted its deadline.

    A read timeout alone cannot catch a server that trickles a byte a
    second; this can. It is a timeout, so it is retried like one.
    """


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


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times to retry (``retries`` after the first try) and how long to wait."""

    retries: int = 8
    #: retries of a refused connection before the server ever answered
    first_contact_retries: int = 2
    wait_initial: float = 0.5
    wait_max: float = 30.0
    retry_after_max: float = 300.0
    rng: Callable[[float, float], float] = field(default=random.uniform, repr=False)

    def delay(self, retry_number: int, exc: BaseException) -> float:
        """The wait before retry ``retry_number`` (1-based) after ``exc``."""
        if isinstance(exc, RetryableStatus) and exc.retry_after is not None:
            return min(exc.retry_after, self.retry_after_max)
        ceiling = min(self.wait_max, self.wait_initial * 2.0 ** (retry_number - 1))
        return self.rng(0.0, ceiling)

    def attempts(self, method: str = "", url: str = "", *, reached: bool = True) -> Attempts:
        """Stamina attempts: 1 + ``retries``, waits from :meth:`delay`.

        The client runs its first try outside stamina, so that the common,
        successful request pays nothing for the retry machinery, and raises
        that failure again inside attempt 1 so that stamina waits for it.
        ``reached`` is false until the server has answered once: then an
        unreachable server gives up after :attr:`first_contact_retries`.
        """
        return Attempts(self, method, url, reached=reached)


class Attempts:
    """One request's retry loop (an async iterator of stamina attempts)."""

    __slots__ = ("_backoff", "_inner", "method", "url")

    def __init__(self, policy: RetryPolicy, method: str, url: str, *, reached: bool) -> None:
        _install_retry_log()
        self.method = method
        self.url = url
        self._backoff = _Backoff(policy, first_contact=not reached)
        context = stamina.retry_context(
            on=self._backoff,
            attempts=policy.retries + 1,
            timeout=None,
            wait_initial=policy.wait_initial,
            wait_max=policy.wait_max,
        )
        self._inner = context.with_name(_HOOK_NAME, (method, url, policy.retries + 1), {})
        self._inner.__aiter__()

    def __aiter__(self) -> Attempts:
        return self

    async def __anext__(self) -> stamina.Attempt:
        return await self._inner.__anext__()

    def give_up(self, exc: BaseException) -> TesUnavailable:
        """The error once the retries are over (or not worth going on with)."""
        where = f"{self.method} {redact_url(self.url)}"
        if self._backoff.gave_up_early:
            return TesUnavailable(
                f"{where}: cannot reach the TES server ({describe_failure(exc)});"
                " is it running, and is the url in the configuration right?"
            )
        return TesUnavailable(
            f"{where}: TES server unavailable after {self._backoff.policy.retries + 1} attempts:"
            f" {describe_failure(exc)}"
        )


class _Backoff:
    """Stamina backoff hook for one request: counts retries to grow the wait."""

    __slots__ = ("_first_contact", "count", "gave_up_early", "policy")

    def __init__(self, policy: RetryPolicy, *, first_contact: bool) -> None:
        self.policy = policy
        self._first_contact = first_contact
        self.count = 0
        self.gave_up_early = False

    def __call__(self, exc: Exception) -> bool | float:
        if not is_retryable(exc):
            return False
        if (
            self._first_contact
            and is_unreachable(exc)
            and self.count >= self.policy.first_contact_retries
        ):
            self.gave_up_early = True
            return False
        self.count += 1
        return self.policy.delay(self.count, exc)


class _RetryLog:
    """Stamina on-retry hook: our requests get one throttled line; others, the old hooks."""

    def __init__(self, others: Sequence[stamina.instrumentation.RetryHook]) -> None:
        self._others = tuple(others)
        self._lock = threading.Lock()
        self._last = -RETRY_LOG_INTERVAL
        self._hidden = 0

    def __call__(
        self, details: stamina.instrumentation.RetryDetails
    ) -> contextlib.AbstractContextManager[None] | None:
        if details.name != _HOOK_NAME:
            return self._forward(details)
        method, url, total = details.args
        with self._lock:
            now = time.monotonic()
            if now - self._last < RETRY_LOG_INTERVAL:
                self._hidden += 1
                return None
            hidden, self._hidden, self._last = self._hidden, 0, now
        more = f" ({hidden} more retries not shown)" if hidden else ""
        log.warning(
            "retrying %s %s (attempt %d of %s, in %.1f s): %s%s",
            method,
            _short_url(str(url)),
            details.retry_num + 1,
            total,
            details.wait_for,
            describe_failure(details.caused_by),
            more,
        )
        return None

    def _forward(
        self, details: stamina.instrumentation.RetryDetails
    ) -> contextlib.AbstractContextManager[None] | None:
        stack = contextlib.ExitStack()
        for hook in self._others:
            result = hook(details)
            if isinstance(result, contextlib.AbstractContextManager):
                stack.enter_context(result)
        return stack  # type: ignore[return-value]  # an ExitStack's __exit__ returns bool


@functools.cache
def _install_retry_log() -> None:
    """Put :class:`_RetryLog` in front of stamina's hooks, once per process."""
    others = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks([_RetryLog(others)])


def _short_url(url: str) -> str:
    """The URL without its query (tag filters, page tokens) and without secrets."""
    parts = urlsplit(redact_url(url))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def set_testing(testing: bool) -> None:
    """Test mode: every wait is zero; the configured number of retries is kept."""
    stamina.set_testing(testing, attempts=1_000_000, cap=True)
