"""tesengine: run tasks on any GA4GH Task Execution Service server, from asyncio.

This module is the one public door: everything a user needs is re-exported
here, and ``__all__`` lists it in sorted order::

    from tesengine import TesBackend, Task, Executor, load_config

    async with TesBackend(load_config("sprocket.toml")) as backend:
        run = await backend.submit(Task(name="hi", executors=[Executor("alpine", ["echo", "hi"])]))
        result = await run
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the submodule that defines it. Importing ``tesengine`` loads
#: none of them (PEP 562 ``__getattr__``): the command line and ``import
#: tesengine.errors`` must not pay ~0.6 s for aiohttp, pydantic and obstore.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("Config", "load_config"), "config"),
    **dict.fromkeys(("Digest", "Digester"), "digest"),
    **dict.fromkeys(
        (
            "EngineEvents",
            "Executor",
            "ExecutorResult",
            "RemoteDirectory",
            "RemoteFile",
            "Resources",
            "Task",
            "TaskResult",
            "TaskRun",
            "TesBackend",
        ),
        "engine",
    ),
    **dict.fromkeys(
        (
            "AuthError",
            "ConfigError",
            "DigestError",
            "InputChanged",
            "InvalidTask",
            "ObjectNotFound",
            "OutputMissing",
            "ResponseTooLarge",
            "StorageError",
            "TaskFailed",
            "TesApiError",
            "TesEngineError",
            "TesError",
            "TesUnavailable",
            "UnsafeReply",
        ),
        "errors",
    ),
    **dict.fromkeys(("StageResult", "Stager", "Storage"), "storage"),
    **dict.fromkeys(("State", "TesClient", "View"), "tes"),
}

# Literal and sorted, so type checkers see the re-exports; a test checks it matches.
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


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tesengine' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, eagerly
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
