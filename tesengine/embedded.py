"""The embedded default: a local TES server in process, and a backend pointed at it.

With no configuration at all, ``tesengine run`` uses this, and so can a
program or a test that wants a real TES server with nothing installed::

    async with embedded_backend() as backend:
        result = await (await backend.submit(task))
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import platformdirs

from .config import BackendConfig, Config
from .engine import TesBackend
from .server import LocalTesServer

__all__ = [
    "EMBEDDED_INTERVAL",
    "embedded_backend",
    "embedded_config",
    "embedded_root",
    "embedded_server",
]

#: Poll interval on the embedded server: it is local, so polls are cheap.
EMBEDDED_INTERVAL = 0.5


def embedded_root() -> Path:
    """Work and storage directory of the embedded server (under the user cache dir)."""
    return Path(platformdirs.user_cache_dir("tesengine")) / "embedded"


def embedded_config(url: str, root: Path, **backend: Any) -> Config:
    """A configuration for the embedded server at ``url`` storing under ``root``."""
    storage = (root / "storage").as_uri()
    settings = BackendConfig(
        type="tes",
        url=url,
        inputs=f"{storage}/inputs",
        outputs=f"{storage}/outputs",
        **{"interval": EMBEDDED_INTERVAL, "cache_dir": root / "cache", **backend},
    )
    return Config(backend_name="embedded", backend=settings)


@asynccontextmanager
async def embedded_server(root: Path, runtime: str = "local", **server: Any) -> AsyncIterator[str]:
    """Start :class:`LocalTesServer` storing under ``root``; yields its URL."""
    storage = (root / "storage").as_uri()
    async with LocalTesServer(root / "work", storage_url=storage, runtime=runtime, **server) as srv:
        yield srv.url


@asynccontextmanager
async def embedded_backend(
    root: Path | None = None, *, runtime: str = "local", **backend: Any
) -> AsyncIterator[TesBackend]:
    """A :class:`TesBackend` on a local TES server started in this event loop.

    ``runtime`` is ``"local"`` (sandboxed processes, needs bubblewrap) or
    ``"noop"``; ``backend`` holds extra backend keys (e.g. ``interval``).
    """
    root = root or embedded_root()
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(embedded_server(root, runtime))
        yield await stack.enter_async_context(TesBackend(embedded_config(url, root, **backend)))
