"""Follow a task's symbolic links the way the task sees them, never out of its tree.

Inside the sandbox the task's root is ``/``: ``/out/x -> /out/real`` is a
valid link there, while on the host it would point at the host's ``/out``.
:func:`resolve_in_task` walks a container path one name at a time below the
task's (real) root, reading links with ``lstat``/``readlink`` only: an
absolute target restarts at the task's root, ``..`` never climbs above it.
The result is therefore always a host path inside the root; a link to the
sandbox's own system directories (``/usr``, ``/etc``) lands on a path the
task does not have, and is reported as such.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import StagingError

__all__ = ["MAX_LINKS", "Resolved", "output_source", "resolve_in_task", "tree_files"]

#: Links followed at most in one path (the kernel's own limit), so loops end.
MAX_LINKS = 40


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where a container path leads inside the task's tree."""

    host: Path
    #: The same place as the task names it, e.g. ``/out/real``.
    container: str
    #: Whether a symbolic link was followed on the way.
    via_link: bool


def resolve_in_task(root: Path, container: str) -> Resolved:
    """``container`` below ``root`` with every link followed as the task sees it."""
    todo = [p for p in reversed(container.split("/")) if p]
    done: list[str] = []
    links = 0
    while todo:
        name = todo.pop()
        if name == ".":
            continue
        if name == "..":
            if done:
                done.pop()
            continue
        here = root.joinpath(*done, name)
        try:
            mode = os.lstat(here).st_mode
        except OSError:  # missing (or not a directory): the rest cannot exist either
            done += [name, *reversed(todo)]
            break
        if stat.S_ISLNK(mode):
            links += 1
            if links > MAX_LINKS:
                raise StagingError(f"{container}: more than {MAX_LINKS} symbolic links")
            target = os.readlink(here)
            if target.startswith("/"):
                done = []
            todo += [p for p in reversed(target.split("/")) if p]
            continue
        done.append(name)
    return Resolved(root.joinpath(*done), "/" + "/".join(done), links > 0)


def output_source(real_root: Path, container: str, field: str) -> Path:
    """The host file to upload for output file ``container``, checked.

    Raises :class:`StagingError` naming ``field`` and the file when the
    name cannot be an object key, when a link leads nowhere in the task, out
    of its tree, or to something that is not a regular file.
    """
    if any(ord(c) < 32 or c == "\x7f" for c in container):
        raise StagingError(
            f"{field}: cannot publish {container!r}: the name holds a control character"
            " (such as a newline), which storage object names cannot"
        )
    found = resolve_in_task(real_root, container)
    link = f"{container} is a symbolic link to {found.container}, which" if found.via_link else ""
    if not os.path.lexists(found.host):
        why = f"{link} does not exist in the task" if link else f"{container} does not exist"
        raise StagingError(f"{field}: {why}")
    real = Path(os.path.realpath(found.host))
    if not real.is_relative_to(real_root):  # cannot happen but for a race: never follow it
        raise StagingError(f"{field}: {container} links outside the task's directory")
    if not real.is_file():
        why = f"{link} is not a regular file" if link else f"{container} is not a regular file"
        raise StagingError(f"{field}: {why}")
    return real


def tree_files(root: Path, tree: Path, container: str) -> tuple[list[str], str]:
    """The files below directory ``tree`` (relative names), and the first link skipped.

    Links to directories (as the task sees them) are not walked, so a tree
    cannot loop or fan out; the first one is named for the error message.
    """
    rels: list[str] = []
    skipped = ""
    for dirpath, dirs, files in os.walk(tree):
        linked = [d for d in dirs if os.path.islink(Path(dirpath, d))]  # walk skips these
        for name in sorted([*files, *linked]):
            rel = Path(dirpath, name).relative_to(tree).as_posix()
            inside = f"{container.rstrip('/')}/{rel}"
            if name in linked or (
                os.path.islink(Path(dirpath, name)) and resolve_in_task(root, inside).host.is_dir()
            ):
                skipped = skipped or inside
                continue
            rels.append(rel)
    return rels, skipped
