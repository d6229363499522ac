"""tesengine: run tasks on any GA4GH Task Execution Service server, from asyncio.

This module is the one public door: everything a user needs is re-exported
here, and ``__all__`` lists it in sorted order::

    from tesengine import TesBackend, Task, Executor, load_config

    async with TesBackend(load_config("sprocket.toml")) as backend:
        run = await backend.submit(Task(name="hi", executors=[Executor("alpine", ["echo", "hi"])]))
        result = await run
"""

from __future__ import annotations

from .config import Config, load_config
from .digest import Digest, Digester
from .engine import (
    EngineEvents,
    Executor,
    ExecutorResult,
    RemoteDirectory,
    RemoteFile,
    Resources,
    Task,
    TaskResult,
    TaskRun,
    TesBackend,
)
from .errors import (
    AuthError,
    ConfigError,
    DigestError,
    InputChanged,
    InvalidTask,
    ObjectNotFound,
    OutputMissing,
    ResponseTooLarge,
    StorageError,
    TaskFailed,
    TesApiError,
    TesEngineError,
    TesError,
    TesUnavailable,
    UnsafeReply,
)
from .storage import Stager, StageResult, Storage
from .tes import State, TesClient, View

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "Config",
    "ConfigError",
    "Digest",
    "DigestError",
    "Digester",
    "EngineEvents",
    "Executor",
    "ExecutorResult",
    "InputChanged",
    "InvalidTask",
    "ObjectNotFound",
    "OutputMissing",
    "RemoteDirectory",
    "RemoteFile",
    "Resources",
    "ResponseTooLarge",
    "StageResult",
    "Stager",
    "State",
    "Storage",
    "StorageError",
    "Task",
    "TaskFailed",
    "TaskResult",
    "TaskRun",
    "TesApiError",
    "TesBackend",
    "TesClient",
    "TesEngineError",
    "TesError",
    "TesUnavailable",
    "UnsafeReply",
    "View",
    "__version__",
    "load_config",
]
