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
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import aiohttp
import stamina

__all__ = [
    "RETRY_STATUSES",
    "DeadlineExceeded",
    "MalformedReply",
    "RetryPolicy",
    "RetryableStatus",
    "is_retryable",
    "parse_retry_after",
    "set_testing",
]

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


class DeadlineExceeded(TimeoutError):
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
        RetryableStatus
        | MalformedReply
        | aiohttp.ClientConnectionError
        | aiohttp.ClientPayloadError
        | TimeoutError,
    )


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date); None if bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times to retry (``retries`` after the first try) and how long to wait."""

    retries: int = 8
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

    def attempts(self) -> AsyncIterator[stamina.Attempt]:
        """Stamina attempts: 1 + ``retries``, waits from :meth:`delay`.

        The client runs its first try outside stamina, so that the common,
        successful request pays nothing for the retry machinery, and raises
        that failure again inside attempt 1 so that stamina waits for it.
        """
        hook = _Backoff(self)
        return stamina.retry_context(
            on=hook,
            attempts=self.retries + 1,
            timeout=None,
            wait_initial=self.wait_initial,
            wait_max=self.wait_max,
        ).__aiter__()


class _Backoff:
    """Stamina backoff hook for one request: counts retries to grow the wait."""

    __slots__ = ("_count", "_policy")

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._count = 0

    def __call__(self, exc: Exception) -> bool | float:
        if not is_retryable(exc):
            return False
        self._count += 1
        return self._policy.delay(self._count, exc)


def set_testing(testing: bool) -> None:
    """Test mode: every wait is zero; the configured number of retries is kept."""
    stamina.set_testing(testing, attempts=1_000_000, cap=True)
