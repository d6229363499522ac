"""Object storage and staging of local inputs at content addresses.

:class:`Storage` does object operations on any URL (``s3://``, ``gs://``,
``az://`` and Azure's ``https://<account>.blob.core.windows.net/...``,
``file://``, ``memory://``, read-only ``http(s)://``). :class:`Stager`
uploads local files and directories to ``<inputs>/file/<hex>`` and
``<inputs>/directory/<hex>/...`` once, atomically and verified.

Local file work, one way here and in :mod:`tesengine.digest`: bytes
streamed between a file and the event loop go through aiofiles (downloads,
plain uploads); heavy blocking work runs on a
:class:`~tesengine.thread_limits.ThreadLimit` of its kind (the digest
pool, a stager's upload threads: anyio ``CapacityLimiter``s, never the
loop's default executor); small metadata calls (stat, mkdir, rename) use
``anyio.Path``.
"""

from __future__ import annotations

from .ops import ObjectInfo, Storage
from .reports import NullStagingProgress, StageResult, StagingProgress, StagingStats
from .staging import MARKER_PREFIX, Stager
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
