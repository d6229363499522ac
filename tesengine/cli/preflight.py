"""Checks made before a command starts any work: a run that cannot succeed as
written starts no server, uploads nothing and submits nothing.

Each problem is a :class:`~tesengine.cli.main.UsageError` (exit status 2)
naming the flag or task key and the offending path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .main import UsageError

if TYPE_CHECKING:
    from .taskfile import TaskFile


def check_dir_target(flag: str, path: Path) -> None:
    """``path`` is a directory this process may write into, or can be created as one.

    Nothing is created: the nearest existing ancestor must be a writable
    directory (``os.access``, so a read-only mount counts as read-only).
    """
    if os.path.lexists(path) and not path.exists():
        raise UsageError(f"{flag} {path}: a broken symbolic link")
    probe = path
    while not probe.exists() and probe.parent != probe:  # a missing component
        probe = probe.parent
    if not probe.is_dir():
        where = "not a directory" if probe == path else f"{probe} is not a directory"
        raise UsageError(f"{flag} {path}: {where}")
    if not os.access(probe, os.W_OK | os.X_OK):
        where = "not writable" if probe == path else f"cannot create it: {probe} is not writable"
        raise UsageError(f"{flag} {path}: {where}")


def check_report(report: Path | None) -> None:
    """``--report FILE`` names a file in an existing directory."""
    if report is not None and (report.is_dir() or not report.parent.is_dir()):
        raise UsageError(f"--report {report}: not a file in an existing directory")


def check_download_name(name: str, index: int) -> None:
    """``--download`` writes to ``DIR/<task name>/``: the name must stay one directory."""
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise UsageError(
            f"tasks[{index}].name {name!r}: with --download, a task name must be a plain"
            " file name (no '/', not '.' or '..'), as it names the task's download directory"
        )


def validate_tasks(tasks: TaskFile, base: Path) -> None:
    """Validate every task as the engine will, before a server is started.

    An input taken from an earlier task's output is not known yet: a URL of
    the same kind (file or directory) stands in for it. One task's problem is
    its one line; several tasks' problems are listed together (and none runs).
    """
    from ..engine.validate import validate, validate_all
    from .taskfile import FromOutput, to_task

    outputs = {spec.name: spec.outputs for spec in tasks.tasks}
    built = []
    for spec in tasks.tasks:
        upstream: dict[str, dict[str, Any]] = {}
        for source in spec.inputs.values():
            if isinstance(source, FromOutput):
                slash = "/" if outputs[source.task][source.output].endswith("/") else ""
                url = f"memory://tesengine-preflight/{source.task}/{source.output}{slash}"
                upstream.setdefault(source.task, {})[source.output] = url
        built.append(to_task(spec, base, upstream))
    if len(built) == 1:
        validate(built[0])
    else:
        validate_all(built)
