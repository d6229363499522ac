"""Single flight: concurrent calls for one key share one piece of work.

The rule, the same everywhere tesengine uses it (digests, staging, output
downloads, token refreshes):

* The first call for a key starts the work in a task of its own; calls for
  the same key that come while it runs wait for that task instead of
  starting another. Every waiter gets its result or its exception.
* A waiter that is cancelled leaves; the work goes on for the others.
  **The last waiter to leave cancels the shared work**, so nothing runs on
  that nobody waits for, and a later call starts afresh.
* The work leaves the table when it ends, however it ends: nothing is
  remembered, and a failure is retried by the next call. A caller that
  wants a memo records it inside the work (before it returns), so that no
  call can slip in between the end of the flight and the memo.
* :meth:`SingleFlight.cancel_all` (on close) cancels everything in flight;
  its waiters then see ``CancelledError``.

Keys are per event loop: a task belongs to one loop, so the same key on two
loops is two flights.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

__all__ = ["SingleFlight"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass(slots=True, eq=False)
class _Flight(Generic[T]):
    """One shared task and how many callers still wait for it."""

    task: asyncio.Future[T]
    waiters: int = 0
    claimed: bool = False


class SingleFlight(Generic[K, T]):
    """A table of shared work by key; see the module docstring for the rule."""

    def __init__(self) -> None:
        self._flights: dict[tuple[asyncio.AbstractEventLoop, K], _Flight[T]] = {}
        # Work cancelled by its last waiter that has not ended yet: no longer
        # joinable, but still waited for by cancel_all.
        self._stopping: set[asyncio.Future[T]] = set()

    def __len__(self) -> int:
        """How many flights can be joined now."""
        return len(self._flights)

    @property
    def idle(self) -> bool:
        """True when no work runs, not even cancelled work that is still ending."""
        return not self._flights and not self._stopping

    def waiters(self, key: K) -> int:
        """How many callers wait for the work of ``key`` on this loop (0 if none runs)."""
        flight = self._flights.get((asyncio.get_running_loop(), key))
        return 0 if flight is None else flight.waiters

    async def run(self, key: K, work: Callable[[], Awaitable[T]]) -> T:
        """The result of ``work()``, shared with every concurrent call for ``key``."""
        result, _ = await self.run_claiming(key, work)
        return result

    async def run_claiming(self, key: K, work: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Like :meth:`run`, and whether this call is the first to see the result.

        Exactly one waiter of a successful flight is told ``True`` (the
        earliest one still waiting when it ends, usually the one that started
        it): staging uses it to report an upload once however many asked.
        """
        slot = (asyncio.get_running_loop(), key)
        flight = self._flights.get(slot)
        if flight is None:
            flight = _Flight(asyncio.ensure_future(work()))
            self._flights[slot] = flight
            flight.task.add_done_callback(partial(self._landed, slot, flight))
        flight.waiters += 1
        try:
            result = await asyncio.shield(flight.task)
        except asyncio.CancelledError:
            if flight.waiters == 1 and not flight.task.done():
                self._drop(slot, flight)  # a new call must not join a cancelled task
                self._stopping.add(flight.task)
                flight.task.cancel()
            raise
        finally:
            flight.waiters -= 1
        first, flight.claimed = not flight.claimed, True
        return result, first

    async def cancel_all(self) -> None:
        """Cancel every flight and wait until each has ended."""
        tasks = [*self._stopping, *(f.task for f in self._flights.values())]
        self._flights.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _drop(self, slot: tuple[asyncio.AbstractEventLoop, K], flight: _Flight[T]) -> None:
        if self._flights.get(slot) is flight:
            del self._flights[slot]

    def _landed(
        self, slot: tuple[asyncio.AbstractEventLoop, K], flight: _Flight[T], task: asyncio.Future[T]
    ) -> None:
        self._drop(slot, flight)
        self._stopping.discard(task)
        if not task.cancelled():
            task.exception()  # every waiter may have left: never "exception was never retrieved"
