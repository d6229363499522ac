"""Content digests of local inputs: Sprocket-compatible, cached, off the event loop.

>>> async with Digester() as digester:                     # doctest: +SKIP
...     d = await digester.digest("reads/")
...     d.key
'directory/5f0c...'

:func:`digest` is the shortcut on a process-wide default :class:`Digester`.
The byte layout of directory digests is in :mod:`tesengine.digest.layout`.
"""

from __future__ import annotations

import os

from .engine import Digester, DigestProgress, DigestStats, NullProgress, default_cache_dir
from .layout import EMPTY_DIRECTORY, Digest, DigestKind, FileEntry, directory_digest

__all__ = [
    "EMPTY_DIRECTORY",
    "Digest",
    "DigestKind",
    "DigestProgress",
    "DigestStats",
    "Digester",
    "FileEntry",
    "NullProgress",
    "default_cache_dir",
    "default_digester",
    "digest",
    "directory_digest",
]

_default: Digester | None = None


def default_digester() -> Digester:
    """The process-wide :class:`Digester` behind :func:`digest` (created on first use)."""
    global _default  # noqa: PLW0603 - one lazily created default, like logging's root logger
    if _default is None:
        _default = Digester()
    return _default


async def digest(path: str | os.PathLike[str]) -> Digest:
    """The digest of a file or directory, using :func:`default_digester`."""
    return await default_digester().digest(path)
