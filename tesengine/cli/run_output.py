"""What one task run by ``tesengine run`` prints of its own: stdout, stderr, exit status.

Like ``docker run``, the executors' stdout goes to our stdout and their stderr
to our stderr: the full captured logs (``<prefix>/_logs/<i>.stdout``), else the
server's tails when the logs were not captured.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass

from ..engine import TaskResult, TesBackend
from ..errors import TaskFailed, TesEngineError
from .safe_text import make_visible

__all__ = ["CommandStreams", "command_streams", "failed_streams", "task_exit_status"]

EXIT_FAILED = 1


@dataclass(frozen=True, slots=True)
class CommandStreams:
    """Every executor's stdout and stderr, in executor order."""

    stdout: bytes
    stderr: bytes

    @property
    def stdout_text(self) -> str:
        """stdout decoded (invalid UTF-8 replaced), for ``--json``."""
        return self.stdout.decode(errors="replace")

    @property
    def stderr_text(self) -> str:
        """stderr decoded (invalid UTF-8 replaced), for ``--json``."""
        return self.stderr.decode(errors="replace")

    def write(self) -> None:
        """Write them to our own stdout and stderr: as bytes to a file or pipe, with
        control characters made visible to a terminal (the task wrote them)."""
        for data, stream in ((self.stdout, sys.stdout), (self.stderr, sys.stderr)):
            if not data:
                continue
            if stream.isatty():
                stream.write(make_visible(data.decode(errors="replace")))
                stream.flush()
                continue
            stream.flush()
            stream.buffer.write(data)
            stream.buffer.flush()


async def command_streams(result: TaskResult) -> CommandStreams:
    """The full stdout and stderr of every executor of ``result``."""
    out: list[bytes] = []
    err: list[bytes] = []
    for index, executor in enumerate(result.executors):
        out.append(await _captured(result, f"{index}.stdout", executor.stdout))
        err.append(await _captured(result, f"{index}.stderr", executor.stderr))
    return CommandStreams(b"".join(out), b"".join(err))


async def _captured(result: TaskResult, name: str, tail: str) -> bytes:
    if result.logs is None:
        return tail.encode()
    try:
        return await result.logs.file(name).read_bytes()
    except TesEngineError:
        return tail.encode()  # not captured (e.g. a server without the log output)


async def failed_streams(backend: TesBackend, exc: TaskFailed) -> CommandStreams | None:
    """A failed task's stdout and stderr: the captured logs where the server kept
    them, else its tails (a server may not deliver any output of a failed task)."""
    try:
        logs = await backend.logs(exc.task_id)
    except TesEngineError:
        return None
    out = b"".join(e.stdout for e in logs.executors)
    err = b"".join(e.stderr for e in logs.executors)
    if not out and not err:
        return None  # nothing to show: the failure's one line says it all
    return CommandStreams(out, err)


def task_exit_status(outcomes: Iterable[TaskResult | BaseException]) -> int:
    """The first failed executor's exit code (clamped to 1-255), else 1."""
    for outcome in outcomes:
        if isinstance(outcome, TaskFailed):
            for code in outcome.exit_codes:
                if code:
                    return min(max(code, 1), 255)
    return EXIT_FAILED
