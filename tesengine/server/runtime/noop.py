"""The noop runtime: every executor succeeds after an optional delay, running nothing.

For measuring clients at scale (Funnel's noop compute plays the same role).
"""

from __future__ import annotations

import asyncio

from .base import ExecRequest, ExecSpec

__all__ = ["NoopRuntime"]


class NoopRuntime:
    """Completes each executor with exit code 0 after ``delay`` seconds."""

    name = "noop"
    stages_files = False
    reserved: frozenset[str] = frozenset()

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def describe(self) -> str:
        """One line for service-info."""
        return f"noop runtime: executors are not run; each succeeds after {self.delay:g}s"

    async def check(self) -> None:
        """Always usable."""

    def preflight(self, spec: ExecSpec) -> None:
        """Nothing is executed, so any executor is fine."""

    async def run(self, request: ExecRequest) -> int:
        """Sleep ``delay`` (cancellable) and report success."""
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        return 0
