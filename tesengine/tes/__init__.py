"""The GA4GH TES v1.1 API: wire models and an async client."""

from __future__ import annotations

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
    Task,
    TaskLog,
    View,
)
from .query import StatePage

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
    "Resources",
    "ServiceInfo",
    "ServiceType",
    "State",
    "StatePage",
    "Task",
    "TaskLog",
    "TesClient",
    "View",
]
