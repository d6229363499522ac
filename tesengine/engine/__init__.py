"""The engine: submit tasks, poll them, resolve them to lazy outputs."""

from __future__ import annotations

from .backend import TesBackend
from .events import EngineEvents, NullEvents
from .outputs import RemoteDirectory, RemoteFile
from .result import ExecutorResult, TaskResult
from .run import TaskRun
from .spec import Executor, Resources, Task

__all__ = [
    "EngineEvents",
    "Executor",
    "ExecutorResult",
    "NullEvents",
    "RemoteDirectory",
    "RemoteFile",
    "Resources",
    "Task",
    "TaskResult",
    "TaskRun",
    "TesBackend",
]
