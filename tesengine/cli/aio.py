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
        except (OSError, ValueError):
            status = status or 1
    os._exit(status)
