"""One task record: a full document in memory, or only its BASIC view with the rest on disk."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..tes.models import State
from .task_doc import TaskDoc
from .views import basic_view

__all__ = ["TaskRecord"]

log = logging.getLogger("tesengine.server.store")


class TaskRecord:
    """One task: its creation sequence number and its FULL-view document.

    ``doc`` is the full document (read back from the database on demand when
    only the summary is in memory); ``summary`` is whatever is in memory, good
    for the state, the filters and the MINIMAL and BASIC views.
    """

    __slots__ = ("_full", "_light", "_loader", "id", "pins", "seq", "size")

    def __init__(
        self,
        seq: int,
        doc: TaskDoc,
        loader: Callable[[TaskRecord], TaskDoc] | None = None,
        size: int = 0,
    ) -> None:
        self.seq = seq
        self.id = str(doc["id"])
        self._full: TaskDoc | None = doc
        self._light: TaskDoc | None = None
        self._loader = loader
        self.pins = 0
        self.size = size

    @property
    def doc(self) -> TaskDoc:
        """The full document; loaded from the database if only the summary is held."""
        if self._full is None:
            assert self._loader is not None
            log.debug("task %s: full document read back on the event loop", self.id)
            self._full = self._loader(self)
        return self._full

    @property
    def summary(self) -> TaskDoc:
        """The full document if in memory, else its BASIC view."""
        if self._full is not None:
            return self._full
        assert self._light is not None
        return self._light

    @property
    def loaded(self) -> bool:
        """True when the full document is in memory."""
        return self._full is not None

    @property
    def state(self) -> State:
        """The task state (UNKNOWN for a stored string that is none)."""
        return State.parse(self.summary["state"])

    def shrink(self) -> None:
        """Keep only the BASIC view in memory (the full document is in the database)."""
        if self._full is not None:
            self._light = basic_view(self._full)
            self._full = None

    def fill(self, doc: TaskDoc) -> None:
        """Hold ``doc`` (read back from the database) as the full document."""
        if self._full is None:
            self._full = doc
            self._light = None
