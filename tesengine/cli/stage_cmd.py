"""``tesengine stage PATH... [--config F] [--backend NAME]``: upload local inputs.

Prints one line per input, tab-separated: its URL, then ``uploaded`` (this
run sent it), ``present`` (it was already there) or ``url`` (a URL, passed
through untouched), then the input as given.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any
from urllib.parse import urlsplit

from ..errors import redact_url
from . import aio
from .main import CONFIG_HELP, UsageError

log = logging.getLogger("tesengine.cli.stage")


def register(sub: Any) -> None:
    """Add the ``stage`` sub-command."""
    parser = sub.add_parser(
        "stage",
        help="upload local inputs to the inputs bucket",
        description="Upload local inputs to their content addresses under the configured"
        " backend's inputs URL (a configuration is required).",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files, directories or URLs")
    parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    parser.add_argument("--backend", default="default", help="backend name (default: default)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Stage every PATH and print where each one is."""
    for path in args.paths:
        check_scheme(path)
    from .backend_choice import configured, no_config_note

    if not configured(args.config):  # unlike run, there is no embedded default to stage to
        raise UsageError(
            f"{no_config_note()}: give --config FILE, a sprocket.toml whose"
            f" [run.backends.{args.backend}] names the inputs URL to upload to"
        )
    return aio.run(_stage(args))


def check_scheme(item: str) -> None:
    """A URL whose scheme tasks cannot take is a usage error, as in ``tesengine run``
    (not a local path that does not exist)."""
    if "://" not in item:
        return
    from ..engine.validate import URL_SCHEMES

    scheme = urlsplit(item).scheme.lower()
    if scheme not in URL_SCHEMES:
        wanted = ", ".join(sorted(URL_SCHEMES))
        raise UsageError(f"{redact_url(item)}: unsupported URL scheme {scheme!r} (use {wanted})")


async def _stage(args: argparse.Namespace) -> int:
    from ..config import load_config
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
