"""Object storage and staging of local inputs at content addresses.

:class:`Storage` does object operations on any URL (``s3://``, ``gs://``,
``az://`` and Azure's ``https://<account>.blob.core.windows.net/...``,
``file://``, ``memory://``, read-only ``http(s)://``). :class:`Stager`
uploads local files and directories to ``<inputs>/file/<hex>`` and
``<inputs>/directory/<hex>/...`` once, atomically and verified.
"""

from __future__ import annotations

from .ops import ObjectInfo, Storage
from .staging import (
    MARKER_PREFIX,
    NullStagingProgress,
    Stager,
    StageResult,
    StagingProgress,
    StagingStats,
)
from .urls import Location, is_url, join_url, parse_url

__all__ = [
    "MARKER_PREFIX",
    "Location",
    "NullStagingProgress",
    "ObjectInfo",
    "StageResult",
    "Stager",
    "StagingProgress",
    "StagingStats",
    "Storage",
    "is_url",
    "join_url",
    "parse_url",
]
