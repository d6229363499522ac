"""The parameters of a ListTasks request, as one frozen value, and a lean page of states."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from .models import State, View

__all__ = ["StatePage", "TaskQuery", "TaskQueryFields"]


class TaskQueryFields(TypedDict, total=False):
    """The ListTasks parameters as keyword arguments (see :class:`TaskQuery`)."""

    name_prefix: str | None
    state: State | str | None
    tags: Mapping[str, str] | None
    view: View | str
    page_size: int | None
    page_token: str | None


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """The parameters of ListTasks (``GET /tasks``), in one value.

    Build one with :meth:`of` (which accepts a state by name and tags as a
    mapping). Tag filters are sent as ``tag_key``/``tag_value`` pairs, in
    order; a server ANDs them.
    """

    name_prefix: str | None = None
    state: State | None = None
    tags: tuple[tuple[str, str], ...] = ()
    view: View = View.MINIMAL
    page_size: int | None = None
    page_token: str | None = None

    @classmethod
    def of(cls, base: TaskQuery | None = None, **fields: Unpack[TaskQueryFields]) -> TaskQuery:
        """``base`` (or the empty query) with ``fields`` changed."""
        changes: dict[str, Any] = dict(fields)
        if "state" in changes and changes["state"] is not None:
            changes["state"] = State.parse(changes["state"])
        if "tags" in changes:
            changes["tags"] = tuple((changes["tags"] or {}).items())
        if "view" in changes:
            changes["view"] = View(changes["view"])
        for key in ("name_prefix", "page_token"):
            if key in changes:
                changes[key] = changes[key] or None  # "" is no filter, no token
        return dataclasses.replace(base or cls(), **changes)

    def page(self, token: str | None) -> TaskQuery:
        """The same query for the page ``token`` names."""
        return dataclasses.replace(self, page_token=token)

    def params(self) -> list[tuple[str, str]]:
        """The query string's pairs, in the order they are sent."""
        pairs: list[tuple[str, str]] = [("view", self.view.value)]
        if self.name_prefix:
            pairs.append(("name_prefix", self.name_prefix))
        if self.state is not None:
            pairs.append(("state", self.state.value))
        for key, value in self.tags:
            pairs += [("tag_key", key), ("tag_value", value)]
        if self.page_size is not None:
            pairs.append(("page_size", str(self.page_size)))
        if self.page_token:
            pairs.append(("page_token", self.page_token))
        return pairs


@dataclass(frozen=True, slots=True)
class StatePage:
    """One page of a MINIMAL listing: ``(task id, state)`` pairs and the next token."""

    states: tuple[tuple[str, State], ...]
    next_page_token: str | None = None
