"""Run one child process in its own session, and kill its whole group on cancel."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["run_process"]


async def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    stdin: Path | None,
    stdout: Path,
    stderr: Path,
) -> int:
    """Run ``argv`` with its streams on host files; return the exit code.

    The child leads a new session, so cancelling kills the child's process
    group (and the sandbox tears down what is left inside it) before the
    cancellation propagates. A signal death is reported as ``128 + signal``,
    as shells do.
    """
    # Opening local files is quick; the child gets the descriptors, not the loop.
    with (
        open(stdin if stdin else os.devnull, "rb") as fin,  # noqa: ASYNC230
        open(stdout, "ab") as fout,  # noqa: ASYNC230
        open(stderr, "ab") as ferr,  # noqa: ASYNC230
    ):
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=fin,
            stdout=fout,
            stderr=ferr,
            env=dict(env),
            start_new_session=True,
        )
        try:
            code = await proc.wait()
        except asyncio.CancelledError:
            _kill_group(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())
            raise
        # Anything the executor left running in its group goes with it.
        _kill_group(proc.pid)
    return 128 - code if code < 0 else code


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
