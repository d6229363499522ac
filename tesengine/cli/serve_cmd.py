"""``tesengine serve``: run the local TES server until Ctrl-C or SIGTERM.

The first line on stdout is machine-readable::

    tesengine serve: listening on http://127.0.0.1:8000

Credentials on the command line (``--basic``, ``--bearer``) are visible to
every local user in ``ps``; they can come from a file (``--basic-file``,
``--bearer-file``) or the environment (``TESENGINE_SERVE_BASIC``,
``TESENGINE_SERVE_BEARER``) instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, StorageError, redact_url
from .preflight import check_dir_target

if TYPE_CHECKING:
    from ..server import LocalTesServer

DEFAULT_PORT = 8000
BASIC_ENV = "TESENGINE_SERVE_BASIC"
BEARER_ENV = "TESENGINE_SERVE_BEARER"
_CREDENTIALS_HELP = f"""\
credentials: --basic and --bearer on the command line are visible to every
local user in `ps`. Prefer a file only you can read (--basic-file FILE,
--bearer-file FILE: one line, USER:PASS or TOKEN) or the environment:
  {BASIC_ENV}="USER:PASS"
  {BEARER_ENV}="TOKEN"
One source per kind; a flag or file wins over the environment."""


def register(sub: Any) -> None:
    """Add the ``serve`` sub-command."""
    p = sub.add_parser(
        "serve",
        help="run a local TES v1.1 server",
        epilog=_CREDENTIALS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    p.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"port (default: {DEFAULT_PORT}); 0 picks a free one",
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        default=Path("tesengine-server"),
        help="task database and scratch space, created if missing (default: ./tesengine-server)",
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        help="storage URL offered to tasks: file:///DIR, s3://, gs://, az://, memory://"
        " (default: <work-dir>/storage)",
    )
    p.add_argument(
        "--runtime",
        choices=("local", "noop", "docker"),
        default="local",
        help="how executors run (default: local): local = on this host in a bubblewrap"
        " sandbox (no network, the image is ignored); noop = not at all, every task"
        " completes (for tests and benchmarks); docker = docker run with the image",
    )
    p.add_argument("--max-tasks", type=int, help="tasks run at once (default: CPU count)")
    p.add_argument(
        "--noop-delay", type=float, default=0.0, help="seconds per noop executor (default: 0)"
    )
    p.add_argument(
        "--allow-dir",
        action="append",
        default=[],
        type=Path,
        help="a host directory file:// inputs and outputs may use (repeatable)",
    )
    p.add_argument(
        "--basic", metavar="USER:PASS", help="require HTTP basic auth (visible in ps: see below)"
    )
    p.add_argument(
        "--basic-file", metavar="FILE", type=Path, help="require HTTP basic auth, USER:PASS in FILE"
    )
    p.add_argument(
        "--bearer", metavar="TOKEN", help="require this bearer token (visible in ps: see below)"
    )
    p.add_argument(
        "--bearer-file", metavar="FILE", type=Path, help="require the bearer token in FILE"
    )
    p.add_argument(
        "--allow-remote-without-auth",
        action="store_true",
        help="allow a non-loopback --host with no --basic/--bearer",
    )
    p.add_argument("--keep-work", action="store_true", help="keep each task's scratch directory")
    p.add_argument(
        "--allow-private-urls",
        action="store_true",
        help="let http(s) inputs reach loopback, link-local and private addresses "
        "(default: refused, so a task cannot make the server fetch internal services)",
    )
    p.add_argument(
        "--inputs-namespace",
        metavar="URL",
        help="no output may be written under this URL (default: <storage>/inputs/, "
        "where content-addressed inputs are trusted without download)",
    )
    p.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    """Serve until interrupted; leaves the process with the real exit status."""
    from .aio import exit_now, run

    exit_now(run(_serve(args)))


@contextlib.asynccontextmanager
async def _listening(server: LocalTesServer, host: str, port: int) -> AsyncIterator[None]:
    """Start ``server``; a port that cannot be bound is one line, not a traceback."""
    try:
        await server.__aenter__()
    except OSError as exc:
        if exc.filename is not None:  # a file or folder, not the socket: not the port's fault
            raise ConfigError(f"{exc.filename}: {exc.strerror}") from None
        if exc.errno == errno.EADDRINUSE:
            why = "address already in use (pick another --port, or 0 for any free one)"
        else:
            why = exc.strerror or str(exc)
        raise ConfigError(f"--port {port}: cannot listen on {host}:{port}: {why}") from None
    try:
        yield
    finally:
        await server.__aexit__(None, None, None)


async def _serve(args: argparse.Namespace) -> int:
    from ..server import LocalTesServer

    basic = _basic(args)
    bearer, _ = _secret(args.bearer, args.bearer_file, "--bearer", BEARER_ENV)
    _check_args(args)
    server = LocalTesServer(
        args.work_dir,
        storage_url=args.storage,
        runtime=args.runtime,
        host=args.host,
        port=args.port,
        max_tasks=args.max_tasks,
        noop_delay=args.noop_delay,
        allow_dirs=tuple(args.allow_dir),
        basic=basic,
        bearer=bearer,
        allow_remote_without_auth=args.allow_remote_without_auth,
        keep_work=args.keep_work,
        allow_private_urls=args.allow_private_urls,
        inputs_namespace=args.inputs_namespace,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    created = not args.work_dir.exists()
    async with _listening(server, args.host, args.port):
        print(f"tesengine serve: listening on {server.url}", flush=True)
        settings = server.settings
        print(
            f"  work dir: {settings.work_dir.resolve()}{' (created)' if created else ''},"
            f" storage: {redact_url(settings.resolved_storage_url)}, runtime: {settings.runtime}",
            file=sys.stderr,
        )
        if basic is None and bearer is None:
            # Loopback is not private: every local user and process can reach it.
            print(
                "tesengine serve: warning: no credentials: anyone who can reach this port"
                " (every local user, on loopback) can run tasks as this server's user;"
                " give --bearer-file or --basic-file",
                file=sys.stderr,
            )
        await stop.wait()
        print("tesengine serve: shutting down", file=sys.stderr, flush=True)
    return 0


def _port(value: str) -> int:
    """``--port``: a TCP port number (0: any free one)."""
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port}: a port is 0-65535 (0 picks a free one)")
    return port


def _check_args(args: argparse.Namespace) -> None:
    """What would fail later, or worse be silently ignored, fails now naming its flag."""
    if args.max_tasks is not None and args.max_tasks < 1:
        raise ConfigError("--max-tasks: must be at least 1")
    if args.noop_delay < 0:
        raise ConfigError(f"--noop-delay {args.noop_delay}: must be at least 0")
    check_dir_target("--work-dir", args.work_dir)
    for flag in ("--storage", "--inputs-namespace"):
        url = getattr(args, flag[2:].replace("-", "_"))
        if url is not None:
            _check_storage_url(flag, url)
    for folder in args.allow_dir:
        if not folder.is_dir():
            raise ConfigError(f"--allow-dir {folder}: not a directory")


def _check_storage_url(flag: str, url: str) -> None:
    """``url`` is one the server can write to; a ``file://`` one, a folder it can make."""
    from urllib.parse import unquote, urlsplit

    from ..storage.urls import parse_url, scheme_problem

    shown = redact_url(url)
    if "://" not in url:
        hint = Path(url).resolve().as_uri()
        raise ConfigError(f"{flag} {shown}: not a URL (a local folder is written {hint})")
    problem = scheme_problem(url, writable=True)
    if problem is not None:
        raise ConfigError(f"{flag} {shown}: {problem}")
    try:
        location = parse_url(url)
    except StorageError as exc:
        raise ConfigError(f"{flag} {shown}: {exc}") from None
    if location.provider == "file" and flag == "--storage":
        check_dir_target(flag, Path(unquote(urlsplit(url).path)))


def _basic(args: argparse.Namespace) -> tuple[str, str] | None:
    value, source = _secret(args.basic, args.basic_file, "--basic", BASIC_ENV)
    if value is None:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user:
        raise ConfigError(f"{source}: expected USER:PASS")  # never quote what was given
    return user, password


def _secret(flag: str | None, path: Path | None, name: str, env: str) -> tuple[str | None, str]:
    """The credential from ``name``, ``name-file`` or ``env`` and where it came from.

    A flag and its file together are an error; either wins over the environment.
    """
    if flag is not None and path is not None:
        raise ConfigError(f"{name} and {name}-file: give one of them")
    if flag is not None:
        print(
            f"tesengine serve: warning: {name} on the command line is visible in ps;"
            f" use {name}-file or {env}",
            file=sys.stderr,
        )
        return flag, name
    if path is not None:
        return _read_secret(path, f"{name}-file"), f"{name}-file {path}"
    return os.environ.get(env) or None, env


def _read_secret(path: Path, flag: str) -> str:
    """The one line of a credentials file; warns when others may read it."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise ConfigError(f"{flag}: cannot read {path}: {reason}") from None
    value = text.rstrip("\r\n")
    if not value or "\n" in value:
        raise ConfigError(f"{flag}: {path} must hold one non-empty line")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(
            f"tesengine serve: warning: {path} can be read by other users (chmod 600 {path})",
            file=sys.stderr,
        )
    return value
