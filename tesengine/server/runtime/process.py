"""Run one child process in its own session, and kill its whole group on cancel."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["run_process"]


async def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    stdin: int,
    stdout: int,
    stderr: int,
    pass_fds: Sequence[int] = (),
    user: int | None = None,
    group: int | None = None,
) -> int:
    """Run ``argv`` with its streams on open descriptors; return the exit code.

    The descriptors were opened by the caller (safely: see
    :mod:`tesengine.server.safe_open`), so nothing here opens a path a task
    controls. The child leads a new session, so cancelling kills the child's
    process group (and the sandbox tears down what is left inside it) before
    the cancellation propagates. A signal death is reported as ``128 +
    signal``, as shells do. ``user`` and ``group`` (when given) are the host
    ids the child runs as, with no supplementary groups.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        env=dict(env),
        start_new_session=True,
        pass_fds=tuple(pass_fds),
        **_ids(user, group),
    )
    try:
        code = await proc.wait()
    except asyncio.CancelledError:
        _kill_group(proc.pid)
        if proc.returncode is None:
            # Not proc.kill(): Popen.send_signal polls first, and that poll
            # reaps a child the group kill has just ended, behind asyncio's
            # child watcher ("Unknown child process pid", exit code 255).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, signal.SIGKILL)
        await asyncio.shield(proc.wait())
        raise
    # Anything the executor left running in its group goes with it.
    _kill_group(proc.pid)
    return 128 - code if code < 0 else code


def _ids(user: int | None, group: int | None) -> dict[str, Any]:
    """The keyword arguments that make the child run as ``user``/``group``, if given."""
    if user is None:
        return {}
    return {"user": user, "group": group, "extra_groups": []}


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
