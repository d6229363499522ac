"""The kernel's (and bubblewrap's) limits on what one ``execve`` can carry.

An executor whose command cannot be exec'd at all must fail before the task
stages anything, as a SYSTEM_ERROR that names the offending field, rather
than as an EXECUTOR_ERROR saying "Argument list too long" after the work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from .base import ExecutorRefused

__all__ = ["ARG_MAX", "MAX_ARG_STRLEN", "check_exec"]

#: The longest single argument or ``NAME=value`` string the kernel execs (32 pages, with NUL).
MAX_ARG_STRLEN = 32 * os.sysconf("SC_PAGE_SIZE")
#: The kernel's limit on argv plus environment (a quarter of the stack limit).
ARG_MAX = os.sysconf("SC_ARG_MAX")
_POINTER = 8  # each string also costs one pointer in the new process's vector


def check_exec(
    field: str, argv: Sequence[str], env: Mapping[str, str], *, margin: int = 4096
) -> None:
    """Raise :class:`ExecutorRefused` when ``argv`` with ``env`` cannot be exec'd here."""
    total = 0
    for i, arg in enumerate(argv):
        size = len(arg.encode("utf-8", "surrogateescape")) + 1
        if size > MAX_ARG_STRLEN:
            raise ExecutorRefused(
                f"{field}.command[{i}] is {size - 1} bytes; the kernel runs no argument over "
                f"{MAX_ARG_STRLEN - 1} bytes (MAX_ARG_STRLEN): pass it in a file instead"
            )
        total += size + _POINTER
    for key, value in env.items():
        size = len(f"{key}={value}".encode("utf-8", "surrogateescape")) + 1
        if size > MAX_ARG_STRLEN:
            raise ExecutorRefused(
                f"{field}.env.{key} is {size - 1} bytes; the kernel passes no variable over "
                f"{MAX_ARG_STRLEN - 1} bytes (MAX_ARG_STRLEN): pass it in a file instead"
            )
        total += size + _POINTER
    if total + margin > ARG_MAX:
        raise ExecutorRefused(
            f"{field}: command and env are {total} bytes; this host execs at most "
            f"{ARG_MAX - margin} (ARG_MAX): pass the data in a file instead"
        )
