"""The CLI's choice of backend: the configured one, else the embedded default."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from ..config import Config, find_config_file, load_config


async def open_backend_config(
    stack: contextlib.AsyncExitStack,
    path: str | None,
    backend: str,
    note: Callable[[str], None],
) -> Config:
    """The configured backend; or, with no config at all, an embedded local server."""
    if path is not None or find_config_file() is not None or "TESENGINE_URL" in os.environ:
        return load_config(path, backend)
    from ..embedded import embedded_config, embedded_root, embedded_server

    root = embedded_root()
    url = await stack.enter_async_context(embedded_server(root))
    note(f"no configuration found; using an embedded local TES server at {url} ({root})")
    return embedded_config(url, root)
