"""tesengine: run tasks on any GA4GH Task Execution Service server, from asyncio.

This module is the one public door: everything an embedder needs is
re-exported here, and ``__all__`` lists it in sorted order::

    from tesengine import Executor, Task, TesBackend, load_config

    async with TesBackend(load_config("sprocket.toml")) as backend:
        run = await backend.submit(Task(name="hi", executors=[Executor("alpine", ["echo", "hi"])]))
        result = await run

Importing it is cheap: no submodule but :mod:`._lazy` (and not even :mod:`typing`)
is loaded until a name is first used (PEP 562 ``__getattr__``), so the command line and
``import tesengine.errors`` do not pay ~0.6 s for aiohttp, pydantic and obstore.
``__version__`` comes from the installed package's metadata, also on first use.
"""

from ._lazy import lazy_exports

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)

#: Public name -> the submodule that defines it (relative to this package).
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        (
            "AzureStorage",
            "BackendConfig",
            "BasicAuthConfig",
            "BearerAuthConfig",
            "Config",
            "GoogleStorage",
            "S3Storage",
            "StorageConfig",
            "load_config",
        ),
        ".config",
    ),
    **dict.fromkeys(
        (
            "AuthProvider",
            "BasicAuth",
            "BearerToken",
        ),
        ".auth",
    ),
    **dict.fromkeys(
        (
            "Digest",
            "Digester",
        ),
        ".digest",
    ),
    **dict.fromkeys(
        (
            "embedded_backend",
            "embedded_config",
        ),
        ".local_runs",
    ),
    **dict.fromkeys(
        (
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
        ),
        ".engine",
    ),
    **dict.fromkeys(
        (
            "AuthError",
            "ConfigError",
            "ConnectError",
            "ConnectionLost",
            "ContentMismatch",
            "DigestError",
            "ExchangeTimeout",
            "InputChanged",
            "InvalidTask",
            "NotReady",
            "ObjectNotFound",
            "OutputMissing",
            "ProtocolError",
            "ResponseTooLarge",
            "StorageError",
            "TaskFailed",
            "TesApiError",
            "TesEngineError",
            "TesError",
            "TesUnavailable",
            "TransportError",
            "UnsafeReply",
        ),
        ".errors",
    ),
    **dict.fromkeys(
        (
            "StageResult",
            "Stager",
            "Storage",
            "StorageLike",
        ),
        ".storage",
    ),
    **dict.fromkeys(
        (
            "State",
            "TesClient",
            "View",
        ),
        ".tes",
    ),
}

# Literal and sorted, so type checkers see the re-exports; a test checks it matches.
__all__ = [
    "AuthError",
    "AuthProvider",
    "AzureStorage",
    "BackendConfig",
    "BasicAuth",
    "BasicAuthConfig",
    "BearerAuthConfig",
    "BearerToken",
    "Config",
    "ConfigError",
    "ConnectError",
    "ConnectionLost",
    "ContentMismatch",
    "Digest",
    "DigestError",
    "Digester",
    "EngineEvents",
    "ExchangeTimeout",
    "Executor",
    "ExecutorLogs",
    "ExecutorResult",
    "GoogleStorage",
    "InputChanged",
    "InvalidTask",
    "NotReady",
    "NullEvents",
    "ObjectNotFound",
    "OutputMissing",
    "ProtocolError",
    "RemoteDirectory",
    "RemoteFile",
    "Resources",
    "ResponseTooLarge",
    "RunInfo",
    "S3Storage",
    "StageResult",
    "Stager",
    "State",
    "Storage",
    "StorageConfig",
    "StorageError",
    "StorageLike",
    "Task",
    "TaskClient",
    "TaskFailed",
    "TaskLogs",
    "TaskResult",
    "TaskRun",
    "TesApiError",
    "TesBackend",
    "TesClient",
    "TesEngineError",
    "TesError",
    "TesUnavailable",
    "TransferProgress",
    "TransportError",
    "UnsafeReply",
    "View",
    "__version__",
    "embedded_backend",
    "embedded_config",
    "load_config",
]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tesengine")
    except PackageNotFoundError:  # a source tree on PYTHONPATH, not installed
        return "0+unknown"


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__, {"__version__": _version})


if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, eagerly
    __version__: str
    from .auth import (
        AuthProvider,
        BasicAuth,
        BearerToken,
    )
    from .config import (
        AzureStorage,
        BackendConfig,
        BasicAuthConfig,
        BearerAuthConfig,
        Config,
        GoogleStorage,
        S3Storage,
        StorageConfig,
        load_config,
    )
    from .digest import (
        Digest,
        Digester,
    )
    from .engine import (
        EngineEvents,
        Executor,
        ExecutorLogs,
        ExecutorResult,
        NullEvents,
        RemoteDirectory,
        RemoteFile,
        Resources,
        RunInfo,
        Task,
        TaskClient,
        TaskLogs,
        TaskResult,
        TaskRun,
        TesBackend,
        TransferProgress,
    )
    from .errors import (
        AuthError,
        ConfigError,
        ConnectError,
        ConnectionLost,
        ContentMismatch,
        DigestError,
        ExchangeTimeout,
        InputChanged,
        InvalidTask,
        NotReady,
        ObjectNotFound,
        OutputMissing,
        ProtocolError,
        ResponseTooLarge,
        StorageError,
        TaskFailed,
        TesApiError,
        TesEngineError,
        TesError,
        TesUnavailable,
        TransportError,
        UnsafeReply,
    )
    from .local_runs import (
        embedded_backend,
        embedded_config,
    )
    from .storage import (
        Stager,
        StageResult,
        Storage,
        StorageLike,
    )
    from .tes import (
        State,
        TesClient,
        View,
    )
