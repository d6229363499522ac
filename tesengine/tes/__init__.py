"""The GA4GH TES v1.1 API: wire models and an async client.

Cheap to import: each name is loaded from its submodule on first use (PEP
562 ``__getattr__``), so ``from tesengine.tes.models import State`` (the
server does) loads neither the client nor aiohttp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

#: Public name -> the module that defines it (relative to this package).
_EXPORTS: dict[str, str] = {
    "AuthProvider": "..auth",
    **dict.fromkeys(("StatePage", "TaskQuery"), ".query"),
    **dict.fromkeys(("RequestCounts", "Transport"), ".transport"),
    "TesClient": ".client",
    **dict.fromkeys(
        (
            "SUBMISSION_TAG",
            "CancelTaskResponse",
            "CreateTaskResponse",
            "Executor",
            "ExecutorLog",
            "FileType",
            "Input",
            "ListTasksResponse",
            "Organization",
            "Output",
            "OutputFileLog",
            "Resources",
            "ServiceInfo",
            "ServiceType",
            "State",
            "TesTask",
            "TaskLog",
            "View",
        ),
        ".models",
    ),
}

__all__ = [
    "SUBMISSION_TAG",
    "AuthProvider",
    "CancelTaskResponse",
    "CreateTaskResponse",
    "Executor",
    "ExecutorLog",
    "FileType",
    "Input",
    "ListTasksResponse",
    "Organization",
    "Output",
    "OutputFileLog",
    "RequestCounts",
    "Resources",
    "ServiceInfo",
    "ServiceType",
    "State",
    "StatePage",
    "TaskLog",
    "TaskQuery",
    "TesClient",
    "TesTask",
    "Transport",
    "View",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)


if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, eagerly
    from ..auth import AuthProvider
    from .client import TesClient
    from .models import (
        SUBMISSION_TAG,
        CancelTaskResponse,
        CreateTaskResponse,
        Executor,
        ExecutorLog,
        FileType,
        Input,
        ListTasksResponse,
        Organization,
        Output,
        OutputFileLog,
        Resources,
        ServiceInfo,
        ServiceType,
        State,
        TaskLog,
        TesTask,
        View,
    )
    from .query import StatePage, TaskQuery
    from .transport import RequestCounts, Transport
