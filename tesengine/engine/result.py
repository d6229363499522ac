"""Pure interpretation of a finished task's FULL view: a result or a failure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from ..errors import TaskFailed
from ..redact import redact_repr
from ..tes import models as wire
from .outputs import OutputReader, RemoteDirectory, RemoteFile
from .request import OutputTarget

_Out = TypeVar("_Out", RemoteFile, RemoteDirectory)


@dataclass(frozen=True, slots=True)
class ExecutorResult:
    """One executor's outcome, with the server's (possibly truncated) log tails."""

    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    start_time: str | None = None
    end_time: str | None = None


@dataclass(frozen=True, slots=True)
class TaskResult:
    """What a successful :class:`~tesengine.TaskRun` resolves to."""

    id: str
    name: str
    state: wire.State
    outputs: Mapping[str, RemoteFile | RemoteDirectory]
    executors: tuple[ExecutorResult, ...] = ()
    system_logs: tuple[str, ...] = ()
    start_time: str | None = None
    end_time: str | None = None
    logs: RemoteDirectory | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return redact_repr(self)  # output URLs and log tails may hold secrets

    @property
    def exit_codes(self) -> tuple[int | None, ...]:
        """Exit code of every executor, in order."""
        return tuple(e.exit_code for e in self.executors)

    def file(self, name: str) -> RemoteFile:
        """The output file declared as ``name``.

        Raises ``KeyError`` naming the declared outputs when there is no such
        output, ``TypeError`` when ``name`` is a directory.
        """
        return _output(self, name, RemoteFile)

    def directory(self, name: str) -> RemoteDirectory:
        """The output directory declared as ``name`` (errors as :meth:`file`)."""
        return _output(self, name, RemoteDirectory)


def _output(result: TaskResult, name: str, kind: type[_Out]) -> _Out:
    try:
        value = result.outputs[name]
    except KeyError:
        declared = ", ".join(repr(n) for n in sorted(result.outputs)) or "none"
        raise KeyError(
            f"task {result.name!r} has no output {name!r} (declared: {declared})"
        ) from None
    if not isinstance(value, kind):
        what, ask = ("a directory", "directory") if kind is RemoteFile else ("a file", "file")
        raise TypeError(
            f"task {result.name!r}: output {name!r} is {what}: use result.{ask}({name!r})"
        )
    return value


def executor_results(task: wire.TesTask) -> tuple[ExecutorResult, ...]:
    """Executor outcomes of the task's last attempt."""
    last = task.logs[-1] if task.logs else None
    logs = last.logs if last else []
    return tuple(
        ExecutorResult(
            _exit_code(task, index, logs),
            log.stdout or "",
            log.stderr or "",
            log.start_time,
            log.end_time,
        )
        for index, log in enumerate(logs)
    )


def _exit_code(task: wire.TesTask, index: int, logs: list[wire.ExecutorLog]) -> int | None:
    """The executor's exit code, or 0 where the server left a success out.

    Servers that speak protobuf JSON without unpopulated fields (Funnel)
    omit ``exit_code`` when it is 0. An executor without ``ignore_error``
    exited 0 when the task is COMPLETE or a later executor ran; otherwise
    a missing code stays unknown (None).
    """
    code = logs[index].exit_code
    if code is not None:
        return code
    executor = task.executors[index] if index < len(task.executors) else None
    if executor is None or executor.ignore_error:
        return None
    succeeded = task.current_state is wire.State.COMPLETE or index < len(logs) - 1
    return 0 if succeeded else None


def system_logs(task: wire.TesTask) -> tuple[str, ...]:
    """Every system log line of every attempt."""
    return tuple(line for attempt in task.logs or [] for line in attempt.system_logs or [])


def make_outputs(
    targets: tuple[OutputTarget, ...], reader: OutputReader | None
) -> dict[str, RemoteFile | RemoteDirectory]:
    """Lazy output values keyed by their declared names."""
    return {
        t.name: (RemoteDirectory if t.directory else RemoteFile)(t.url, reader) for t in targets
    }


def interpret(
    task: wire.TesTask,
    name: str,
    outputs: Mapping[str, RemoteFile | RemoteDirectory],
    logs: RemoteDirectory | None,
) -> TaskResult:
    """``task`` (FULL view, final state) as a :class:`TaskResult`; raises on failure."""
    state = task.current_state
    executors = executor_results(task)
    syslogs = system_logs(task)
    if state is not wire.State.COMPLETE:
        raise failure(task, name, state, executors, syslogs)
    last = task.logs[-1] if task.logs else None
    return TaskResult(
        id=task.id or "",
        name=name,
        state=state,
        outputs=dict(outputs),
        executors=executors,
        system_logs=syslogs,
        start_time=last.start_time if last else None,
        end_time=last.end_time if last else None,
        logs=logs,
    )


def failure(
    task: wire.TesTask,
    name: str,
    state: wire.State,
    executors: tuple[ExecutorResult, ...],
    syslogs: tuple[str, ...],
) -> TaskFailed:
    """A :class:`TaskFailed` whose message says in one line what happened."""
    detail = describe(state, executors, syslogs)
    failed = next((e for e in executors if e.exit_code not in (0, None)), None)
    return TaskFailed(
        f"task {name!r} (id {task.id}) {state.value}: {detail}",
        task_id=task.id or "",
        state=state.value,
        exit_codes=[e.exit_code for e in executors],
        stderr_tail=_tail(failed.stderr if failed else "", lines=20),
        system_logs=syslogs,
    )


def describe(
    state: wire.State, executors: tuple[ExecutorResult, ...], syslogs: tuple[str, ...]
) -> str:
    """One line: which executor exited how, or the last system log."""
    for index, executor in enumerate(executors):
        if executor.exit_code not in (0, None):
            last = _tail(executor.stderr, lines=1)
            return f"executor {index} exited {executor.exit_code}" + (f": {last}" if last else "")
    if syslogs:
        return _tail(syslogs[-1], lines=1) or state.value.lower()
    return {
        wire.State.CANCELED: "the task was canceled",
        wire.State.SYSTEM_ERROR: "the server reported a system error without details",
        wire.State.PREEMPTED: "the task was preempted too many times",
    }.get(state, f"ended in state {state.value}")


def _tail(text: str, *, lines: int) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:]).strip()
