"""Where inputs go in the container, and which host files came from which URL.

Inputs are mounted under ``/mnt/miniwdl_task_inputs/in/_miniwdl_inputs/<n>/<name>``,
outside the task's container directory: that directory (the command, its
stdout and stderr, ``work/``) is collected as one directory output, and inputs
inside it would go back up with it. The depth (six components up to the name)
is what miniwdl's own ``<container_dir>/work/_miniwdl_inputs/<n>/`` paths have,
which its look-up of files inside an input Directory relies on.

:class:`UrlMemory` remembers every file downloaded from a task's outputs by
device and inode (so miniwdl's ``out/`` symlinks and hard links find it), with
its size and mtime: a later task that takes the file, or a directory made
only of such files, as an input gets the URL, and nothing is hashed or uploaded.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ...storage import join_url

INPUTS_DIR = "/mnt/miniwdl_task_inputs/in/_miniwdl_inputs"


def map_inputs(host_paths: Iterable[str], taken: dict[str, str]) -> dict[str, str]:
    """New host path -> container path entries for ``host_paths`` (``/``-suffixed: directories).

    ``taken`` is the map so far (container path -> host path). Paths from one
    host directory share a numbered subdirectory when their names do not
    collide with what it already holds, as miniwdl's own mapping does.
    """
    by_parent: dict[str, list[str]] = {}
    for host_path in host_paths:
        by_parent.setdefault(os.path.dirname(host_path.rstrip("/")), []).append(host_path)
    base = INPUTS_DIR
    added: dict[str, str] = {}
    for group in by_parent.values():
        slot = "0"
        if any(_target(base, slot, p) in taken for p in group):
            slot = str(len(taken) + len(added) + 1)
        for host_path in group:
            target = _target(base, slot, host_path)
            added[host_path] = target
            taken[target] = host_path
    return added


def _target(base: str, slot: str, host_path: str) -> str:
    name = os.path.basename(host_path.rstrip("/"))
    return f"{base}/{slot}/{name}" + ("/" if host_path.endswith("/") else "")


@dataclass(frozen=True, slots=True)
class _Origin:
    """A downloaded file: the output URL it came from, plus what it looked like then."""

    root: str  # the output's URL (a directory output's prefix, or a file output)
    rel: str  # path under root ("" for a file output)
    size: int
    mtime_ns: int

    @property
    def url(self) -> str:
        return join_url(self.root, self.rel) if self.rel else self.root


class UrlMemory:
    """Host files downloaded from storage, and the URLs they came from (thread-safe)."""

    def __init__(self) -> None:
        self._files: dict[tuple[int, int], _Origin] = {}
        self._counts: dict[tuple[str, str], int] = {}  # (root, directory rel) -> files under it
        self._lock = threading.Lock()

    def remember(self, path: Path, root: str, rel: str = "") -> None:
        """``path`` now holds the object at ``root``/``rel``."""
        st = path.stat()
        origin = _Origin(root, rel, st.st_size, st.st_mtime_ns)
        with self._lock:
            self._files[(st.st_dev, st.st_ino)] = origin
            parts = rel.split("/")[:-1]
            for depth in range(len(parts) + 1):
                key = (root, "/".join(parts[:depth]))
                self._counts[key] = self._counts.get(key, 0) + 1

    def file_url(self, path: str) -> str | None:
        """The URL ``path`` was downloaded from, if it is unchanged since."""
        origin = self._origin(path)
        return origin.url if origin else None

    def directory_url(self, path: str) -> str | None:
        """The URL prefix of a directory made only of unchanged downloads of one prefix."""
        found: list[tuple[str, _Origin]] = []
        for dirpath, _dirs, names in os.walk(path, followlinks=True):
            for name in names:
                full = os.path.join(dirpath, name)
                origin = self._origin(full)
                if origin is None:
                    return None
                found.append((os.path.relpath(full, path), origin))
        if not found:
            return None  # an empty directory: staged, it is four bytes to hash
        rel, first = found[0]
        prefix = _strip_suffix(first.rel, rel)
        if prefix is None:
            return None
        for rel, origin in found:
            if origin.root != first.root or origin.rel != _join(prefix, rel):
                return None
        with self._lock:
            under = self._counts.get((first.root, prefix), 0)
        if under != len(found):
            return None  # files were removed, or others came from elsewhere
        return join_url(first.root, prefix) if prefix else first.root

    def _origin(self, path: str) -> _Origin | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        with self._lock:
            origin = self._files.get((st.st_dev, st.st_ino))
        if origin is None or (origin.size, origin.mtime_ns) != (st.st_size, st.st_mtime_ns):
            return None
        return origin


def _join(prefix: str, rel: str) -> str:
    return f"{prefix}/{rel}" if prefix else rel


def _strip_suffix(full: str, rel: str) -> str | None:
    """``full`` without its trailing ``rel`` (the directory prefix); None if it does not end so."""
    if full == rel:
        return ""
    if full.endswith("/" + rel):
        return full[: -len(rel) - 1]
    return None
