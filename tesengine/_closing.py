"""``async with`` for objects that own resources and release them in ``aclose()``."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncClosing:
    """Mixin: ``async with obj:`` returns ``obj`` and awaits ``obj.aclose()`` on exit."""

    async def aclose(self) -> None:
        """Release every resource; safe to call more than once."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
