"""A task's directory tree on the host, and the mounts that show it to the sandbox.

Each task gets ``<work>/tasks/<id>/root``, which mirrors its container paths:
the container path ``/data/in.txt`` is the host file ``root/data/in.txt``.
Every top-level directory the task names is bound writable into the
sandbox, with the inputs bound read-only on top (see :func:`plan_mounts`);
:func:`prepare_dirs` creates the directories executors expect before they
run. Container paths are validated names: '.', '..' and empty names are
refused here again (:class:`~tesengine.errors.StagingError`), never rewritten.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..errors import StagingError
from .runtime.base import Mount
from .task_doc import TaskDoc
from .task_request import before_wildcard, has_wildcard

__all__ = ["MAX_INPUT_BINDS", "host_path", "plan_mounts", "prepare_dirs"]


def host_path(root: Path, container: str) -> Path:
    """The host path of ``container`` (absolute, validated) under ``root``."""
    return root / "/".join(_segments(container))


def _segments(container: str) -> list[str]:
    """The names in ``container``; '.', '..' and empty names are refused, never rewritten."""
    parts = container.strip("/").split("/") if container.strip("/") else []
    if any(p in ("", ".", "..") for p in parts):
        raise StagingError(f"container path {container!r} is ambiguous ('.', '..' or '//')")
    return parts


def _top(container: str) -> str:
    parts = _segments(container)
    return parts[0] if parts else ""


#: Read-only binds beyond which inputs are grouped by directory (bubblewrap takes 9000
#: arguments in all, three per bind; docker's argv grows too).
MAX_INPUT_BINDS = 256


def plan_mounts(root: Path, doc: TaskDoc, reserved: frozenset[str]) -> tuple[Mount, ...]:
    """Writable binds of each top-level directory the task names, then read-only inputs.

    ``/tmp`` is always bound (from the task's root, not the host). A path
    under a ``reserved`` directory (the sandbox's system dirs) is refused.
    Each input is bound read-only on its own while there are few; past
    :data:`MAX_INPUT_BINDS`, inputs are bound by the highest directory that
    holds nothing the task must write, and inputs that still cannot be
    grouped stay writable copies in the task's tree (never one argument each).
    """
    tops = {"tmp"}
    for container in _container_paths(doc):
        top = _top(container)
        if top in reserved:
            raise StagingError(
                f"container path {container} is under /{top}, which the runtime keeps read-only"
            )
        tops.add(top)
    mounts = [Mount(root / top, f"/{top}", read_only=False) for top in sorted(tops)]
    mounts += [Mount(host_path(root, p), p, read_only=True) for p in _input_binds(doc)]
    return tuple(mounts)


def _input_binds(doc: TaskDoc) -> list[str]:
    """Container paths to bind read-only (outermost first) so that every input is covered."""
    paths = sorted({"/" + "/".join(_segments(i["path"])) for i in doc.get("inputs", ())})
    if len(paths) > MAX_INPUT_BINDS:
        writable = _writable_dirs(doc)
        paths = sorted({_group(p, writable) for p in paths})
    binds: list[str] = []
    for path in sorted(paths, key=lambda p: (p.count("/"), p)):
        if not any(path.startswith(b + "/") for b in binds):
            binds.append(path)
    return binds[:MAX_INPUT_BINDS]


def _group(path: str, writable: frozenset[str]) -> str:
    """The highest ancestor of ``path`` (or itself) with nothing writable at or under it."""
    parts = path.strip("/").split("/")
    for depth in range(1, len(parts) + 1):
        candidate = "/" + "/".join(parts[:depth])
        if not any(w == candidate or w.startswith(candidate + "/") for w in writable):
            return candidate
    return path


def _writable_dirs(doc: TaskDoc) -> frozenset[str]:
    """Container directories the task must be able to write in."""
    dirs = {"/tmp", *doc.get("volumes", ())}  # noqa: S108 - the task's own /tmp
    for output in doc.get("outputs", ()):
        path = output["path"]
        if has_wildcard(path):
            path = before_wildcard(path)
            dirs.add(path.rsplit("/", 1)[0] or "/")
        elif output.get("type") == "DIRECTORY":
            dirs.add(path)
        else:
            dirs.add(path.rsplit("/", 1)[0] or "/")
    for executor in doc["executors"]:
        if executor.get("workdir"):
            dirs.add(executor["workdir"])
        for key in ("stdout", "stderr"):
            if executor.get(key):
                dirs.add(executor[key].rsplit("/", 1)[0] or "/")
    # The sandbox's own root is not the task's to write: "/" blocks nothing.
    return frozenset(d.rstrip("/") for d in dirs if d.rstrip("/"))


def _container_paths(doc: TaskDoc) -> Iterator[str]:
    for item in doc.get("inputs", ()):
        yield item["path"]
    for output in doc.get("outputs", ()):
        yield output["path"]
    yield from doc.get("volumes", ())
    for executor in doc["executors"]:
        for key in ("workdir", "stdin", "stdout", "stderr"):
            if executor.get(key) and executor[key] != "/":
                yield executor[key]


def prepare_dirs(root: Path, doc: TaskDoc) -> None:
    """Create the directories executors expect: volumes, workdirs, output parents."""
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    for volume in doc.get("volumes", ()):
        host_path(root, volume).mkdir(parents=True, exist_ok=True)
    for output in doc.get("outputs", ()):
        path = output["path"]
        if has_wildcard(path):
            static = before_wildcard(path)
            target = host_path(root, static.rsplit("/", 1)[0] or "/")
        elif output.get("type") == "DIRECTORY":
            target = host_path(root, path)
        else:
            target = host_path(root, path).parent
        target.mkdir(parents=True, exist_ok=True)
    for executor in doc["executors"]:
        if executor.get("workdir"):
            host_path(root, executor["workdir"]).mkdir(parents=True, exist_ok=True)
        for key in ("stdout", "stderr"):
            if executor.get(key):
                host_path(root, executor[key]).parent.mkdir(parents=True, exist_ok=True)
    for top in {_top(p) for p in _container_paths(doc)}:
        (root / top).mkdir(parents=True, exist_ok=True)
