"""``tesengine serve``: run the local TES server until Ctrl-C or SIGTERM.

The first line on stdout is machine-readable::

    tesengine serve: listening on http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..server import LocalTesServer

DEFAULT_PORT = 8000


def register(sub: Any) -> None:
    """Add the ``serve`` sub-command."""
    p = sub.add_parser("serve", help="run a local TES v1.1 server")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port (default: {DEFAULT_PORT}); 0 picks a free one",
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        default=Path("tesengine-server"),
        help="task database and scratch space (default: ./tesengine-server)",
    )
    p.add_argument("--storage", help="storage URL offered to tasks (default: <work-dir>/storage)")
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
    p.add_argument("--basic", metavar="USER:PASS", help="require HTTP basic auth")
    p.add_argument("--bearer", metavar="TOKEN", help="require this bearer token")
    p.add_argument(
        "--allow-remote-without-auth",
        action="store_true",
        help="allow a non-loopback --host with no --basic/--bearer",
    )
    p.add_argument("--keep-work", action="store_true", help="keep each task's scratch directory")
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

    basic = None
    if args.basic is not None:
        user, sep, password = args.basic.partition(":")
        if not sep or not user:
            raise ConfigError("--basic: expected USER:PASS")
        basic = (user, password)
    if args.max_tasks is not None and args.max_tasks < 1:
        raise ConfigError("--max-tasks: must be at least 1")
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
        bearer=args.bearer,
        allow_remote_without_auth=args.allow_remote_without_auth,
        keep_work=args.keep_work,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with _listening(server, args.host, args.port):
        print(f"tesengine serve: listening on {server.url}", flush=True)
        print(
            f"  runtime: {server.settings.runtime}, work dir: {server.settings.work_dir}",
            file=sys.stderr,
        )
        await stop.wait()
        print("tesengine serve: shutting down", file=sys.stderr, flush=True)
    return 0
