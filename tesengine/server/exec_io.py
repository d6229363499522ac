"""An executor's streams and binds on the host, opened without trusting the task.

Between two executors the task's own files may have become links to host
files, FIFOs or directories. Before each executor, every bind source is
checked to be reached without links (nothing of the task runs between
executors, so the check holds when bwrap binds it), and the ``stdin``,
``stdout`` and ``stderr`` files are opened below the task's root with
:func:`~tesengine.server.safe_open.open_beneath`: never followed, never
blocking, regular files only. Streams without a container path go to the
server's own log directory, which the task cannot see.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .runtime.base import ExecSpec
from .safe_open import UnsafePath, check_beneath, close_quietly, open_beneath, read_tail
from .task_doc import ExecutorDoc

__all__ = ["Streams", "open_streams", "read_tails"]


@dataclass(frozen=True, slots=True)
class Streams:
    """Open descriptors for one executor, and where its output went (for the tails)."""

    stdin: int
    stdout: int
    stderr: int
    #: (directory, relative path) of stdout and stderr, to read their tails from.
    out_at: tuple[Path, str]
    err_at: tuple[Path, str]

    def close(self) -> None:
        """Close the three descriptors."""
        close_quietly(self.stdin, self.stdout, self.stderr)


def open_streams(
    root: Path,
    logs_dir: Path,
    spec: ExecSpec,
    executor: ExecutorDoc,
    stages: bool,
) -> Streams:
    """Check the binds and open the streams of executor ``spec`` (blocking: run in a thread)."""
    index, mounts = spec.index, spec.mounts
    field = f"executors[{index}]"
    if not stages:
        null = os.devnull
        null_in = os.open(null, os.O_RDONLY | os.O_CLOEXEC)
        out, err = (os.open(null, os.O_WRONLY | os.O_CLOEXEC) for _ in range(2))
        return Streams(null_in, out, err, (Path("/"), null), (Path("/"), null))
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
    out = read_tail(*streams.out_at, limit) if streams.out_at[1] != os.devnull else ""
    err = read_tail(*streams.err_at, limit) if streams.err_at[1] != os.devnull else ""
    return out, err
