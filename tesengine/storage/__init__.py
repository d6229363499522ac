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

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

#: Public name -> its module: importing ``tesengine.storage.urls`` (the scheme
#: registry, which configuration checks read) must not load obstore.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("ObjectInfo", "Storage"), ".ops"),
    **dict.fromkeys(
        ("NullStagingProgress", "StageResult", "StagingProgress", "StagingStats"), ".reports"
    ),
    **dict.fromkeys(("MARKER_PREFIX", "Stager"), ".staging"),
    "StorageLike": ".protocol",
    **dict.fromkeys(("Location", "is_url", "join_url", "parse_url"), ".urls"),
}

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
    "StorageLike",
    "is_url",
    "join_url",
    "parse_url",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

if TYPE_CHECKING:  # what type checkers see: the same names, eagerly
    from .ops import ObjectInfo, Storage
    from .protocol import StorageLike
    from .reports import NullStagingProgress, StageResult, StagingProgress, StagingStats
    from .staging import MARKER_PREFIX, Stager
    from .urls import Location, is_url, join_url, parse_url
