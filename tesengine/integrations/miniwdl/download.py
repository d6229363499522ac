"""URL inputs stay URLs: miniwdl downloader plugins for the tesengine backend.

miniwdl needs every File and Directory input on the host (to evaluate
``read_*``, ``size``...), and fetches URL inputs with downloader plugins
before any task runs. Registered for ``s3``, ``gs``, ``az``, ``http`` and
``https`` (entry points ``miniwdl.plugin.file_download`` /
``directory_download``), these fetch through tesengine's storage layer, on
the host, and remember each file's URL (:class:`.paths.UrlMemory`): the TES
task then gets the URL itself, and the server fetches it; nothing is hashed
or uploaded. With another container backend selected, they hand over to
miniwdl's own downloader for the scheme (or to its aria2c task for http(s)).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Generator
from pathlib import Path
from typing import Any

from ...storage import Storage, parse_url

Plugin = Generator[dict[str, Any], dict[str, Any], None]
BACKEND = "tesengine"


def file_download(cfg: Any, logger: logging.Logger, uri: str, **kw: Any) -> Plugin:
    """Download the file at ``uri`` for a tesengine run (miniwdl's plugin protocol)."""
    if cfg["scheduler"]["container_backend"] != BACKEND:
        yield from _theirs(cfg, logger, uri, directory=False, **kw)
        return
    yield {"outputs": {"file": str(_fetch(cfg, logger, uri, directory=False))}}


def directory_download(cfg: Any, logger: logging.Logger, uri: str, **kw: Any) -> Plugin:
    """Download every object under ``uri`` for a tesengine run."""
    if cfg["scheduler"]["container_backend"] != BACKEND:
        yield from _theirs(cfg, logger, uri, directory=True, **kw)
        return
    yield {"outputs": {"directory": str(_fetch(cfg, logger, uri, directory=True))}}


def _fetch(cfg: Any, logger: logging.Logger, uri: str, *, directory: bool) -> Path:
    from .container import TesTaskContainer

    backend = TesTaskContainer.initialised(cfg, logger)
    storage = backend.tes.storage
    slot = backend.config.backend.resolved_cache_dir / "miniwdl-downloads"
    slot = slot / hashlib.sha256(uri.encode()).hexdigest()[:32]
    name = parse_url(uri).name or "download"
    target = slot / name
    memory = TesTaskContainer.memory
    if directory:
        count = backend.call(_directory, storage, memory, uri, target)
        logger.info(f"tesengine: {count} files of {uri} on the host; tasks get the URL")
    else:
        backend.call(storage.download, uri, target)
        memory.remember(target, uri)
        logger.info(f"tesengine: {uri} on the host; tasks get the URL")
    return target


async def _directory(storage: Storage, memory: Any, uri: str, target: Path) -> int:
    count = 0
    async for rel, info in storage.walk(uri):  # decoded names; '..' refused
        await storage.download(info.url, target / rel)
        memory.remember(target / rel, uri, rel)
        count += 1
    return count


def _theirs(cfg: Any, logger: logging.Logger, uri: str, *, directory: bool, **kw: Any) -> Plugin:
    """miniwdl's own downloader for ``uri``'s scheme, as if this plugin were not installed."""
    from WDL.runtime import config, download
    from WDL.runtime.error import DownloadFailed

    group = "directory_download" if directory else "file_download"
    scheme = uri.partition(":")[0]
    for entry in config.default_plugins()[group]:
        if entry.name == scheme:
            yield from entry.load()(cfg, logger, uri=uri, **kw)
            return
    if not directory and scheme in ("http", "https"):
        yield from download.aria2c_downloader(cfg, logger, uri=uri, **kw)
        return
    raise DownloadFailed(uri)
