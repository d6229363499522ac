"""One task's life: QUEUED -> INITIALIZING -> RUNNING -> COMPLETE or an error state.

INITIALIZING stages the inputs, RUNNING runs the executors in order (stopping
at the first non-zero exit unless ``ignore_error``), then the outputs are
uploaded and the task is COMPLETE. A non-zero exit is EXECUTOR_ERROR; a
failure to stage, upload or start is SYSTEM_ERROR with a system log saying
what failed. A cancel moves the task to CANCELING (by the API) and, once
every process is gone, CANCELED.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..errors import TesEngineError
from ..storage import Storage
from ..tes.models import State
from .exec_io import NO_STREAMS, open_streams, read_tails
from .runtime.base import ExecRequest, ExecSpec, Mount, Runtime
from .safe_open import in_file_pool
from .staging_io import AllowedDirs, fetch_inputs, push_outputs
from .states import Event, advance
from .store import TaskRecord, TaskStore
from .task_doc import ExecutorLogDoc, TaskDoc, TaskLogDoc
from .task_request import ValidTask
from .task_tree import plan_mounts, prepare_dirs

__all__ = [
    "Services",
    "move",
    "new_task_doc",
    "recover",
    "run_task",
]

log = logging.getLogger("tesengine.server")

TAIL_BYTES = 16 * 1024
#: Removing a task's tree may take long (many files); it is abandoned, not waited for, past this.
CLEANUP_TIMEOUT = 600.0


@dataclass(frozen=True, slots=True)
class Services:
    """What running a task needs from the server."""

    store: TaskStore
    runtime: Runtime
    io: Storage | None
    allowed: AllowedDirs
    #: Where each task's directory is made (``<work>/tasks`` unless the sandbox
    #: user cannot reach the work dir: see :func:`~.runtime.sandbox_user.tasks_base`).
    tasks_dir: Path
    keep_work: bool = False


def now() -> str:
    """The current UTC time in RFC 3339."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_task_doc(valid: ValidTask) -> TaskDoc:
    """A stored task document for a validated request: id, QUEUED, creation time."""
    # valid.doc holds TaskRequestDoc keys only (the strict model forbids any other), so
    # none of the server's own: mypy cannot know that of a TypedDict unpacked here.
    doc: TaskDoc = {
        "id": uuid.uuid4().hex,
        "state": State.QUEUED.value,
        "creation_time": now(),
        **valid.doc,  # type: ignore[typeddict-item]
    }
    if valid.warnings:
        doc["logs"] = [{"logs": [], "outputs": [], "system_logs": list(valid.warnings)}]
    return doc


def move(store: TaskStore, record: TaskRecord, event: Event) -> State:
    """Move ``record`` to the state ``event`` leads to (unchanged: nothing is written)."""
    before = record.state
    after = advance(before, event)
    if after is not before:
        record.doc["state"] = after.value
        store.touch(record)
    return after


def task_log(doc: TaskDoc) -> TaskLogDoc:
    """The task's (single) TaskLog, created on first use."""
    logs = doc.setdefault("logs", [])
    if not logs:
        logs.append({"logs": [], "outputs": []})
    return logs[-1]


def add_system_log(doc: TaskDoc, message: str) -> None:
    """Append ``message`` to the task's system logs (FULL view only)."""
    task_log(doc).setdefault("system_logs", []).append(message)


def recover(store: TaskStore, record: TaskRecord) -> bool:
    """Fix a task found at start-up; True when it should be queued again."""
    state = record.state
    if advance(state, Event.RESTARTED) is State.SYSTEM_ERROR:
        add_system_log(record.doc, f"the server restarted while the task was {state}")
        task_log(record.doc).setdefault("end_time", now())
    return move(store, record, Event.RESTARTED) is State.QUEUED


async def run_task(record: TaskRecord, svc: Services) -> None:
    """Run ``record`` from QUEUED to a final state; never raises but for shutdown."""
    doc = record.doc
    entry = task_log(doc)
    entry["start_time"] = now()
    move(svc.store, record, Event.START)
    task_dir = svc.tasks_dir / record.id
    try:
        await _run(record, svc, task_dir / "root", task_dir / "logs")
    except asyncio.CancelledError:
        if record.state is State.CANCELING:
            _finish(svc, record, Event.STOPPED)
            return
        add_system_log(doc, "the server shut down while the task was running")
        _finish(svc, record, Event.SYSTEM_FAILED)
        raise
    except (TesEngineError, OSError) as exc:
        add_system_log(doc, f"{type(exc).__name__}: {exc}")
        _finish(svc, record, Event.SYSTEM_FAILED)
    except Exception as exc:  # a server bug must still end the task, with a trace in the log
        log.exception("task %s failed inside the server", record.id)
        add_system_log(doc, f"internal server error: {type(exc).__name__}: {exc}")
        _finish(svc, record, Event.SYSTEM_FAILED)
    finally:
        if svc.runtime.stages_files and not svc.keep_work:
            await _remove(task_dir)


async def _remove(task_dir: Path) -> None:
    # rmtree never follows the task's links; it runs in the bounded task-file pool.
    try:
        await in_file_pool(_rmtree, task_dir, seconds=CLEANUP_TIMEOUT)
    except TesEngineError as exc:
        log.warning("could not remove %s: %s", task_dir, exc)


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _finish(svc: Services, record: TaskRecord, event: Event) -> None:
    task_log(record.doc)["end_time"] = now()
    move(svc.store, record, event)


async def _run(record: TaskRecord, svc: Services, root: Path, logs_dir: Path) -> None:
    doc = record.doc
    mounts: tuple[Mount, ...] = ()
    if svc.runtime.stages_files:
        mounts = plan_mounts(root, doc, svc.runtime.reserved)
    # What can never run fails here, before anything is staged.
    specs = [_spec(record, i, mounts) for i in range(len(doc["executors"]))]
    for spec in specs:
        svc.runtime.preflight(spec)
    if svc.runtime.stages_files:
        await in_file_pool(_make_dirs, root, doc, logs_dir)
        await fetch_inputs(root, doc, svc.io, svc.allowed)
    move(svc.store, record, Event.STAGED)
    for spec, executor in zip(specs, doc["executors"], strict=True):
        code = await _run_executor(record, svc, spec, root=root, logs_dir=logs_dir)
        if code != 0 and not executor.get("ignore_error"):
            _finish(svc, record, Event.EXECUTOR_FAILED)
            return
    if svc.runtime.stages_files:
        task_log(doc)["outputs"] = await push_outputs(root, doc, svc.io, svc.allowed)
    _finish(svc, record, Event.SUCCEEDED)


def _make_dirs(root: Path, doc: TaskDoc, logs_dir: Path) -> None:
    prepare_dirs(root, doc)
    logs_dir.mkdir(parents=True, exist_ok=True)


def _spec(record: TaskRecord, index: int, mounts: tuple[Mount, ...]) -> ExecSpec:
    executor = record.doc["executors"][index]
    return ExecSpec(
        task_id=record.id,
        index=index,
        image=executor["image"],
        command=tuple(executor["command"]),
        workdir=executor.get("workdir"),
        env=executor.get("env", {}),
        mounts=mounts,
    )


async def _run_executor(
    record: TaskRecord, svc: Services, spec: ExecSpec, *, root: Path, logs_dir: Path
) -> int:
    executor = record.doc["executors"][spec.index]
    stages = svc.runtime.stages_files
    # A runtime that stages nothing runs nothing: no descriptor, and no trip to the pool.
    streams = (
        await in_file_pool(open_streams, root, logs_dir, spec, executor) if stages else NO_STREAMS
    )
    start_time = now()
    try:
        request = ExecRequest(spec, streams.stdin, streams.stdout, streams.stderr)
        code = await svc.runtime.run(request)
    finally:
        streams.close()
    entry: ExecutorLogDoc = {"start_time": start_time, "end_time": now(), "exit_code": code}
    if stages:
        entry["stdout"], entry["stderr"] = await in_file_pool(read_tails, streams, TAIL_BYTES)
    task_log(record.doc)["logs"].append(entry)
    svc.store.touch(record)
    return code
