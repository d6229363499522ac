"""Listing I/O for batched existence checks: which of many names are under a prefix.

:class:`ExistenceLister` decides a batch of hex names under one prefix
(``<inputs>/file`` or ``<inputs>/complete/directory``) with the plan of
:mod:`tesengine.storage.existence`: one page listed from the middle of the
key space estimates how many keys the prefix holds (and checks that the
store honours a list offset), then the key ranges the batch touches are
listed concurrently, each stopping once its last wanted name is passed (or
after a few pages more than planned). What no
listing decided is left out of the answer: the caller HEADs it.

While the probe is in flight the other request slots HEAD wanted names
(they are decided either way), which also measures the store: one whose
listing is far slower than its HEADs (it reads the whole namespace per
listing request) is then HEADed instead
(:func:`~tesengine.storage.existence.guard_probe`).

A listing is only trusted in the order it promises: a page whose names
are not increasing, or start at or before the offset asked for, proves
nothing about absence (its names are still present), and a store seen to
ignore the offset is listed from the start instead (one range).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass, field

from ..errors import StorageError
from ._together import run_all
from .existence import (
    PAGE,
    Plan,
    estimate_from_page,
    guard_probe,
    merge,
    page_too_dear,
    plan,
)
from .protocol import OrderedListing
from .reports import StagingStats

__all__ = ["LIST_BUDGET_MIN", "LIST_MARGIN", "MIN_BATCH", "PAGES_PER_RANGE_MAX", "ExistenceLister"]

log = logging.getLogger(__name__)

#: Batches smaller than this are checked with HEADs: a listing cannot beat
#: a few requests made at once.
MIN_BATCH = 64
#: Listing is kept (for its few requests) unless expected this many times slower than HEADs.
LIST_MARGIN = 2.0
#: Seconds a listing may always take, however fast its first page came.
LIST_BUDGET_MIN = 1.0
#: Pages one range may take, as a multiple of what it was planned to take.
PAGES_PER_RANGE_MAX = 4
_PROBE_AFTER = "8"  # the middle of the hex key space


@dataclass(slots=True)
class _Listed:
    """What the listings of one batch saw: present names and the ranges covered."""

    wanted: frozenset[str]
    seen: dict[str, int] = field(default_factory=dict)
    ranges: list[tuple[str, str | None]] = field(default_factory=list)

    def take(self, page: list[tuple[str, int]], after: str) -> str | None:
        """Record ``page`` (listed past ``after``); its last name, or None if out of order."""
        self.seen.update((n, s) for n, s in page if n in self.wanted)
        previous = after
        for name, _ in page:
            if name <= previous:
                return None  # not the promised order: the page shows presence only
            previous = name
        return previous


class ExistenceLister:
    """Decides batches of names under ``prefix_url`` by listing (see the module doc)."""

    def __init__(
        self,
        storage: OrderedListing,
        prefix_url: str,
        slot: Callable[[], asyncio.Semaphore],
        stats: StagingStats,
        *,
        min_batch: int = MIN_BATCH,
        head: Callable[[str], Awaitable[int | None]] | None = None,
        concurrency: int = 32,
        margin: float = LIST_MARGIN,
    ) -> None:
        """``head`` sizes one name (None: absent) while the probe runs; ``margin``
        ``math.inf`` always lists (and sends no HEAD alongside the probe)."""
        self.storage = storage
        self.prefix_url = prefix_url
        self.min_batch = min_batch
        self.concurrency = concurrency
        self.margin = margin
        self._head = head if math.isfinite(margin) else None
        self._slot = slot
        self._stats = stats
        self._offsets_work: bool | None = None  # unknown until a listing shows it
        self._listing_off = False  # a listing failed or overran: HEADs only

    def worth_listing(self, count: int) -> bool:
        """True when a batch of ``count`` names may be decided by listing."""
        if self._listing_off or count < self.min_batch:
            return False
        return self.storage.lists_in_order(self.prefix_url)

    async def decide(self, names: Collection[str]) -> dict[str, int | None]:
        """Size of each name a listing showed, None for each it showed absent.

        Names left out were not decided (a small batch, a listing dearer
        than HEADs, a store out of order): the caller sends a HEAD for each.
        """
        if not self.worth_listing(len(names)):
            return {}
        listed = _Listed(frozenset(names))
        headed: dict[str, int | None] = {}
        started = time.monotonic()
        try:
            namespace, heads = await self._probe_hedged(listed, headed)
        except _ProbeFailed as failed:
            self._give_up(f"the probe listing failed: {failed.__cause__}")
            return headed  # the hedges' answers are HEADs'; the rest is HEADed too
        probe_s = time.monotonic() - started
        if page_too_dear(heads, self._hedges(len(names))):
            self._give_up(f"one listing page took the time of {heads} HEADs")
            return merge(listed.wanted, listed.seen, listed.ranges) | headed
        rest = [n for n in listed.wanted if n not in headed and not _covered(n, listed.ranges)]
        # Names the hedging HEADs left to decide: too few to be worth a listing
        # go to HEAD too (without hedges the batch is committed to listing).
        least = self.min_batch if headed else 1
        chosen = plan(rest, namespace, min_batch=least, offsets=bool(self._offsets_work))
        if heads:
            rounds = self.concurrency
            chosen = guard_probe(chosen, rest, heads, rounds=rounds, margin=self.margin)
        self._stats.last_plan = chosen.reason
        log.debug(
            "existence of %d names under %s: namespace ~%d, %s",
            len(names), self.prefix_url, namespace, chosen.reason,
        )  # fmt: skip
        if chosen.lists:
            budget = self._budget(chosen, rest, heads, probe_s)
            await self._list_ranges(chosen, listed, budget)
        return merge(listed.wanted, listed.seen, listed.ranges) | headed

    def _budget(self, chosen: Plan, rest: list[str], heads: int, probe_s: float) -> float | None:
        """Seconds the listing may take before what it left is HEADed instead.

        ``margin`` times what HEADs of the rest would take at the rate the
        hedges showed; with no hedge answered, ``margin`` times the probe
        page's time for each round of pages, and never under a second (a
        store that answers its first page fast may still be listed slowly).
        """
        if not math.isfinite(self.margin):
            return None
        if heads:
            return self.margin * probe_s * len(rest) / heads
        rounds = math.ceil(chosen.cost / self.concurrency)
        return max(LIST_BUDGET_MIN, self.margin * probe_s * rounds)

    async def _list_ranges(self, chosen: Plan, listed: _Listed, budget: float | None) -> None:
        """List ``chosen.ranges`` at once, within ``budget`` seconds.

        What the pages listed by then decided stands; the rest is HEADed.
        A listing that fails (no list permission, a store that times out)
        is HEADed the same way.
        """
        self._stats.list_plans += 1
        cap = PAGES_PER_RANGE_MAX * chosen.pages_per_range
        pairs = zip(chosen.ranges, chosen.lasts, strict=True)
        ranges = [self._range(after, last, listed, cap) for (after, _), last in pairs]
        try:
            async with asyncio.timeout(budget):
                await run_all(ranges)
        except (TimeoutError, StorageError) as exc:
            self._give_up(_why(exc, budget))

    def _give_up(self, why: str) -> None:
        """Stop listing for this stager: what is left of every batch is HEADed."""
        self._listing_off = True
        self._stats.last_plan += f"; listing stopped ({why}): HEADs for the rest"
        log.info("existence checks under %s: %s; HEADs from now on", self.prefix_url, why)

    async def _probe_hedged(
        self, listed: _Listed, headed: dict[str, int | None]
    ) -> tuple[int, int]:
        """The probe, with HEADs in the other slots until it returns.

        Returns the namespace estimate and how many HEADs finished before
        the probe page came back.
        """
        done = asyncio.Event()
        todo = sorted(listed.wanted, reverse=True)
        probed: list[int] = []
        finished = 0

        async def probe() -> None:
            try:
                probed.append(await self._probe(listed))
            except StorageError as exc:  # a HEAD's own error still fails the batch
                raise _ProbeFailed() from exc
            finally:
                done.set()
                probed.append(finished)

        async def hedge(head: Callable[[str], Awaitable[int | None]]) -> None:
            nonlocal finished
            while todo and not done.is_set():
                name = todo.pop()
                headed[name] = await head(name)
                finished += 1

        hedges = [hedge(self._head) for _ in range(self._hedges(len(todo)))] if self._head else []
        await run_all([probe(), *hedges])
        return probed[0], probed[1]

    def _hedges(self, names: int) -> int:
        """HEADs sent at once while the probe runs (the other request slots)."""
        return min(self.concurrency - 1, names) if self._head else 0

    async def _probe(self, listed: _Listed) -> int:
        """List one page from the middle: an estimate of the namespace, and an order check."""
        async with self._slot():
            page = await self._first_page(_PROBE_AFTER)
        last = listed.take(page, _PROBE_AFTER)
        complete = len(page) < PAGE
        if self._offsets_work is None and page:
            self._offsets_work = last is not None
        if last is None:  # the offset was ignored: this page is from the start
            names = [n for n, _ in page]
            return estimate_from_page(names, names[0] if names else "", complete=complete)
        listed.ranges.append((_PROBE_AFTER, None if complete else last))
        return estimate_from_page([n for n, _ in page], _PROBE_AFTER, complete=complete)

    async def _first_page(self, after: str) -> list[tuple[str, int]]:
        self._stats.lists += 1  # a request even when the listing is empty
        pages = self.storage.list_pages(self.prefix_url, start_after=after)
        try:
            async for page in pages:
                return page
            return []
        finally:
            await _close(pages)

    async def _range(self, after: str, last_wanted: str, listed: _Listed, cap: int) -> None:
        """List from past ``after`` until past ``last_wanted``, recording what is covered.

        At most ``cap`` pages: a range far denser than planned (or a store
        whose listing never ends) leaves the rest of its names to HEAD.
        """
        start = after
        async with self._slot():
            self._stats.lists += 1  # the first request, even when it returns nothing
            pages = self.storage.list_pages(self.prefix_url, start_after=after or None)
            try:
                count = 0
                async for page in pages:
                    count += 1
                    if count > 1:
                        self._stats.lists += 1
                    last = listed.take(page, after)
                    if last is None:
                        if start:
                            self._offsets_work = False  # list from the start next time
                        return  # out of order: the rest of this range goes to HEAD
                    if len(page) < PAGE:
                        break  # the last page
                    listed.ranges.append((after, last))
                    if last >= last_wanted or count >= cap:
                        return
                    after = last
                listed.ranges.append((after, None))  # listed to the end
            finally:
                await _close(pages)


async def _close(pages: AsyncIterator[object]) -> None:
    """Stop a listing early: an async generator sends no more requests once closed."""
    close = getattr(pages, "aclose", None)
    if close is not None:
        await close()


def _covered(name: str, ranges: list[tuple[str, str | None]]) -> bool:
    return any(after < name and (last is None or name <= last) for after, last in ranges)


class _ProbeFailed(Exception):
    """The probe listing failed (its StorageError is the cause)."""


def _why(exc: BaseException, budget: float | None) -> str:
    if isinstance(exc, TimeoutError) and budget is not None:
        return f"listing took over {budget:.1f} s, longer than HEADs would"
    return f"a listing failed: {exc}"
