"""Entry point of the ``tesengine`` command: one sub-command per module.

Each module in :data:`COMMANDS` exposes ``register(subparsers)``, which adds
its sub-parser and sets ``func`` (a callable taking the parsed namespace and
returning an exit status). User errors (any :class:`TesEngineError`) print
one line on stderr and exit 2 or 1; they never print a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from ..errors import ConfigError, InvalidTask, TesEngineError

#: Sub-command modules under ``tesengine.cli``, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = (
    "run_cmd",
    "tasks_cmd",
    "serve_cmd",
    "stage_cmd",
    "hash_cmd",
    "config_cmd",
    "gc_cmd",
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(TesEngineError):
    """A malformed command line that argparse cannot catch (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, no usage dump: the message and where to read more.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every sub-command registered."""
    parser = _Parser(prog="tesengine", description="Run tasks on GA4GH TES servers.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"tesengine.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print("tesengine: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except TesEngineError as exc:
        return _report(exc)


def entry() -> None:
    """Console-script entry: run :func:`main` and exit with its status, reliably."""
    from .aio import exit_now

    try:
        status = main()
    except SystemExit as exc:  # argparse's --help and usage errors
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    exit_now(status)


def _report(exc: TesEngineError) -> int:
    print(f"tesengine: {exc}", file=sys.stderr)
    if isinstance(exc, ConfigError | InvalidTask | UsageError):
        return EXIT_USAGE
    return EXIT_FAILED


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * min(verbosity, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":  # pragma: no cover
    entry()
