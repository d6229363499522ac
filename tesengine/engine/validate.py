"""Validation of a user :class:`~.spec.Task` before anything is uploaded or sent.

Every problem is an :class:`~tesengine.errors.InvalidTask` whose message names
the task and the offending key (``inputs['/in/x']``, ``outputs['n']``,
``executors[0].command``). Only ``stat`` calls touch the disk here.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidTask
from ..redact import redact_repr
from ..storage.urls import URL_SCHEMES, scheme_problem
from ..thread_limits import ThreadLimit
from .outputs import RemoteDirectory, RemoteFile
from .spec import InputSource, Task

__all__ = [
    "URL_SCHEMES",
    "LocalInput",
    "OutputDecl",
    "Plan",
    "UrlInput",
    "validate",
    "validate_all",
    "validate_all_off_loop",
    "validate_off_loop",
]

# URL_SCHEMES, the schemes an input may name, is the storage registry (TES
# servers fetch these themselves); re-exported for the command line.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Validation's own thread budget (one thread per submit_many call at a time):
# its stat calls never wait behind anyio's shared default limiter, nor hold it.
_THREADS = ThreadLimit(4)


@dataclass(frozen=True, slots=True)
class LocalInput:
    """A local file or directory that must be staged first."""

    container_path: str
    local: Path
    directory: bool


@dataclass(frozen=True, slots=True)
class UrlInput:
    """An input passed through by URL: no bytes move on the client."""

    container_path: str
    url: str
    directory: bool

    def __repr__(self) -> str:
        return redact_repr(self)  # the URL may carry a SAS or a signature


@dataclass(frozen=True, slots=True)
class OutputDecl:
    """A declared output: its name, container path, and kind."""

    name: str
    container_path: str
    directory: bool


@dataclass(frozen=True, slots=True)
class Plan:
    """A task that passed validation, with its inputs sorted by kind."""

    task: Task
    local: tuple[LocalInput, ...]
    remote: tuple[UrlInput, ...]
    outputs: tuple[OutputDecl, ...]


def validate(task: Task) -> Plan:
    """Check ``task`` completely; raise :class:`InvalidTask` at the first problem."""
    where = f"task {task.name!r}"
    if not isinstance(task.name, str) or not task.name.strip():
        raise InvalidTask("task: name must be a non-empty string")
    _check_executors(task, where)
    seen: dict[str, str] = {}
    local: list[LocalInput] = []
    remote: list[UrlInput] = []
    for path, source in task.inputs.items():
        key = f"inputs[{path!r}]"
        _claim(seen, _container_path(path, where, key), where, key)
        item = _classify(path, source, where, key)
        if isinstance(item, LocalInput):
            local.append(item)
        else:
            remote.append(item)
    outputs = tuple(_output(name, path, seen, where) for name, path in task.outputs.items())
    for index, volume in enumerate(task.volumes):
        _container_path(volume, where, f"volumes[{index}]")
    return Plan(task, tuple(local), tuple(remote), outputs)


def validate_all(tasks: Sequence[Task]) -> list[Plan]:
    """Check every task; one :class:`InvalidTask` names each bad one by index.

    ``stat`` calls block: call it in a worker thread, not on the event loop.
    """
    plans: list[Plan] = []
    problems: list[str] = []
    for index, task in enumerate(tasks):
        try:
            if not isinstance(task, Task):
                raise InvalidTask(f"expected a Task, got {type(task).__name__}")
            plans.append(validate(task))
        except InvalidTask as exc:
            problems.append(f"tasks[{index}]: {exc}")
    if problems:
        head = f"{len(problems)} of {len(tasks)} tasks are invalid; none was submitted:"
        raise InvalidTask("\n  ".join([head, *problems]))
    return plans


async def validate_all_off_loop(tasks: Sequence[Task]) -> list[Plan]:
    """:func:`validate_all` in a validation worker thread: no ``stat`` on the event loop."""
    return await _THREADS.run(validate_all, list(tasks))


async def validate_off_loop(task: Task) -> Plan:
    """:func:`validate` with no ``stat`` on the event loop.

    A task with a local input is checked in a validation worker thread (a
    ``stat`` on a network mount can block for seconds); one that names only
    URLs touches no disk, and is checked at once without a thread hop.
    """
    if not isinstance(task, Task):
        raise InvalidTask(f"expected a Task, got {type(task).__name__}")
    if any(_names_a_local_path(source) for source in task.inputs.values()):
        return await _THREADS.run(validate, task)
    return validate(task)


def _names_a_local_path(source: object) -> bool:
    return isinstance(source, os.PathLike) or (isinstance(source, str) and "://" not in source)


def _check_executors(task: Task, where: str) -> None:
    if not task.executors:
        raise InvalidTask(f"{where}: executors: at least one executor is required")
    for index, executor in enumerate(task.executors):
        key = f"executors[{index}]"
        if not isinstance(executor.image, str) or not executor.image.strip():
            raise InvalidTask(f"{where}: {key}.image: must be a non-empty string")
        command = executor.command
        if isinstance(command, str) or not command or not all(isinstance(a, str) for a in command):
            raise InvalidTask(f"{where}: {key}.command: must be a non-empty list of strings")
        for attr in ("workdir", "stdin"):
            value = getattr(executor, attr)
            if value is not None:
                _container_path(value, where, f"{key}.{attr}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in executor.env.items()):
            raise InvalidTask(f"{where}: {key}.env: keys and values must be strings")


def _container_path(path: object, where: str, key: str) -> str:
    if not isinstance(path, str) or not posixpath.isabs(path):
        raise InvalidTask(f"{where}: {key}: container path must be absolute, got {path!r}")
    return posixpath.normpath(path)


def _claim(seen: dict[str, str], normal: str, where: str, key: str) -> None:
    if normal in seen:
        raise InvalidTask(f"{where}: {key}: container path {normal!r} also used by {seen[normal]}")
    seen[normal] = key


def _classify(path: str, source: InputSource, where: str, key: str) -> LocalInput | UrlInput:
    if isinstance(source, RemoteFile | RemoteDirectory):
        return UrlInput(path, source.url, isinstance(source, RemoteDirectory))
    if isinstance(source, str) and "://" in source:
        problem = scheme_problem(source)
        if problem is not None:
            raise InvalidTask(f"{where}: {key}: {problem}")
        return UrlInput(path, source, source.endswith("/"))
    if not isinstance(source, str | os.PathLike):
        raise InvalidTask(f"{where}: {key}: expected a path, URL or output, got {type(source)}")
    return _local(path, Path(source), where, key)


def _local(path: str, local: Path, where: str, key: str) -> LocalInput:
    try:
        mode = local.stat().st_mode
    except FileNotFoundError:
        raise InvalidTask(f"{where}: {key}: local path does not exist: {local}") from None
    except OSError as exc:
        raise InvalidTask(f"{where}: {key}: cannot read {local}: {exc.strerror}") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InvalidTask(f"{where}: {key}: not a regular file or directory: {local}")
    if not os.access(local, os.R_OK | (os.X_OK if stat.S_ISDIR(mode) else 0)):
        raise InvalidTask(f"{where}: {key}: permission denied: {local}")
    return LocalInput(path, local.absolute(), stat.S_ISDIR(mode))


def _output(name: str, path: str, seen: dict[str, str], where: str) -> OutputDecl:
    key = f"outputs[{name!r}]"
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidTask(f"{where}: {key}: output names use letters, digits, '.', '_', '-'")
    _claim(seen, _container_path(path, where, key), where, key)
    return OutputDecl(name, path, path.endswith("/"))
