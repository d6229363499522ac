"""Every state change a task of ``tesengine serve`` can make, as one pure function.

::

    QUEUED --start--> INITIALIZING --staged--> RUNNING --succeeded--> COMPLETE
                           |                      |--executor_failed--> EXECUTOR_ERROR
                           +-----system_failed----+--system_failed----> SYSTEM_ERROR
    QUEUED --cancel--> CANCELED
    INITIALIZING, RUNNING, PAUSED --cancel--> CANCELING --stopped--> CANCELED

A canceled task whose run ends any other way (it finished before the
cancel reached it) is CANCELED too. At start-up (``restarted``) a queued
task stays QUEUED and runs again, an active one is SYSTEM_ERROR, a
canceling one CANCELED. Canceling a final or canceling task changes
nothing. Any other pair is a server bug: :class:`IllegalTransition`.
"""

from __future__ import annotations

from enum import StrEnum

from ..errors import IllegalTransition
from ..tes.models import State

__all__ = ["TRANSITIONS", "Event", "advance"]


class Event(StrEnum):
    """What happens to a task."""

    START = "start"
    """The scheduler gave the task its CPU slots: staging begins."""
    STAGED = "staged"
    """The inputs are in place: the executors run."""
    SUCCEEDED = "succeeded"
    """Every executor ran and the outputs are uploaded."""
    EXECUTOR_FAILED = "executor_failed"
    """An executor exited non-zero without ``ignore_error``."""
    SYSTEM_FAILED = "system_failed"
    """Staging, an upload, a runtime or the server failed (or shut down)."""
    CANCEL = "cancel"
    """A client asked to cancel the task."""
    STOPPED = "stopped"
    """Every process of a canceling task is gone."""
    RESTARTED = "restarted"
    """The server started again and found the task in its database."""


_ACTIVE = (State.INITIALIZING, State.RUNNING, State.PAUSED)
_RUN_ENDS = (Event.SUCCEEDED, Event.EXECUTOR_FAILED, Event.SYSTEM_FAILED, Event.STOPPED)


def _table() -> dict[tuple[State, Event], State]:
    table = {
        (State.QUEUED, Event.START): State.INITIALIZING,
        (State.QUEUED, Event.CANCEL): State.CANCELED,
        (State.QUEUED, Event.RESTARTED): State.QUEUED,
        (State.INITIALIZING, Event.STAGED): State.RUNNING,
        (State.INITIALIZING, Event.SYSTEM_FAILED): State.SYSTEM_ERROR,
        (State.RUNNING, Event.SUCCEEDED): State.COMPLETE,
        (State.RUNNING, Event.EXECUTOR_FAILED): State.EXECUTOR_ERROR,
        (State.RUNNING, Event.SYSTEM_FAILED): State.SYSTEM_ERROR,
        (State.CANCELING, Event.CANCEL): State.CANCELING,
        (State.CANCELING, Event.RESTARTED): State.CANCELED,
        (State.UNKNOWN, Event.CANCEL): State.CANCELED,
        (State.UNKNOWN, Event.RESTARTED): State.UNKNOWN,
    }
    table |= {(state, Event.CANCEL): State.CANCELING for state in _ACTIVE}
    table |= {(state, Event.RESTARTED): State.SYSTEM_ERROR for state in _ACTIVE}
    table |= {(State.CANCELING, event): State.CANCELED for event in _RUN_ENDS}
    # A final state stays as it is: canceling it, or finding it at start-up, changes nothing.
    unchanged = (Event.CANCEL, Event.RESTARTED)
    table |= {(state, event): state for state in State if state.is_final for event in unchanged}
    return table


TRANSITIONS: dict[tuple[State, Event], State] = _table()
"""``(state, event) -> next state`` for every legal pair."""


def advance(state: State, event: Event) -> State:
    """The state a task in ``state`` moves to on ``event``; :class:`IllegalTransition` if none."""
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise IllegalTransition(f"a {state} task cannot take the event {event.value!r}") from None
