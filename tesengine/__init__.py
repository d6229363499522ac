"""tesengine: run tasks on any GA4GH Task Execution Service server, from asyncio.

This module is the one public door: everything a user needs is re-exported
here, and ``__all__`` lists it in sorted order.
"""

from __future__ import annotations

from .config import Config, load_config
from .errors import (
    AuthError,
    ConfigError,
    DigestError,
    InputChanged,
    InvalidTask,
    ObjectNotFound,
    OutputMissing,
    StorageError,
    TaskFailed,
    TesApiError,
    TesEngineError,
    TesError,
    TesUnavailable,
)

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "Config",
    "ConfigError",
    "DigestError",
    "InputChanged",
    "InvalidTask",
    "ObjectNotFound",
    "OutputMissing",
    "StorageError",
    "TaskFailed",
    "TesApiError",
    "TesEngineError",
    "TesError",
    "TesUnavailable",
    "__version__",
    "load_config",
]
