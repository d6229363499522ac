"""A task's executor logs: the full streams captured under its prefix, else the server's tails.

Every task a backend creates delivers its executors' stdout and stderr as
files under ``<prefix>/_logs/`` (``0.stdout``, ``0.stderr``, ...). A server
may not deliver them (a failed task, a task of another client): then what
there is are the tails the server keeps in the task's logs, possibly
truncated. :class:`ExecutorLogs` says which one it holds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from ..errors import TesEngineError, UnsafeReply
from ..tes import models as wire
from .outputs import OutputReader, RemoteDirectory
from .recover import captured_logs_url

log = logging.getLogger("tesengine.engine")


@dataclass(frozen=True, slots=True)
class ExecutorLogs:
    """One executor's stdout and stderr."""

    index: int
    stdout: bytes
    stderr: bytes
    #: True: the whole streams the executor wrote; False: the server's (possibly cut) tails.
    captured: bool


@dataclass(frozen=True, slots=True)
class TaskLogs:
    """The logs of every executor of a task, in order."""

    task_id: str
    state: wire.State
    executors: tuple[ExecutorLogs, ...]

    @property
    def captured(self) -> bool:
        """True when any executor's logs are the captured streams."""
        return any(e.captured for e in self.executors)


class TaskGetter(Protocol):
    """Where the task comes from: a TES client or the embedded store."""

    async def get_task(self, task_id: str, view: wire.View = ...) -> wire.TesTask: ...


async def task_logs(
    source: TaskGetter, reader: OutputReader, outputs: str, task_id: str
) -> TaskLogs:
    """The logs of ``task_id``, whose captured logs lie under the ``outputs`` URL."""
    task = await source.get_task(task_id, wire.View.FULL)
    return await read_logs(task, _captured_dir(task, reader, outputs))


async def read_logs(task: wire.TesTask, captured: RemoteDirectory | None) -> TaskLogs:
    """``task``'s logs (FULL view): from ``captured`` where its files exist, else the tails."""
    last = task.logs[-1] if task.logs else None
    tails = list(last.logs) if last else []
    executors: list[ExecutorLogs] = []
    for index in range(max(len(task.executors), len(tails))):
        out = await _read(captured, f"{index}.stdout")
        err = await _read(captured, f"{index}.stderr")
        if out is not None or err is not None:
            executors.append(ExecutorLogs(index, out or b"", err or b"", captured=True))
        elif index < len(tails):
            tail = tails[index]
            stdout, stderr = (tail.stdout or "").encode(), (tail.stderr or "").encode()
            executors.append(ExecutorLogs(index, stdout, stderr, captured=False))
    return TaskLogs(task.id or "", task.current_state, tuple(executors))


def _captured_dir(task: wire.TesTask, reader: OutputReader, outputs: str) -> RemoteDirectory | None:
    try:
        url = captured_logs_url(task, outputs)
    except UnsafeReply as exc:
        log.warning("%s; showing the server's log tails instead", exc)
        return None
    return RemoteDirectory(url, reader) if url else None


async def _read(captured: RemoteDirectory | None, name: str) -> bytes | None:
    if captured is None:
        return None
    try:
        return await captured.file(name).read_bytes()
    except TesEngineError:
        return None  # not delivered (or not yet): the tail is what there is
