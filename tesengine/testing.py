"""Testing code that embeds tesengine: test mode, a mock transport and a fake TES.

``set_testing(True)`` makes every retry wait zero (the number of retries is
kept) and every poll interval :data:`TEST_INTERVAL`, so a test suite that runs
tasks against a real TES server finishes in milliseconds, not minutes::

    import tesengine.testing

    tesengine.testing.set_testing(True)

Without a server at all, give the client a :class:`MockTransport`: it
answers each request by calling a plain (or async) function, in the manner
of httpx's mock transport. :class:`FakeTes` is such a function that behaves
like a whole TES server, in memory::

    from tesengine.testing import FakeTes, MockTransport

    fake = FakeTes(lifecycle=(State.RUNNING, State.COMPLETE))
    client = TesClient(fake.base, transport=MockTransport(fake))
    backend = TesBackend(config, client=client)
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from ._fake_tes import FakeTes, Fault
from .tes import retry
from .tes.transport import Request, Response

__all__ = [
    "TEST_INTERVAL",
    "FakeTes",
    "Fault",
    "Handler",
    "MockTransport",
    "Request",
    "Response",
    "is_testing",
    "poll_interval",
    "set_testing",
    "testing",
]

#: Poll interval in test mode: short enough to be instant, long enough not to spin.
TEST_INTERVAL = 0.01

_testing = False

#: What a :class:`MockTransport` calls: a request in, a response (or an awaitable of one) out.
Handler = Callable[[Request], Response | Awaitable[Response]]


class MockTransport:
    """A :class:`~tesengine.tes.transport.Transport` that asks ``handler`` for each response.

    The handler may raise a :class:`~tesengine.errors.TransportError`
    (``ConnectError``, ``ConnectionLost``, ``ExchangeTimeout``...) to
    simulate the network failing; the client then retries as it would.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def send(self, request: Request) -> Response:
        """The handler's response to ``request``."""
        response = self.handler(request)
        if inspect.isawaitable(response):
            response = await response
        return response

    async def aclose(self) -> None:
        """Nothing to release."""


def set_testing(on: bool = True) -> None:
    """Turn test mode on or off (process-wide)."""
    global _testing  # noqa: PLW0603 - a process-wide switch
    _testing = on
    retry.set_testing(on)


def is_testing() -> bool:
    """True while test mode is on."""
    return _testing


def poll_interval(configured: float) -> float:
    """The interval pollers use: the configured one, or :data:`TEST_INTERVAL`."""
    return TEST_INTERVAL if _testing else configured


@contextmanager
def testing() -> Iterator[None]:
    """Test mode for the duration of a ``with`` block."""
    before = _testing
    set_testing(True)
    try:
        yield
    finally:
        set_testing(before)


# pytest collects module-level names starting with "test": this one, imported into
# a test module, is a context manager, not a test.
testing.__test__ = False  # type: ignore[attr-defined]
