"""The runtime hook: how one executor of a task is run.

A runtime receives an :class:`ExecRequest` whose paths are already staged on
the host (the task's root directory mirrors the container paths) and returns
the exit code. Cancelling :meth:`Runtime.run` must kill every process the
executor started before it returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["ExecRequest", "Mount", "Runtime", "RuntimeUnavailable"]

from ...errors import TesEngineError


class RuntimeUnavailable(TesEngineError):
    """The chosen runtime cannot run here (missing tool, no daemon...)."""


@dataclass(frozen=True, slots=True)
class Mount:
    """A host path made visible at ``container`` inside the executor."""

    host: Path
    container: str
    read_only: bool


@dataclass(frozen=True, slots=True)
class ExecRequest:
    """One executor, ready to run.

    ``stdin`` is a host file or None; ``stdout`` and ``stderr`` are host files
    the runtime writes the streams to.
    """

    task_id: str
    index: int
    image: str
    command: tuple[str, ...]
    workdir: str | None
    env: Mapping[str, str]
    mounts: tuple[Mount, ...]
    stdin: Path | None
    stdout: Path
    stderr: Path


class Runtime(Protocol):
    """Runs executors. ``stages_files`` False means inputs and outputs are skipped."""

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

    async def run(self, request: ExecRequest) -> int:
        """Run the executor to completion and return its exit code."""
        ...
