"""The engine: submit tasks, poll them, resolve them to lazy outputs."""

from __future__ import annotations

from .backend import TaskClient, TesBackend
from .events import EngineEvents, NullEvents, RunInfo, TransferProgress
from .logs import ExecutorLogs, TaskLogs
from .outputs import RemoteDirectory, RemoteFile
from .result import ExecutorResult, TaskResult
from .run import TaskRun
from .spec import Executor, Resources, Task

__all__ = [
    "EngineEvents",
    "Executor",
    "ExecutorLogs",
    "ExecutorResult",
    "NullEvents",
    "RemoteDirectory",
    "RemoteFile",
    "Resources",
    "RunInfo",
    "Task",
    "TaskClient",
    "TaskLogs",
    "TaskResult",
    "TaskRun",
    "TesBackend",
    "TransferProgress",
]
