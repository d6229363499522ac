"""The embedded default: with no configuration, run on a local TES server in process."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import platformdirs

from ..config import BackendConfig, Config, find_config_file, load_config

#: Poll interval on the embedded server: it is local, so polls are cheap.
EMBEDDED_INTERVAL = 0.5


def embedded_root() -> Path:
    """Work and storage directory of the embedded server (user cache dir)."""
    return Path(platformdirs.user_cache_dir("tesengine")) / "embedded"


async def open_backend_config(
    stack: contextlib.AsyncExitStack,
    path: str | None,
    backend: str,
    note: Callable[[str], None],
) -> Config:
    """The configured backend; or, with no config at all, an embedded local server."""
    if path is not None or find_config_file() is not None or "TESENGINE_URL" in os.environ:
        return load_config(path, backend)
    from ..server import LocalTesServer

    root = embedded_root()
    storage = (root / "storage").as_uri()
    server = await stack.enter_async_context(
        LocalTesServer(work_dir=root / "work", storage_url=storage, runtime="local")
    )
    note(f"no configuration found; using an embedded local TES server at {server.url} ({root})")
    settings = BackendConfig(
        type="tes",
        url=server.url,
        inputs=f"{storage}/inputs",
        outputs=f"{storage}/outputs",
        interval=EMBEDDED_INTERVAL,
        cache_dir=root.parent,
    )
    return Config(backend_name="embedded", backend=settings)
