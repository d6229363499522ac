"""Progress hooks, counters and the default cache location of the digest engine."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import platformdirs

__all__ = ["DigestProgress", "DigestStats", "NullProgress", "default_cache_dir"]


class DigestProgress(Protocol):
    """Progress hooks; called on the event loop thread, so keep them quick."""

    def files_found(self, count: int) -> None:
        """``count`` more files are about to be digested."""

    def bytes_hashed(self, n: int) -> None:
        """``n`` more bytes were read and hashed."""

    def file_done(self, path: Path, cached: bool) -> None:
        """``path`` has its digest, from the cache when ``cached``."""


class NullProgress:
    """Progress hooks that do nothing; subclass it to implement only some."""

    def files_found(self, count: int) -> None:
        """Ignore."""

    def bytes_hashed(self, n: int) -> None:
        """Ignore."""

    def file_done(self, path: Path, cached: bool) -> None:
        """Ignore."""


@dataclass(slots=True)
class DigestStats:
    """Running counters of one :class:`Digester` (for tests and reports)."""

    files_hashed: int = 0
    bytes_hashed: int = 0
    files_cached: int = 0


def default_cache_dir() -> Path:
    """``$TESENGINE_CACHE_DIR``, else the platform's user cache dir for tesengine."""
    env = os.environ.get("TESENGINE_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("tesengine"))
