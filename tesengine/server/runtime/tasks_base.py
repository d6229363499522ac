"""Where a server makes its tasks' directories: ``<work>/tasks``, or a searchable
private base when the sandbox user cannot reach the work dir.

A root server's sandbox runs as ``nobody`` (see :mod:`.sandbox_user`), and
bwrap resolves every bind source as that user, so each directory above a
task's tree must be searchable by it. A work dir under a private home (the
embedded default under ``/root/.cache``) is not, and changing the modes of a
user's home is not ours to do: the task trees then live in a fresh root-owned
``0711`` directory in the system's temporary directory (searchable, not
listable), removed when the server stops.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .sandbox_user import SandboxUser, reachable

__all__ = ["TasksBase", "tasks_base"]


@dataclass(frozen=True, slots=True)
class TasksBase:
    """The directory holding the task directories; ``owned`` ones are removed on close."""

    path: Path
    owned: bool = False

    def close(self) -> None:
        """Remove the directory if this server made it for itself."""
        if self.owned:
            shutil.rmtree(self.path, ignore_errors=True)


def tasks_base(work_dir: Path, user: SandboxUser | None) -> TasksBase:
    """``<work>/tasks`` when ``user`` (None: the server's own) can reach the work dir
    (which exists: the server made it)."""
    default = work_dir / "tasks"
    if user is None or reachable(work_dir.absolute(), user):
        return TasksBase(default)
    base = Path(tempfile.mkdtemp(prefix="tesengine-tasks-"))
    # 0711: the sandbox user may search it (not list it); each task's root is 0710.
    os.chmod(base, stat.S_IRWXU | stat.S_IXGRP | stat.S_IXOTH)  # noqa: S103
    return TasksBase(base, owned=True)
