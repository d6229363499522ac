"""An executor's streams and binds on the host, opened without trusting the task.

Between two executors the task's own files may have become links to host
files, FIFOs or directories. Before each executor, every bind source is
checked to be reached without links (nothing of the task runs between
executors, so the check holds when bwrap binds it), and the ``stdin``,
``stdout`` and ``stderr`` files are opened below the task's root with
:func:`~tesengine.server.safe_open.open_beneath`: never followed, never
blocking, regular files only. Streams without a container path go to the
server's own log directory, which the task cannot see.

A runtime that runs no process (``stages_files`` False: the noop runtime) gets
:data:`NO_STREAMS` and no descriptor at all: with 100,000 tasks in flight, three
opens of ``/dev/null`` each would exhaust the server's descriptor limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .runtime.base import NO_FD, ExecSpec
from .safe_open import UnsafePath, check_beneath, close_quietly, open_beneath, read_tail
from .task_doc import ExecutorDoc

__all__ = ["NO_STREAMS", "Streams", "open_streams", "read_tails"]


@dataclass(frozen=True, slots=True)
class Streams:
    """Open descriptors for one executor, and where its output went (for the tails)."""

    #: Descriptors, or :data:`~.runtime.base.NO_FD` each in :data:`NO_STREAMS`.
    stdin: int
    stdout: int
    stderr: int
    #: (directory, relative path) of stdout and stderr, to read their tails from.
    out_at: tuple[Path, str]
    err_at: tuple[Path, str]

    def close(self) -> None:
        """Close the three descriptors (nothing for :data:`NO_STREAMS`)."""
        if self is not NO_STREAMS:
            close_quietly(self.stdin, self.stdout, self.stderr)


#: The streams of an executor whose runtime runs no process: nothing opened, no tails.
NO_STREAMS = Streams(NO_FD, NO_FD, NO_FD, (Path(os.devnull), ""), (Path(os.devnull), ""))


def open_streams(root: Path, logs_dir: Path, spec: ExecSpec, executor: ExecutorDoc) -> Streams:
    """Check the binds and open the streams of executor ``spec`` (blocking: run in a thread)."""
    index, mounts = spec.index, spec.mounts
    field = f"executors[{index}]"
    for mount in mounts:
        try:
            check_beneath(root, mount.container)
        except UnsafePath as exc:
            raise UnsafePath(f"{field}: cannot bind {exc}") from None
    opened: list[int] = []
    try:
        stdin = executor.get("stdin")
        opened.append(
            _open(root, stdin, f"{field}.stdin", write=False)
            if stdin
            else os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        )
        places = []
        for key, container in (
            ("stdout", executor.get("stdout")),
            ("stderr", executor.get("stderr")),
        ):
            base, rel = (root, container) if container else (logs_dir, f"/{index}.{key}")
            opened.append(_open(base, rel, f"{field}.{key}", write=True))
            places.append((base, rel))
    except BaseException:
        close_quietly(*opened)
        raise
    return Streams(opened[0], opened[1], opened[2], places[0], places[1])


def _open(base: Path, container: str, field: str, *, write: bool) -> int:
    try:
        return open_beneath(base, container, write=write)
    except UnsafePath as exc:
        raise UnsafePath(f"{field}: {exc}") from None


def read_tails(streams: Streams, limit: int) -> tuple[str, str]:
    """The last ``limit`` bytes of stdout and stderr (blocking: run in a thread)."""
    if streams is NO_STREAMS:
        return "", ""
    return read_tail(*streams.out_at, limit), read_tail(*streams.err_at, limit)
