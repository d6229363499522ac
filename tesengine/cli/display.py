"""Progress for ``tesengine run``: a live line on a terminal, plain lines otherwise.

Progress goes to stderr so stdout stays the result (and ``--json`` stays JSON).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.status import Status

from ..errors import TaskFailed
from ..tes.models import State

if TYPE_CHECKING:
    from ..engine import TaskRun
    from ..storage import StageResult


class Display:
    """An :class:`~tesengine.engine.EngineEvents` hook that renders progress."""

    def __init__(self, *, quiet: bool = False) -> None:
        self._quiet = quiet
        self._console = Console(stderr=True, highlight=False)
        self._live = not quiet and sys.stderr.isatty()
        self._states: dict[str, State] = {}
        self._status: Status | None = None
        self._hashed = 0
        self._uploaded = 0

    def note(self, message: str) -> None:
        """One informational line (suppressed by --quiet)."""
        if not self._quiet:
            self._line(f"tesengine: {message}")

    def task_submitted(self, run: TaskRun) -> None:
        self._states[run.name] = run.state
        self._progress(f"submitted {run.name} (task {run.id})")

    def task_state(self, run: TaskRun, state: State) -> None:
        self._states[run.name] = state
        self._progress(f"{run.name}: {state.value}")

    def input_staged(self, result: StageResult) -> None:
        verb = "uploaded" if result.uploaded else "already present"
        self._progress(f"input {result.source} -> {result.url} ({verb})")

    # -- TransferProgress: bytes hashed and uploaded while inputs are staged --

    def files_found(self, count: int) -> None:
        pass

    def file_done(self, path: Path, cached: bool) -> None:
        pass

    def bytes_hashed(self, n: int) -> None:
        self._hashed += n
        self._refresh("hashing inputs")

    def bytes_uploaded(self, n: int) -> None:
        self._uploaded += n
        self._refresh("uploading inputs")

    def file_uploaded(self, url: str, size: int) -> None:
        pass

    def file_skipped(self, url: str, size: int) -> None:
        pass

    def failure(self, name: str, exc: BaseException) -> None:
        """A failed task: its one-line reason, then its stderr tail."""
        self._stop()
        print(f"tesengine: {exc}", file=sys.stderr)
        if isinstance(exc, TaskFailed) and exc.stderr_tail:
            for line in exc.stderr_tail.splitlines():
                print(f"  stderr | {line}", file=sys.stderr)

    def _progress(self, message: str) -> None:
        if self._quiet:
            return
        if not self._live:
            self._line(message)
            return
        self._refresh(message)
        if self._states and all(state.is_final for state in self._states.values()):
            self._stop()

    def _refresh(self, message: str) -> None:
        """Redraw the live line (a terminal only; plain output has no byte counters)."""
        if not self._live:
            return
        counts = Counter(state.value.lower() for state in self._states.values())
        parts = [f"{n} {state}" for state, n in sorted(counts.items())]
        if self._hashed:
            parts.append(f"{_size(self._hashed)} hashed")
        if self._uploaded:
            parts.append(f"{_size(self._uploaded)} uploaded")
        if self._status is None:
            self._status = self._console.status(message)
            self._status.start()
        self._status.update(f"{message}  [{', '.join(parts)}]")

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def _line(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
