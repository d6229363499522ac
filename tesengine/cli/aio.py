"""Running one coroutine per CLI command, with an exit status that is always real.

On Python 3.11, a process that used obstore's async calls can abort at
interpreter exit (SIGABRT, status 134): obstore's Rust runtime threads are
still alive while the interpreter finalises. So, once the command is done and
its output flushed, the process leaves with :func:`os._exit` and the command's
own status: nothing after that point could change the result anyway.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from collections.abc import Coroutine

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what `yes | head -1` leaves `yes` with


def run(coro: Coroutine[Any, Any, int]) -> int:
    """Run ``coro``; Ctrl-C (after the coroutine cleaned up) gives 130."""
    import asyncio  # here, not at the top: ``tesengine --help`` never needs it

    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        print("tesengine: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def exit_now(status: int) -> NoReturn:
    """Flush and leave with ``status``, skipping interpreter finalisation."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            status = broken_pipe() if stream is sys.stdout else status
        except (OSError, ValueError):
            status = status or 1
    os._exit(status)


def broken_pipe() -> int:
    """The reader of stdout went away (``| head``): leave quietly, like other Unix tools.

    stdout is pointed at /dev/null so that flushing what is still buffered
    cannot fail a second time on the way out.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE
