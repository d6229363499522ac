"""What staging tells its caller: one result per input, progress hooks, counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from ..redact import redact_repr

__all__ = ["NullStagingProgress", "StageResult", "StagingProgress", "StagingStats"]


@dataclass(frozen=True, slots=True)
class StageResult:
    """Where one input ended up, and whether this call uploaded it."""

    source: str
    url: str
    kind: Literal["file", "directory", "url"]
    uploaded: bool

    def __repr__(self) -> str:
        return redact_repr(self)  # the URL carries the inputs URL's query (a SAS)


class StagingProgress(Protocol):
    """Hooks for a progress display; called on the event loop, keep them quick.

    Hashing before upload reports through the :class:`Digester`'s own
    progress; these cover the upload side.
    """

    def bytes_uploaded(self, n: int) -> None:
        """``n`` more bytes were read, re-hashed and handed to the store."""

    def file_uploaded(self, url: str, size: int) -> None:
        """An object of ``size`` bytes was written at ``url``."""

    def file_skipped(self, url: str, size: int) -> None:
        """``url`` was already present; nothing was sent (``size`` -1 if unknown)."""


class NullStagingProgress:
    """Progress hooks that do nothing; subclass it to implement only some."""

    def bytes_uploaded(self, n: int) -> None:
        """Ignore."""

    def file_uploaded(self, url: str, size: int) -> None:
        """Ignore."""

    def file_skipped(self, url: str, size: int) -> None:
        """Ignore."""


@dataclass(slots=True)
class StagingStats:
    """Counters of one :class:`Stager` (requests it sent and what they did)."""

    heads: int = 0
    lists: int = 0
    puts: int = 0
    files_uploaded: int = 0
    files_skipped: int = 0
    bytes_uploaded: int = 0
    #: Batches whose existence checks were decided by listing instead of HEADs.
    list_plans: int = 0
    #: Why the last large batch was listed or HEADed (also logged at DEBUG).
    last_plan: str = ""

    @property
    def requests(self) -> int:
        """Requests sent to the store (a listing page counts as one)."""
        return self.heads + self.lists + self.puts
