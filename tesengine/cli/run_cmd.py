"""``tesengine run``: run one task (flags) or a task file, then print the outputs.

With no configuration anywhere, an embedded local TES server is started in
process on an ephemeral loopback port, with storage under the user cache
directory, so a first run needs nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import posixpath
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from ..engine import RemoteDirectory, RemoteFile, TaskResult, TesBackend
from ..errors import (
    ConfigError,
    DigestError,
    InputChanged,
    InvalidTask,
    TaskFailed,
    TesApiError,
    TesEngineError,
    redact_url,
)
from ..report import RunRecorder, request_counts
from . import aio, json_out
from .backend_choice import open_backend_config
from .display import Display
from .main import CONFIG_HELP, UsageError
from .preflight import check_dir_target, check_download_name, check_report, validate_tasks
from .run_output import CommandStreams, command_streams, failed_streams, task_exit_status
from .safe_text import visible
from .taskfile import (
    DEFAULT_IMAGE,
    FromOutput,
    TaskFile,
    TaskSpec,
    load_task_file,
    to_task,
    unique_pairs,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PRINT_LIMIT = 64 * 1024


class NotRun(TesEngineError):
    """A task was not run because a task it depends on failed."""


def register(sub: Any) -> None:
    """Add the ``run`` sub-command."""
    p = sub.add_parser(
        "run",
        help="run a task (or a task file) and print its outputs",
        description="Run one task given by flags (then -- COMMAND ARGS), or a --file of tasks.",
    )
    p.add_argument("-f", "--file", type=Path, help="task file (TOML or JSON) with [[tasks]]")
    p.add_argument("--name", default="tesengine-run", help="task name (default: tesengine-run)")
    p.add_argument("--image", default=DEFAULT_IMAGE, help=f"container image ({DEFAULT_IMAGE})")
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="SRC=PATH",
        help="local path or URL mounted at container PATH (repeatable)",
    )
    p.add_argument(
        "--output",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="container PATH returned as output NAME; end PATH with / for a directory",
    )
    p.add_argument("--env", action="append", default=[], metavar="K=V", help="environment variable")
    p.add_argument("--cpu", type=int, help="CPU cores")
    p.add_argument("--ram", type=float, help="RAM in GB")
    p.add_argument("--disk", type=float, help="disk in GB")
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    p.add_argument(
        "--backend", default="default", help="backend name in the config (default: default)"
    )
    p.add_argument("--download", type=Path, metavar="DIR", help="download every output into DIR")
    p.add_argument("--json", action="store_true", help="print a machine-readable result")
    p.add_argument(
        "--exit-code",
        action="store_true",
        help="exit with the failed task's own exit code (0 when every task completes)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument(
        "--report",
        type=Path,
        metavar="FILE",
        help="write an HTML run report to FILE (also when the run fails or is interrupted)",
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``tesengine run``."""
    tasks, base = _tasks(args)
    # Everything that can be checked here is, before a server starts or a byte moves.
    if args.download is not None:
        for index, spec in enumerate(tasks.tasks):
            check_download_name(spec.name, index)
        check_dir_target("--download", args.download)
    check_report(args.report)
    validate_tasks(tasks, base)
    return aio.run(_run(args, tasks, base))


def _tasks(args: argparse.Namespace) -> tuple[TaskFile, Path]:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if args.file is not None:
        if command or args.input or args.output:
            raise UsageError("give either --file or a command with --input/--output, not both")
        return load_task_file(args.file), args.file.parent
    if not command:
        raise UsageError("nothing to run: give -- COMMAND ARGS..., or --file TASKFILE")
    spec = TaskSpec(
        name=args.name,
        image=args.image,
        command=command,
        inputs=unique_pairs(
            [(path, src) for src, path in _pairs(args.input, "--input", "SRC=PATH")],
            "--input",
            "container path",
        ),
        outputs=unique_pairs(_pairs(args.output, "--output", "NAME=PATH"), "--output", "name"),
        env=dict(_pairs(args.env, "--env", "K=V")),
        cpu=args.cpu,
        ram=args.ram,
        disk=args.disk,
    )
    return TaskFile(tasks=[spec]), Path.cwd()


def _pairs(values: Sequence[str], flag: str, shape: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        # Split at the last '=' for inputs (URLs may hold '='), the first otherwise.
        left, sep, right = value.rpartition("=") if flag == "--input" else value.partition("=")
        if not sep or not left or not right:
            raise UsageError(f"{flag} {value!r}: expected {shape}")
        pairs.append((left, right))
    return pairs


async def _run(args: argparse.Namespace, tasks: TaskFile, base: Path) -> int:
    display = Display(quiet=args.quiet or args.json, total=len(tasks.tasks))
    try:
        async with contextlib.AsyncExitStack() as stack:
            config = await open_backend_config(stack, args.config, args.backend, display.note)
            hooks = await _hooks(stack, args.report, display)
            backend = await stack.enter_async_context(
                TesBackend(config, events=hooks, progress=hooks)
            )
            _count_requests(hooks, backend)
            await _note_images(backend, tasks, display)
            try:
                results = await _run_graph(backend, tasks, base)
            except asyncio.CancelledError:
                display.interrupted()  # counts the tasks still in flight, clears the line
                raise
            display.finish()
            status = await _report(args, tasks, results, display, backend)
            display.end()
            return status
    except asyncio.CancelledError:
        # Ctrl-C: leaving the backend above has cancelled the remote tasks.
        display.cancelled()
        raise
    raise AssertionError("unreachable")  # pragma: no cover - the stack never swallows


async def _hooks(stack: contextlib.AsyncExitStack, report: Path | None, display: Display) -> Any:
    """The display, or a report recorder feeding it; the report is written when ``stack`` ends."""
    if report is None:
        return display
    return await stack.enter_async_context(
        RunRecorder(report, title=f"tesengine run {report.stem}", events=display, progress=display)
    )


def _count_requests(hooks: Any, backend: TesBackend) -> None:
    """Give a report recorder the client's request counters (the backend comes after it)."""
    if isinstance(hooks, RunRecorder):
        hooks.counts = request_counts(backend.client)


async def _note_images(backend: TesBackend, tasks: TaskFile, display: Display) -> None:
    """Say once per run that a local runtime does not use container images."""
    try:
        info = await backend.client.service_info()
    except TesEngineError:
        return  # not worth failing a run over; the task calls will say what is wrong
    if info.environment != "local":
        return
    images = ", ".join(sorted({spec.image for spec in tasks.tasks}))
    display.note(
        f"the server's local runtime ignores images ({images}):"
        " commands run on this machine's own userland, in a bubblewrap sandbox"
    )


async def _run_graph(
    backend: TesBackend, tasks: TaskFile, base: Path
) -> dict[str, TaskResult | BaseException]:
    """Run every task as soon as the tasks it takes outputs from have finished."""
    done: dict[str, asyncio.Future[TaskResult]] = {
        spec.name: asyncio.get_running_loop().create_future() for spec in tasks.tasks
    }

    async def one(spec: TaskSpec) -> TaskResult:
        upstream: dict[str, Mapping[str, RemoteFile | RemoteDirectory]] = {}
        for source in spec.inputs.values():
            if isinstance(source, FromOutput):
                try:
                    upstream[source.task] = (await asyncio.shield(done[source.task])).outputs
                except Exception:
                    if isinstance(backend.events, RunRecorder):
                        backend.events.not_run(spec.name, f"task {source.task!r} failed")
                    raise NotRun(f"not run: task {source.task!r} failed") from None
        task = to_task(spec, base, upstream)
        if isinstance(backend.events, RunRecorder):  # it notes when staging began
            return await (await backend.events.submit(backend, task))
        return await (await backend.submit(task))

    async def settle(spec: TaskSpec) -> None:
        try:
            done[spec.name].set_result(await one(spec))
        except Exception as exc:  # recorded; reported per task below
            done[spec.name].set_exception(exc)

    await asyncio.gather(*(settle(spec) for spec in tasks.tasks))
    return {name: _outcome(future) for name, future in done.items()}


def _outcome(future: asyncio.Future[TaskResult]) -> TaskResult | BaseException:
    exc = future.exception()
    return exc if exc is not None else future.result()


async def _report(
    args: argparse.Namespace,
    tasks: TaskFile,
    results: Mapping[str, TaskResult | BaseException],
    display: Display,
    backend: TesBackend,
) -> int:
    status = EXIT_OK
    summary: list[dict[str, Any]] = []
    # One task given by flags behaves like `docker run`: its stdout is ours.
    single = args.file is None and len(tasks.tasks) == 1
    for spec in tasks.tasks:
        outcome = results[spec.name]
        if isinstance(outcome, BaseException):
            unreadable = isinstance(outcome, DigestError) and not isinstance(outcome, InputChanged)
            # The server's 400: it refused the task as written (a bad task, like ours).
            refused = isinstance(outcome, TesApiError) and outcome.status == 400
            bad_input = unreadable or refused or isinstance(outcome, InvalidTask | ConfigError)
            status = max(status, EXIT_USAGE if bad_input else EXIT_FAILED)
            entry = _failure_json(spec.name, outcome)
            failed = None
            if single and isinstance(outcome, TaskFailed):
                failed = await failed_streams(backend, outcome)
            if failed is not None:
                entry.update(stdout=failed.stdout_text, stderr=failed.stderr_text)
                if not args.json:
                    failed.write()
            summary.append(entry)
            display.failure(spec.name, outcome, tail=failed is None)
            continue
        downloads = await _download(outcome, spec, args.download)
        streams = await command_streams(outcome) if single else None
        summary.append(_result_json(outcome, downloads, streams))
        if not args.json:
            if streams is not None:
                streams.write()
            await _print_result(outcome, downloads, sys.stderr if single else sys.stdout)
    if args.json:
        print(json_out.dumps(summary))
    if args.exit_code and status == EXIT_FAILED:
        return task_exit_status(results.values())
    return status


async def _download(result: TaskResult, spec: TaskSpec, dest: Path | None) -> dict[str, str]:
    """Download every output to ``<dest>/<task>/<file name in the container>``."""
    if dest is None:
        return {}
    paths = {}
    names = _download_names(spec.outputs)
    for name, output in result.outputs.items():
        # The spec's name (checked by check_download_name), never the server's.
        target = dest / spec.name / names.get(name, name)
        if target.parent.parent != dest or target.name in ("", ".", ".."):
            raise UsageError(f"output {name!r}: {target} is not a file name inside {dest}")
        folder = target if isinstance(output, RemoteDirectory) else target.parent
        try:  # checked before the run; this is what changed on disk since
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--download {dest}: cannot create {folder}: {exc.strerror}") from None
        paths[name] = str(await output.download(target))
    return paths


def _download_names(outputs: Mapping[str, str]) -> dict[str, str]:
    """Output name -> the file or directory name it has in the container.

    Names keep their extension (``n=/out/n.txt`` downloads as ``n.txt``); two
    outputs with the same base name fall back to their output names.
    """
    names = {name: posixpath.basename(path.rstrip("/")) or name for name, path in outputs.items()}
    clashes = {base for base, n in Counter(names.values()).items() if n > 1}
    return {name: name if base in clashes else base for name, base in names.items()}


async def _print_result(
    result: TaskResult, downloads: Mapping[str, str], out: TextIO | None = None
) -> None:
    out = out or sys.stdout
    print(f"{result.name}: {result.state.value} (task {result.id})", file=out)
    for name, output in result.outputs.items():
        where = f" -> {downloads[name]}" if name in downloads else ""
        print(f"  {name}: {redact_url(output.url)}{where}", file=out)
        if isinstance(output, RemoteFile):
            text = await _small_text(output)
            if text is not None:
                for line in visible(text, out).rstrip("\n").splitlines() or [""]:
                    print(f"    | {line}", file=out)
    out.flush()


async def _small_text(output: RemoteFile) -> str | None:
    path = await output.download()
    if path.stat().st_size > PRINT_LIMIT:
        return None
    try:
        return path.read_text()
    except UnicodeDecodeError:
        return None


def _result_json(
    result: TaskResult, downloads: Mapping[str, str], streams: CommandStreams | None
) -> dict[str, Any]:
    return json_out.record(
        name=result.name,
        id=result.id,
        state=result.state.value,
        exit_codes=result.exit_codes,
        outputs={name: out.url for name, out in result.outputs.items()},
        downloads=downloads,
        stdout=streams.stdout_text if streams else None,
        stderr=streams.stderr_text if streams else None,
    )


def _failure_json(name: str, exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, TaskFailed):
        return json_out.record(
            name=name,
            id=exc.task_id,
            state=exc.state,
            exit_codes=exc.exit_codes,
            error=str(exc),
            stderr_tail=exc.stderr_tail,
        )
    return json_out.record(name=name, id=None, state="NOT_RUN", error=str(exc))
