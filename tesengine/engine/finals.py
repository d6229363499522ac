"""The FULL views of newly completed tasks, read from listings instead of one GET each.

When a batched walk sees tasks turn COMPLETE, :func:`read_finals` lists
``GET /tasks?view=FULL&state=COMPLETE&tag_key=tesengine-run&tag_value=<tag>``
(newest first, pages of :data:`FULL_PAGE`) until every one of them was seen.
A server completing tasks roughly in the order they were created puts the
tasks that completed since the last walk on the first page; the walk stops
once it has read as many pages as tasks remain unseen, so a listing never
costs more requests than the per-task GETs it replaces.

Nothing here can change a result: a document is taken only for a wanted id
whose listed state is COMPLETE and which carries what a FULL view carries
(executors and task logs), so a server that ignores ``state`` or ``view``
costs requests, never correctness. Whatever is not found (or a listing that
fails) is left to one GET per task, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Set
from typing import Protocol

from ..errors import TesError
from ..tes.models import ListTasksResponse, State, TesTask, View
from ..tes.query import TaskQuery
from .request import RUN_TAG

__all__ = ["FULL_PAGE", "read_finals"]

log = logging.getLogger("tesengine.engine")

#: FULL views per page: far below the spec's 2047, since each view carries log tails
#: and one page must stay under ``max_response_bytes``.
FULL_PAGE = 256


async def read_finals(
    client: _Lister, tag: str, wanted: Set[str], page_size: int = FULL_PAGE
) -> dict[str, TesTask]:
    """The FULL views of the ``wanted`` COMPLETE tasks of run ``tag`` that a listing shows."""
    found: dict[str, TesTask] = {}
    query = TaskQuery.of(
        tags={RUN_TAG: tag}, state=State.COMPLETE, view=View.FULL, page_size=page_size
    )
    tokens: set[str] = set()
    pages = 0
    while len(found) < len(wanted):
        try:
            page = await client.list_tasks(query)
        except TesError as exc:  # the client already retried: GETs read the rest
            log.warning("listing completed tasks failed; one GET per task this time: %s", exc)
            break
        pages += 1
        for task in page.tasks:
            if task.id is not None and task.id in wanted and _is_full_complete(task):
                found[task.id] = task
        token = page.next_page_token
        if not token or token in tokens or pages >= len(wanted) - len(found):
            break  # the rest (if any) cost no more as one GET each
        tokens.add(token)
        query = query.page(token)
    return found


def _is_full_complete(task: TesTask) -> bool:
    # A MINIMAL or BASIC view passed off as FULL (a server ignoring ``view``) is not taken.
    return task.state is State.COMPLETE and bool(task.executors) and task.logs is not None


class _Lister(Protocol):
    async def list_tasks(self, query: TaskQuery | None = ...) -> ListTasksResponse: ...
