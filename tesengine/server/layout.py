"""Create-time check that a task's file inputs do not sit where it needs directories.

The local runtime builds the task's tree before staging: ``/tmp``, volumes,
workdirs, DIRECTORY outputs and the parent of every path the task names are
directories. A FILE input (``content`` or a file URL) at one of those paths
can never be written; it is refused with a 400 naming the field rather than
ending as a bare ``IsADirectoryError`` in the system log.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import InvalidTask
from .task_doc import TaskRequestDoc
from .task_request import has_wildcard

__all__ = ["check_input_layout"]


def check_input_layout(doc: TaskRequestDoc) -> None:
    """Raise :class:`InvalidTask` for a FILE input at a path the task uses as a directory."""
    dirs = set(_directories(doc))
    for i, item in enumerate(doc.get("inputs", ())):
        if item.get("type") == "DIRECTORY" and not item.get("content"):
            continue
        path = _norm(item["path"])
        if path in dirs:
            raise InvalidTask(
                f"inputs[{i}].path: {path} is a directory in this task (the server's /tmp,"
                " a volume, a workdir, a DIRECTORY or the parent of another path),"
                " so a file cannot be written there"
            )


def _norm(path: str) -> str:
    return "/" + path.strip("/")


def _directories(doc: TaskRequestDoc) -> Iterator[str]:
    yield "/tmp"  # noqa: S108 - the task's own /tmp, always a directory
    yield from (_norm(v) for v in doc.get("volumes", ()))
    for item in doc.get("inputs", ()):
        if item.get("type") == "DIRECTORY" and not item.get("content"):
            yield _norm(item["path"])
        yield from _ancestors(item["path"])
    for output in doc.get("outputs", ()):  # an output has no content
        if output.get("type") == "DIRECTORY":
            yield _norm(output["path"])
        yield from _ancestors(output["path"])
    for executor in doc.get("executors", ()):
        if executor.get("workdir"):
            yield _norm(executor["workdir"])
        for key in ("workdir", "stdin", "stdout", "stderr"):
            if executor.get(key):
                yield from _ancestors(executor[key])
    for volume in doc.get("volumes", ()):
        yield from _ancestors(volume)


def _ancestors(path: str) -> Iterator[str]:
    """The directories above ``path`` (up to its first wildcard)."""
    parts = [p for p in path.split("/") if p][:-1]
    for depth in range(1, len(parts) + 1):
        if has_wildcard(parts[depth - 1]):
            return
        yield "/" + "/".join(parts[:depth])
