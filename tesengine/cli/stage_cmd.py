"""``tesengine stage PATH... [--config F] [--backend NAME]``: upload local inputs.

Prints one line per input, tab-separated: its URL, then ``uploaded`` (this
run sent it), ``present`` (it was already there) or ``url`` (a URL, passed
through untouched), then the input as given.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ..config import load_config
from . import aio

log = logging.getLogger("tesengine.cli.stage")


def register(sub: Any) -> None:
    """Add the ``stage`` sub-command."""
    parser = sub.add_parser("stage", help="upload local inputs to the inputs bucket")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files, directories or URLs")
    parser.add_argument("--config", help="config file (default: see README)")
    parser.add_argument("--backend", default="default", help="backend name (default: default)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Stage every PATH and print where each one is."""
    return aio.run(_stage(args))


async def _stage(args: argparse.Namespace) -> int:
    from ..digest import Digester
    from ..storage import Stager, Storage

    config = load_config(args.config, backend=args.backend)
    backend = config.backend
    storage = Storage(config.storage)
    async with Digester.from_config(backend) as digester:
        stager = Stager(storage, digester, backend.inputs, concurrency=backend.staging_concurrency)
        try:
            results = await stager.stage_many(args.paths)
        finally:
            await storage.aclose()
    for result in results:
        status = "url" if result.kind == "url" else "uploaded" if result.uploaded else "present"
        print(f"{result.url}\t{status}\t{result.source}")
    log.info("%d inputs, %d requests: %s", len(results), stager.stats.requests, stager.stats)
    return 0
