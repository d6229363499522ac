"""Event hooks: what the CLI renders and a workflow runner can subscribe to."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..digest import DigestProgress
from ..storage import StagingProgress
from ..tes.models import State

if TYPE_CHECKING:
    from ..storage import StageResult

log = logging.getLogger("tesengine.engine")


class RunInfo(Protocol):
    """What a hook may read of a run (a :class:`~tesengine.TaskRun` is one)."""

    @property
    def name(self) -> str:
        """The task's name."""
        ...

    @property
    def id(self) -> str:
        """The server's task id."""
        ...

    @property
    def state(self) -> State:
        """The last state observed."""
        ...


@runtime_checkable
class EngineEvents(Protocol):
    """Hooks called on the event loop; they must return quickly and not raise."""

    def task_submitted(self, run: RunInfo) -> None:
        """A task was created on the server."""

    def task_state(self, run: RunInfo, state: State) -> None:
        """A poll observed a new state for ``run``."""

    def input_staged(self, result: StageResult) -> None:
        """A local input is at its content address (uploaded or already there)."""


class TransferProgress(DigestProgress, StagingProgress, Protocol):
    """Bytes hashed and uploaded while local inputs are staged (a progress bar's feed)."""


class NullEvents:
    """Ignores every event."""

    def task_submitted(self, run: RunInfo) -> None:
        pass

    def task_state(self, run: RunInfo, state: State) -> None:
        pass

    def input_staged(self, result: StageResult) -> None:
        pass


def emit(hook: Callable[..., None], *args: object) -> None:
    """Call ``hook``; a failing hook is logged, never allowed to break a task."""
    try:
        hook(*args)
    except Exception:
        log.exception("event hook %s failed", getattr(hook, "__qualname__", hook))
