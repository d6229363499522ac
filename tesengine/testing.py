"""Test mode for programs that embed tesengine (in the spirit of stamina's).

``set_testing(True)`` makes every retry wait zero (the number of retries is
kept) and every poll interval :data:`TEST_INTERVAL`, so a test suite that runs
tasks against a real TES server finishes in milliseconds, not minutes::

    import tesengine.testing

    tesengine.testing.set_testing(True)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .tes import retry

__all__ = ["TEST_INTERVAL", "is_testing", "poll_interval", "set_testing", "testing"]

#: Poll interval in test mode: short enough to be instant, long enough not to spin.
TEST_INTERVAL = 0.01

_testing = False


def set_testing(on: bool = True) -> None:
    """Turn test mode on or off (process-wide)."""
    global _testing  # noqa: PLW0603 - a process-wide switch, as stamina's
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
