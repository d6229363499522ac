"""Coalesced status polling: one tag-filtered listing per interval for every poller.

Each task a backend creates carries the tag ``tesengine-run: <run tag>``. Once
per interval, :class:`BatchStatus` walks ``GET /tasks?view=MINIMAL&tag_key=
tesengine-run&tag_value=<tag>&page_size=2047`` (following page tokens) for each
run tag with a waiting poller, and hands every poller its task's state: the
server sees O(tasks / page size) requests per interval instead of O(tasks).
The FULL views of tasks a walk sees COMPLETE are then read from listings too
(:mod:`.finals`); only failed tasks, and any a listing missed, cost a FULL
GET each, by their own poller. A poller
whose task is listed in the state it already knows is not woken: it waits
for the next walk, so an interval where nothing changes costs the client
little more than parsing the pages.

Nothing here ever fails a task:

- a task missing from the listing (servers may drop or re-page tasks) is read
  with one GET by its own poller, as :class:`PerTaskStatus` would;
- a walk that fails (the client already retried) leaves this tick's tasks
  to one GET each, and the next tick lists again;
- with ``polling = "auto"``, the first walk checks that the server honours tag
  filters (a listing for a random tag must be empty, and a sample listed for
  a real tag must carry it); a server that does not, or that refuses listing,
  is polled per task from then on;
- a walk stops once it has seen every waiting task of its tag, or once it has
  read as many pages as tasks remain unseen (a long history of finished tasks
  under an old run tag then costs no more than per-task GETs would).

Attached tasks are watched under their own, older run tag.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from ..errors import TesApiError, TesError, TesUnavailable
from ..tes.models import MAX_PAGE_SIZE, ListTasksResponse, State, TesTask, View
from ..tes.query import StatePage, TaskQuery
from .finals import read_finals
from .poller import PerTaskStatus, Sleep, StatusSource, jittered
from .request import RUN_TAG

__all__ = ["BatchStatus", "ListingClient", "Mode", "status_source"]

log = logging.getLogger("tesengine.engine")

_SAMPLE = 8  # tasks read in BASIC view to check that a tag filter holds
# Walks in a row that may fail (after the client's own retries) while the
# waiters keep waiting for the next one: releasing every waiter to its own
# GET after one failure turns a server struggling to list 100,000 tasks
# into 100,000 GETs, which only makes the next listing fail too.
_FAILED_WALKS = 3

Mode = Literal["probing", "batch", "per-task"]
Polling = Literal["auto", "batch", "per-task"]


class ListingClient(Protocol):
    """What :class:`BatchStatus` needs from a :class:`~tesengine.tes.TesClient`."""

    async def get_task(self, task_id: str, view: View = ...) -> TesTask: ...

    async def list_tasks(self, query: TaskQuery | None = ...) -> ListTasksResponse: ...

    async def list_states(self, query: TaskQuery | None = ...) -> StatePage: ...


def status_source(polling: Polling, client: ListingClient, sleep: Sleep) -> StatusSource:
    """The status source for a backend's ``polling`` setting."""
    if polling == "per-task":
        return PerTaskStatus(client, sleep)
    return BatchStatus(client, probe=polling == "auto", sleep=sleep)


@dataclass(slots=True)
class _Waiter:
    """A poller waiting for its task's next state (None: read it yourself)."""

    future: asyncio.Future[State | None]
    interval: float
    known: State
    completed: bool = False  # listed COMPLETE: answered after its FULL view is read


class BatchStatus:
    """A :class:`StatusSource` that answers all pollers from one listing per interval.

    ``probe`` (``polling = "auto"``) checks at first use that the server
    honours tag filters; without it (``polling = "batch"``) the server is
    trusted. ``sleep`` is used only by the per-task fallback.
    """

    def __init__(
        self, client: ListingClient, *, probe: bool = True, sleep: Sleep = asyncio.sleep
    ) -> None:
        self._client = client
        self._direct = PerTaskStatus(client, sleep)
        self._mode: Mode = "probing" if probe else "batch"
        self._page_size: int | None = MAX_PAGE_SIZE
        self._tags: dict[str, str] = {}  # watched task id -> its run tag
        self._waiters: dict[str, _Waiter] = {}  # waiting for the next walk
        self._walking: dict[str, _Waiter] = {}  # being answered by the current walk
        self._finals: dict[str, TesTask] = {}  # FULL views listed, until their poller takes them
        self._listed_full: bool | None = None  # listed FULL views match GETs; None: not checked
        self._refresher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._next_tick = math.inf  # loop time of the next walk; inf: none scheduled
        self._interval = math.inf  # the shortest interval a waiting poller asked for
        self._closed = False
        self._failed_walks = 0  # walks in a row whose listing failed

    @property
    def mode(self) -> Mode:
        """``probing`` until the first walk, then ``batch`` or ``per-task``."""
        return self._mode

    @property
    def refreshing(self) -> bool:
        """True while the background refresh loop runs."""
        return self._refresher is not None

    def watch(self, task_id: str, tag: str | None) -> None:
        if tag:
            self._tags[task_id] = tag

    def unwatch(self, task_id: str) -> None:
        self._tags.pop(task_id, None)
        self._finals.pop(task_id, None)
        if not self._tags:
            self._wake.set()  # an idle refresh loop ends now

    async def next_state(self, task_id: str, interval: float, known: State) -> State:
        if self._mode == "per-task" or self._closed or task_id not in self._tags:
            return await self._direct.next_state(task_id, interval, known)
        waiter = self._wait(task_id, interval, known)
        try:  # awaited here, not in a helper coroutine: one frame less per run in flight
            state = await waiter.future
        finally:
            if self._waiters.get(task_id) is waiter:
                del self._waiters[task_id]
        return state if state is not None else await self._direct.read(task_id)

    async def full(self, task_id: str) -> TesTask:
        listed = self._finals.pop(task_id, None)
        return listed if listed is not None else await self._direct.full(task_id)

    async def aclose(self) -> None:
        """Stop the refresh loop; pollers still waiting are cancelled."""
        self._closed = True
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.wait([self._refresher])
        for waiter in [*self._waiters.values(), *self._walking.values()]:
            waiter.future.cancel()
        self._waiters.clear()

    # -- waiting ----------------------------------------------------------

    def _wait(self, task_id: str, interval: float, known: State) -> _Waiter:
        """Join the next walk: the waiter's future gets the state (None: read it yourself)."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), interval, known)
        self._waiters[task_id] = waiter
        # Waiters join the scheduled walk; only an idle loop or a shorter
        # interval (test mode switched on) moves the walk earlier.
        if self._next_tick == math.inf or interval < self._interval:
            self._interval = min(interval, self._interval)
            self._next_tick = min(self._next_tick, loop.time() + jittered(interval))
            self._wake.set()
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_loop(), name="tesengine-status")
        return waiter

    async def _refresh_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._tags and not self._closed:
                await self._until_tick(loop)
                self._walking, self._waiters = self._waiters, {}
                if self._walking:
                    self._interval = min(w.interval for w in self._walking.values())
                    self._next_tick = loop.time() + jittered(self._interval)
                    await self._refresh(self._walking)
                else:  # nobody waits (e.g. all read FULL views): sleep until someone does
                    self._next_tick = self._interval = math.inf
                self._walking = {}
            _release(self._waiters.values())  # nothing watched any more: none should wait
        except Exception:
            log.exception("batched status polling failed; polling each task from now on")
            self._mode = "per-task"
            _release([*self._waiters.values(), *self._walking.values()])
        finally:
            self._refresher = None

    async def _until_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        # Yield once even when the tick is due: pollers the last walk answered
        # must get to wait again, or a walk longer than the interval skips them.
        await asyncio.sleep(0)
        while self._tags and (delay := self._next_tick - loop.time()) > 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if delay == math.inf else delay):
                    await self._wake.wait()

    # -- refreshing -------------------------------------------------------

    async def _refresh(self, batch: dict[str, _Waiter]) -> None:
        unchanged: dict[str, _Waiter] = {}
        try:
            if self._mode == "probing":
                await self._probe(batch)
            if self._mode == "batch":
                for tag, waiters in _by_tag(batch, self._tags).items():
                    if self._mode == "batch":
                        await self._walk(tag, waiters, unchanged)
        finally:
            for task_id, waiter in unchanged.items():
                if not waiter.future.done():  # not cancelled meanwhile: wait for the next walk
                    self._waiters[task_id] = waiter
        await self._answer_completed(batch)
        _release(w for i, w in batch.items() if i not in unchanged)  # the listing missed

    async def _probe(self, batch: Mapping[str, _Waiter]) -> None:
        tag = next((self._tags[i] for i in batch if i in self._tags), None)
        if tag is None:
            return
        try:
            honoured = await self._honours_tag_filter(tag)
        except TesUnavailable as exc:
            log.warning("checking tag filtering failed, will retry: %s", exc)
            return
        except TesApiError as exc:
            log.info("TES server refuses tag-filtered listing (%s): polling each task", exc)
            honoured = False
        if honoured:
            log.debug("TES server honours tag filters: batched status polling")
            self._mode = "batch"
        else:
            log.info("TES server ignores tag filters: polling each task")
            self._mode = "per-task"

    async def _honours_tag_filter(self, tag: str) -> bool:
        empty = await self._page({RUN_TAG: f"tesengine-probe-{uuid.uuid4().hex}"}, None)
        if empty.states:
            return False  # a tag nobody used matched tasks: the filter is ignored
        sample = await self._client.list_tasks(
            TaskQuery.of(tags={RUN_TAG: tag}, view=View.BASIC, page_size=_SAMPLE)
        )
        return all((t.tags or {}).get(RUN_TAG) == tag for t in sample.tasks)

    async def _answer_completed(self, batch: dict[str, _Waiter]) -> None:
        """Read the FULL views of the tasks this walk saw COMPLETE, then wake their pollers."""
        completed: dict[str, set[str]] = {}
        for task_id, waiter in batch.items():
            if waiter.completed and (tag := self._tags.get(task_id)) is not None:
                completed.setdefault(tag, set()).add(task_id)
        try:
            for tag, wanted in completed.items():
                if self._listed_full is False:
                    break
                found = await self._checked(await read_finals(self._client, tag, wanted))
                # Only tasks still watched: one unwatched meanwhile would never be taken.
                self._finals.update((i, t) for i, t in found.items() if i in self._tags)
        finally:
            for waiter in batch.values():
                if waiter.completed and not waiter.future.done():
                    waiter.future.set_result(State.COMPLETE)

    async def _checked(self, found: dict[str, TesTask]) -> dict[str, TesTask]:
        """``found``, once one of them proved equal to its own FULL GET (checked once).

        A server may answer a listing's ``view=FULL`` with less (a BASIC view has
        executors and logs but no stdout/stderr tails): such listings are not used.
        """
        if self._listed_full is not None or not found:
            return found if self._listed_full else {}
        task_id = next(iter(found))
        try:
            direct = await self._direct.full(task_id)
        except TesError as exc:  # check again next time; these pollers GET their own
            log.warning("reading a FULL view failed: %s", exc)
            return {}
        self._listed_full = direct == found[task_id]
        if not self._listed_full:
            log.info("TES server lists FULL views unlike it GETs them: one GET per task")
        return {**found, task_id: direct} if self._listed_full else {task_id: direct}

    async def _walk(
        self, tag: str, waiters: dict[str, _Waiter], unchanged: dict[str, _Waiter]
    ) -> None:
        """Answer ``waiters`` from the listing of ``tag``, popping each one seen.

        A waiter whose task shows the state it knows moves to ``unchanged``.
        """
        token: str | None = None
        tokens: set[str] = set()
        pages = 0
        while waiters:
            try:
                page = await self._page({RUN_TAG: tag}, token)
            except TesUnavailable as exc:
                self._failed_walks += 1
                if self._failed_walks < _FAILED_WALKS:
                    log.warning("listing tasks failed; asking again at the next walk: %s", exc)
                    unchanged.update(waiters)  # the next walk answers them
                else:
                    self._failed_walks = 0
                    log.warning("listing tasks failed again; one GET per waiting task: %s", exc)
                return
            except TesApiError as exc:
                log.warning("TES server refused listing tasks (%s): polling each task", exc)
                self._mode = "per-task"
                return
            pages += 1
            self._failed_walks = 0
            for task_id, state in page.states:
                waiter = waiters.pop(task_id, None)
                if waiter is None or waiter.future.done():
                    continue
                if state is waiter.known:
                    unchanged[task_id] = waiter
                elif state is State.COMPLETE:
                    waiter.completed = True  # woken once its FULL view was listed
                else:
                    waiter.future.set_result(state)
            token = page.next_page_token
            if not token or token in tokens or pages >= len(waiters):
                break  # the rest (if any) cost no more as one GET each
            tokens.add(token)

    async def _page(self, tags: Mapping[str, str], token: str | None) -> StatePage:
        """One MINIMAL page, as large as the server accepts."""
        query = TaskQuery.of(tags=tags, page_token=token)
        try:
            return await self._client.list_states(TaskQuery.of(query, page_size=self._page_size))
        except TesApiError as exc:
            if exc.status != 400 or self._page_size is None:
                raise
        self._page_size = None  # the server refuses our page size: use its default
        return await self._client.list_states(query)


def _by_tag(batch: Mapping[str, _Waiter], tags: Mapping[str, str]) -> dict[str, dict[str, _Waiter]]:
    groups: dict[str, dict[str, _Waiter]] = {}
    for task_id, waiter in batch.items():
        if (tag := tags.get(task_id)) is not None:
            groups.setdefault(tag, {})[task_id] = waiter
    return groups


def _release(waiters: Iterable[_Waiter]) -> None:
    """Tell each waiter still pending to read its task itself."""
    for waiter in waiters:
        if not waiter.future.done():
            waiter.future.set_result(None)
