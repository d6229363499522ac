"""``tesengine status|cancel|logs|list``: look at and steer tasks on the configured server."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from ..config import Config
from ..errors import AuthError, TesApiError, TesError, redact_url
from ..storage import Storage
from ..tes import View
from ..tes import models as wire
from . import aio, json_out
from .backend_choice import TaskSource, open_tasks
from .main import CONFIG_HELP
from .safe_text import visible

Command = Callable[[TaskSource, Config, argparse.Namespace], Awaitable[int]]


def register(sub: Any) -> None:
    """Add ``status``, ``cancel``, ``logs`` and ``list``."""
    for name, text, func in (
        ("status", "show a task's state", _status),
        ("cancel", "cancel a task", _cancel),
        ("logs", "print a task's executor stdout and stderr", _logs),
    ):
        p = _common(sub.add_parser(name, help=text))
        p.add_argument("task_id", metavar="ID")
        p.set_defaults(func=_runner(func))
    p = _common(sub.add_parser("list", help="list tasks on the server"))
    p.add_argument(
        "--state", type=_state, help=f"only tasks in this state: {', '.join(wire.State)}"
    )
    p.add_argument(
        "--tag", action="append", type=_tag, default=[], metavar="K=V", help="tag filter"
    )
    p.add_argument("--name-prefix", help="only tasks whose name starts with this")
    p.add_argument("--limit", type=_limit, default=100, help="at most this many (default 100)")
    p.set_defaults(func=_runner(_list))


def _common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    p.add_argument("--backend", default="default", help="backend name (default: default)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def _state(value: str) -> wire.State:
    """``--state``: one of the TES states (any case); else a usage error naming them."""
    try:
        return wire.State(value.strip().upper())
    except ValueError:
        valid = ", ".join(wire.State)
        raise argparse.ArgumentTypeError(
            f"unknown state {value!r}; expected one of {valid}"
        ) from None


def _limit(value: str) -> int:
    """``--limit N``: a positive count (0 would list nothing and say nothing)."""
    try:
        limit = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {value!r}") from None
    if limit < 1:
        raise argparse.ArgumentTypeError(f"{limit}: must be at least 1")
    return limit


def _tag(value: str) -> tuple[str, str]:
    """``--tag K=V``."""
    key, sep, tag_value = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{value!r}: expected K=V")
    return key, tag_value


def _runner(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        async def main() -> int:
            # No configuration: the embedded store (see tesengine.cli.backend_choice).
            async with open_tasks(args.config, args.backend) as (client, config):
                try:
                    return await command(client, config, args)
                except (AuthError, TesApiError) as exc:
                    raise _plain(exc, config, getattr(args, "task_id", None)) from None

        return aio.run(main())

    return run


def _plain(exc: TesError | AuthError, config: Config, task_id: str | None) -> Exception:
    """The error a user can act on, instead of the HTTP exchange behind it."""
    url = redact_url(config.backend.url)
    if isinstance(exc, TesApiError) and exc.status == 404 and task_id is not None:
        return TesError(f"no task {task_id!r} on {url}")
    if isinstance(exc, AuthError):
        return AuthError(refused_credentials(config, forbidden="HTTP 403" in str(exc)))
    return exc


def refused_credentials(config: Config, *, forbidden: bool = False) -> str:
    """``the server refused the credentials for <url> (basic auth, user 'u')``."""
    url = redact_url(config.backend.url)
    auth = config.backend.auth
    if auth is None:
        return (
            f"the server at {url} requires credentials and none are configured"
            f" (add [run.backends.{config.backend_name}.auth])"
        )
    if auth.type == "basic":
        what = f"basic auth, user {auth.username!r}"
    elif auth.token_file is not None:
        what = f"bearer token from {auth.token_file}"
    elif auth.token_command is not None:
        what = "bearer token from token_command"
    else:
        what = "bearer token"
    if forbidden:
        return f"the server at {url} accepted the credentials but forbids this ({what})"
    return f"the server refused the credentials for {url} ({what})"


async def _status(client: TaskSource, _config: Config, args: argparse.Namespace) -> int:
    task = await client.get_task(args.task_id, View.BASIC)
    if args.json:
        print(json_out.dumps([json_out.from_wire(task)]))
        return 0
    line = f"{task.id}  {task.current_state.value}  {task.name or ''}".rstrip()
    print(visible(line, sys.stdout))  # id and name come from the server: no raw escapes
    for attempt in task.logs or []:
        for index, log in enumerate(attempt.logs):
            print(f"  executor {index}: exit {log.exit_code}")
    return 0


async def _cancel(client: TaskSource, _config: Config, args: argparse.Namespace) -> int:
    await client.cancel_task(args.task_id)
    print(f"cancel requested for {args.task_id}")
    return 0


async def _list(client: TaskSource, _config: Config, args: argparse.Namespace) -> int:
    tags = dict(args.tag)
    count = 0
    async for task in client.iter_tasks(
        name_prefix=args.name_prefix, state=args.state, tags=tags or None, view=View.BASIC
    ):
        if count >= args.limit:
            break
        count += 1
        if args.json:
            print(task.to_json().decode())
        else:
            line = f"{task.id}  {task.current_state.value:<14} {task.name or ''}".rstrip()
            print(visible(line, sys.stdout))
    return 0


async def _logs(client: TaskSource, config: Config, args: argparse.Namespace) -> int:
    from ..engine.logs import task_logs
    from ..engine.outputs import OutputCache

    storage = Storage(config.storage)
    try:
        reader = OutputCache(storage, config.backend.resolved_cache_dir / "outputs")
        logs = await task_logs(client, reader, config.backend.outputs, args.task_id)
    finally:
        await storage.aclose()
    streams = {
        f"executor {e.index} {name}": data.decode(errors="replace")
        for e in logs.executors
        for name, data in (("stdout", e.stdout), ("stderr", e.stderr))
    }
    if args.json:
        doc = {"id": logs.task_id, "captured": logs.captured, "logs": streams}
        print(json.dumps(doc, indent=2))
        return 0
    _say_if_unfinished(logs.task_id, logs.state, any(streams.values()))
    for label, text in streams.items():
        _header(label)
        _print_log(text)
    return 0


def _header(label: str) -> None:
    """``== executor 0 stdout ==`` on stderr, so ``logs ID > file`` keeps the log alone."""
    sys.stdout.flush()  # keep the order on a terminal where both streams meet
    print(f"== {label} ==", file=sys.stderr, flush=True)


def _print_log(text: str) -> None:
    """A task's log, its control characters made visible on a terminal."""
    shown = visible(text, sys.stdout)
    print(shown, end="" if shown.endswith("\n") or not shown else "\n", flush=True)


def _say_if_unfinished(task_id: str, state: wire.State, any_output: bool) -> None:
    """A task still running has only partial logs, or none yet: say so on stderr."""
    if state.is_final:
        return
    so_far = "logs so far" if any_output else "no log output yet"
    line = f"tesengine: task {task_id} is {state.value}: {so_far}"
    print(visible(line, sys.stderr), file=sys.stderr)
