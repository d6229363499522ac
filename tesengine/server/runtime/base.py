"""The runtime hook: how one executor of a task is run.

A runtime receives an :class:`ExecRequest` whose paths are already staged on
the host (the task's root directory mirrors the container paths) and whose
streams are open descriptors (:data:`NO_FD` for a runtime that stages no files:
it runs no process, so none is opened for it), and returns the exit code.
Cancelling :meth:`Runtime.run` must kill every process the executor started
before it returns. :meth:`Runtime.preflight` is asked about every executor
before the task stages anything, so what can never run fails early and says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from ...errors import ExecutorRefused, RuntimeUnavailable

# The errors live in tesengine.errors; they are named here too, beside the hook that raises them.
__all__ = [
    "NO_FD",
    "ExecRequest",
    "ExecSpec",
    "ExecutorRefused",
    "Mount",
    "Runtime",
    "RuntimeUnavailable",
]

#: The stream descriptors a runtime with ``stages_files`` False is given: not a descriptor.
NO_FD: Final = -1


@dataclass(frozen=True, slots=True)
class Mount:
    """A host path made visible at ``container`` inside the executor."""

    host: Path
    container: str
    read_only: bool


@dataclass(frozen=True, slots=True)
class ExecSpec:
    """What one executor runs, and where (everything but its streams)."""

    task_id: str
    index: int
    image: str
    command: tuple[str, ...]
    workdir: str | None
    env: Mapping[str, str]
    mounts: tuple[Mount, ...]


@dataclass(frozen=True, slots=True)
class ExecRequest:
    """One executor, ready to run: ``stdin``, ``stdout``, ``stderr`` are open
    descriptors (owned and closed by the caller), or :data:`NO_FD` each when the
    runtime does not stage files."""

    spec: ExecSpec
    stdin: int
    stdout: int
    stderr: int


class Runtime(Protocol):
    """Runs executors. ``stages_files`` False means inputs and outputs are skipped and
    the executor gets no streams (:data:`NO_FD`): such a runtime runs no process."""

    name: str
    stages_files: bool
    #: Top-level container directories a task may not claim (system dirs).
    reserved: frozenset[str]

    def describe(self) -> str:
        """One line for service-info and the start-up banner."""
        ...

    async def check(self) -> None:
        """Raise :class:`RuntimeUnavailable` (saying how to fix it) when unusable."""
        ...

    def preflight(self, spec: ExecSpec) -> None:
        """Raise :class:`ExecutorRefused` (naming the field) when ``spec`` cannot run."""
        ...

    async def run(self, request: ExecRequest) -> int:
        """Run the executor to completion and return its exit code."""
        ...
