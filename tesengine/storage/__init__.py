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

:mod:`.urls` is pure (no obstore, no config), so :mod:`tesengine.config`
reads the scheme registry from it: the names below are imported lazily
(PEP 562), which keeps ``storage.urls`` importable from ``config``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

_EXPORTS = {
    **dict.fromkeys(("ObjectInfo", "Storage"), "ops"),
    **dict.fromkeys(
        (
            "MARKER_PREFIX",
            "NullStagingProgress",
            "Stager",
            "StageResult",
            "StagingProgress",
            "StagingStats",
        ),
        "staging",
    ),
    **dict.fromkeys(("Location", "is_url", "join_url", "parse_url"), "urls"),
}


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
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
