"""What a run report shows: frozen values built from what a recorder observed.

Times are seconds since the recorder started (client clock, so at the poll
resolution). The JSON form is compact (short keys, rounded times) because a
10,000-task report must stay under 5 MB.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FINAL_STATES = ("COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED")
FAILED_STATES = ("EXECUTOR_ERROR", "SYSTEM_ERROR", "NOT_SUBMITTED", "UNKNOWN")
TAIL_LINES = 20
TAIL_CHARS = 2000
MAX_OUTPUTS = 8


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One task as the report draws it.

    ``events`` are ``(state, seconds)`` in the order observed; ``staging`` is
    when staging of its inputs began (None when the recorder was not told).
    ``state`` is the last state seen; ``interrupted`` when the run stopped
    before the task ended.
    """

    name: str
    id: str
    state: str
    staging: float | None
    events: tuple[tuple[str, float], ...]
    exit_codes: tuple[int | None, ...] = ()
    outputs: tuple[tuple[str, str], ...] = ()
    stderr_tail: str = ""
    system_logs: str = ""
    error: str = ""
    interrupted: bool = False

    @property
    def start(self) -> float:
        """When the row begins: staging, else the first observed state."""
        if self.staging is not None:
            return self.staging
        return self.events[0][1] if self.events else 0.0

    def seconds_in(self, state: str, end: float) -> float:
        """Total time observed in ``state`` (an unfinished phase lasts until ``end``)."""
        total = 0.0
        for (name, at), after in zip(self.events, [*self.events[1:], None], strict=True):
            if name == state:
                total += (after[1] if after else end) - at
        return total


@dataclass(frozen=True, slots=True)
class Transfers:
    """Bytes and files seen while local inputs were staged."""

    files_found: int = 0
    files_cached: int = 0
    bytes_hashed: int = 0
    bytes_uploaded: int = 0
    files_uploaded: int = 0
    bytes_present: int = 0
    files_present: int = 0
    inputs_staged: int = 0
    inputs_reused: int = 0  # staged without an upload by this run (present, or shared)

    @property
    def dedup_ratio(self) -> float | None:
        """Share of staged bytes already at their content address (None: nothing staged)."""
        total = self.bytes_uploaded + self.bytes_present
        return self.bytes_present / total if total else None


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    """Everything one report file shows."""

    title: str
    started_at: str  # ISO 8601 UTC, wall clock
    wall_seconds: float
    outcome: str  # "completed", "failed", "interrupted", "running"
    tasks: tuple[TaskRow, ...]
    transfers: Transfers
    requests: tuple[int, int] | None = None  # (requests sent, retries) when known
    error: str = ""

    def by_state(self) -> dict[str, int]:
        """Task count per last observed state, most frequent first."""
        counts: dict[str, int] = {}
        for row in self.tasks:
            counts[row.state] = counts.get(row.state, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def phase_totals(self) -> dict[str, float]:
        """Total seconds all tasks spent QUEUED and RUNNING."""
        end = self.wall_seconds
        return {
            state: sum(row.seconds_in(state, end) for row in self.tasks)
            for state in ("QUEUED", "RUNNING")
        }


def tail(text: str, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> str:
    """The last ``lines`` non-empty lines of ``text``, at most ``chars`` characters."""
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return "\n".join(kept)[-chars:]


def to_json(snapshot: RunSnapshot) -> dict[str, Any]:
    """The compact document the report's script reads."""
    totals = snapshot.phase_totals()
    count = len(snapshot.tasks) or 1
    return {
        "title": snapshot.title,
        "started": snapshot.started_at,
        "wall": round(snapshot.wall_seconds, 3),
        "outcome": snapshot.outcome,
        "error": snapshot.error,
        "states": snapshot.by_state(),
        "queued": {"total": round(totals["QUEUED"], 3), "mean": round(totals["QUEUED"] / count, 3)},
        "running": {
            "total": round(totals["RUNNING"], 3),
            "mean": round(totals["RUNNING"] / count, 3),
        },
        "transfers": _transfers_json(snapshot.transfers),
        "requests": list(snapshot.requests) if snapshot.requests is not None else None,
        "tasks": [_row_json(row) for row in snapshot.tasks],
    }


def _transfers_json(t: Transfers) -> dict[str, Any]:
    return {
        "filesFound": t.files_found,
        "filesCached": t.files_cached,
        "hashed": t.bytes_hashed,
        "uploaded": t.bytes_uploaded,
        "filesUploaded": t.files_uploaded,
        "present": t.bytes_present,
        "filesPresent": t.files_present,
        "inputs": t.inputs_staged,
        "reused": t.inputs_reused,
        "dedup": None if t.dedup_ratio is None else round(t.dedup_ratio, 4),
    }


def _row_json(row: TaskRow) -> dict[str, Any]:
    # Short keys and only what is set: this is most of a big report's bytes.
    doc: dict[str, Any] = {
        "n": row.name,
        "i": row.id,
        "s": row.state,
        "e": [[state, round(at, 3)] for state, at in row.events],
    }
    optional: Mapping[str, Any] = {
        "g": None if row.staging is None else round(row.staging, 3),
        "x": list(row.exit_codes) or None,
        "o": [list(pair) for pair in row.outputs] or None,
        "t": row.stderr_tail or None,
        "l": row.system_logs or None,
        "r": row.error or None,
        "u": 1 if row.interrupted else None,
    }
    doc.update({key: value for key, value in optional.items() if value is not None})
    return doc
