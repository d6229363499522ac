"""The storage a backend needs: what :class:`Stager`, the output cache and
the miniwdl integration call, so a user can hand ``TesBackend(storage=...)``
any object with these methods (a wrapper that counts or logs, a cache).

:class:`~tesengine.storage.Storage` satisfies it (checked statically below).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .ops import ObjectInfo


class StorageLike(Protocol):
    """Object operations on URLs, as :class:`~tesengine.storage.Storage` does them.

    Errors are :class:`~tesengine.StorageError` (``ObjectNotFound`` for a
    missing object). The backend never closes a storage passed in.
    """

    async def exists(self, url: str) -> bool:
        """True when an object exists at ``url``."""
        ...

    async def head(self, url: str) -> ObjectInfo:
        """The object's metadata; ``ObjectNotFound`` when absent."""
        ...

    async def put_bytes(self, url: str, data: bytes, *, create_only: bool = False) -> bool:
        """Write ``data``; False when ``create_only`` and the object exists."""
        ...

    async def put_stream(
        self, url: str, chunks: AsyncIterable[bytes], *, create_only: bool = False
    ) -> bool:
        """Stream ``chunks`` to ``url`` atomically; as :meth:`put_bytes` for the result."""
        ...

    async def read_bytes(self, url: str) -> bytes:
        """The whole object (small ones: logs, markers)."""
        ...

    async def download(self, url: str, dest: Path) -> Path:
        """Write the object to ``dest`` atomically; returns ``dest``."""
        ...

    def walk(self, prefix_url: str) -> AsyncIterator[tuple[str, ObjectInfo]]:
        """``(relative name, info)`` of every object under ``prefix_url``."""
        ...


@runtime_checkable
class OrderedListing(Protocol):
    """Optional: listings in key order from an offset, for batched existence checks.

    A :class:`StorageLike` that also has these methods lets a
    :class:`~tesengine.storage.Stager` decide a large batch of inputs by
    listing instead of one HEAD each; without them it sends HEADs.
    """

    def lists_in_order(self, prefix_url: str) -> bool:
        """True when :meth:`list_pages` under ``prefix_url`` comes in key order."""
        ...

    def list_pages(
        self, prefix_url: str, *, start_after: str | None = None
    ) -> AsyncIterator[list[tuple[str, int]]]:
        """Pages (one request each) of ``(name relative to the prefix, size)``."""
        ...


if TYPE_CHECKING:  # the concrete storage must stay a StorageLike
    from .ops import Storage

    _: type[StorageLike] = Storage
    _ordered: type[OrderedListing] = Storage
