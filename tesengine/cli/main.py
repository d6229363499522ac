"""Entry point of the ``tesengine`` command: one sub-command per module.

Each module in :data:`COMMANDS` exposes ``register(subparsers)``, which adds
its sub-parser and sets ``func`` (a callable taking the parsed namespace and
returning an exit status). User errors (any :class:`TesEngineError`) print
one line on stderr and exit 2 or 1; they never print a traceback.

Start-up is kept fast: only the chosen sub-command's module is imported
(``tesengine --help`` lists the others from :data:`SUBCOMMANDS` without
importing them), and ``tesengine`` itself imports its parts lazily.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from ..errors import ConfigError, DigestError, InputChanged, InvalidTask, TesEngineError

#: Sub-command -> (its module, its one-line help), for a ``--help`` that imports nothing.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run_cmd", "run a task (or a task file) and print its outputs"),
    "status": ("tasks_cmd", "show a task's state"),
    "cancel": ("tasks_cmd", "cancel a task"),
    "logs": ("tasks_cmd", "print a task's executor stdout and stderr"),
    "list": ("tasks_cmd", "list tasks on the server"),
    "serve": ("serve_cmd", "run a local TES v1.1 server"),
    "stage": ("stage_cmd", "upload local inputs to the inputs bucket"),
    "hash": ("hash_cmd", "print BLAKE3 digests of files and directories"),
    "config": ("config_cmd", "check or show the configuration"),
    "gc": ("gc_cmd", "remove finished embedded runs and unused downloads"),
}

#: Sub-command modules under ``tesengine.cli``, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = tuple(dict.fromkeys(module for module, _ in SUBCOMMANDS.values()))

#: ``--config`` help shared by every sub-command that reads the configuration.
CONFIG_HELP = (
    "config file (default: $TESENGINE_CONFIG, else ./sprocket.toml, else ./tesengine.toml)"
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


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser: the sub-command named in ``argv`` fully registered.

    The other sub-commands get a placeholder with their help line, so
    ``tesengine --help`` lists them all without importing any. With no
    ``argv`` (or one naming no known sub-command) every module is registered.
    """
    from .. import __version__

    parser = _Parser(prog="tesengine", description="Run tasks on GA4GH TES servers.")
    parser.add_argument("--version", action="version", version=f"tesengine {__version__}")
    _verbosity_flags(parser, default=True)
    sub = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser, metavar="COMMAND"
    )
    chosen = _chosen(argv)
    modules = [SUBCOMMANDS[chosen][0]] if chosen in SUBCOMMANDS else list(COMMANDS)
    if chosen is None:
        modules = []  # only --help, --version or a usage error: list, import nothing
    for name in modules:
        importlib.import_module(f"tesengine.cli.{name}").register(sub)
    for name, (_module, text) in SUBCOMMANDS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=text, add_help=False)
    for subparser in _descendants(parser):
        _verbosity_flags(subparser, default=False)
    return parser


def _descendants(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every sub-parser below ``parser`` (``config check`` is two levels down)."""
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += [child, *_descendants(child)]
    return found


def _chosen(argv: Sequence[str] | None) -> str | None:
    """The sub-command's name: the first argument that is not an option."""
    args = sys.argv[1:] if argv is None else list(argv)
    return next((a for a in args if not a.startswith("-")), None)


def _verbosity_flags(parser: argparse.ArgumentParser, *, default: bool) -> None:
    """``-v``/``-q`` before or after the sub-command (a sub-command's own ``-q`` wins)."""
    taken = parser._option_string_actions
    # A sub-command's copy must not reset what was given before the sub-command.
    verbose: object = 0 if default else argparse.SUPPRESS
    quiet: object = False if default else argparse.SUPPRESS
    if not default:  # a sub-command's own -q/-v: given or not, it must not undo the global one
        for flag in ("-v", "-q"):
            if flag in taken:
                taken[flag].default = argparse.SUPPRESS
    if "-v" not in taken:
        parser.add_argument(
            "-v", "--verbose", action="count", default=verbose, help="more log output (-vv: debug)"
        )
    if "-q" not in taken:
        parser.add_argument("-q", "--quiet", action="store_true", default=quiet, help="errors only")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser(argv)
    args, extras = parser.parse_known_args(argv)
    if extras:
        _unrecognized(_innermost(parser, args, _chosen(argv)), extras)
    _setup_logging(args.verbose, quiet=bool(getattr(args, "quiet", False)))
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
    from .aio import broken_pipe, exit_now  # os and sys only: nothing to interrupt

    try:
        status = main()
    except SystemExit as exc:  # argparse's --help and usage errors
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except BrokenPipeError:
        status = broken_pipe()
    except KeyboardInterrupt:  # Ctrl-C while starting up (importing, parsing): no traceback
        print("tesengine: interrupted", file=sys.stderr)
        status = EXIT_INTERRUPTED
    exit_now(status)


def _unrecognized(target: argparse.ArgumentParser, extras: Sequence[str]) -> NoReturn:
    """Blame the sub-command whose options were mistyped, and suggest the one meant.

    Plain ``parse_args`` blames the top-level parser (``see tesengine --help``),
    which lists no sub-command's options.
    """
    import difflib

    known = [flag for flag in target._option_string_actions if flag.startswith("--")]
    message = f"unrecognized arguments: {' '.join(extras)}"
    for extra in extras:
        close = difflib.get_close_matches(extra.partition("=")[0], known, n=1, cutoff=0.7)
        if extra.startswith("--") and close:
            message += f" (did you mean {close[0]}?)"
            break
    target.error(message)


def _innermost(
    parser: argparse.ArgumentParser, args: argparse.Namespace, name: str | None
) -> argparse.ArgumentParser:
    """The (sub-)sub-command parser that parsed ``args``; ``name``: the sub-command's.

    The top level's ``command`` is taken from ``argv``, as ``run`` reuses that
    attribute for its own ``-- COMMAND``; deeper ones (``config check``) from ``args``.
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = name if name is not None else getattr(args, action.dest, None)
            if isinstance(chosen, str) and chosen in action.choices:
                return _innermost(action.choices[chosen], args, None)
    return parser


def _report(exc: TesEngineError) -> int:
    print(f"tesengine: {exc}", file=sys.stderr)
    bad_input = isinstance(exc, DigestError) and not isinstance(exc, InputChanged)
    if bad_input or isinstance(exc, ConfigError | InvalidTask | UsageError):
        return EXIT_USAGE
    return EXIT_FAILED


def _setup_logging(verbosity: int, *, quiet: bool = False) -> None:
    import logging  # not at the top: --help and usage errors never log

    level = logging.ERROR if quiet else logging.WARNING - 10 * min(verbosity, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":  # pragma: no cover
    entry()
