"""``tesengine hash PATH...``: print content addresses, one line per path, like b3sum.

Each line is ``<hex>  <kind>  <path>``; the hex of a file is exactly what
``b3sum`` prints, and a directory's is Sprocket's directory digest, so the
line shows where the input would be stored (``<inputs>/<kind>/<hex>``).
A path that cannot be hashed is reported on stderr and the others still
are, as b3sum does; the exit status follows the CLI's table: 2 for a missing
or unreadable path (bad input), 1 for a file that changed while hashed.
On a terminal, long work shows a progress bar on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from ..errors import DigestError, InputChanged
from .aio import run

#: Work shorter than this shows no progress bar at all.
PROGRESS_DELAY = 0.5


def register(sub: Any) -> None:
    """Add the ``hash`` sub-command."""
    parser = sub.add_parser(
        "hash",
        help="print the content address of files and directories",
        description="Print '<hex>  <kind>  <path>' per path: Blake3 for files (as b3sum),"
        " Sprocket's digest for directories.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    parser.add_argument("--threads", type=int, help="worker threads (default: one per CPU)")
    parser.add_argument("--cache-dir", type=Path, help="digest cache directory")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    parser.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar on stderr (auto: only on a terminal)",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Hash every path; 0 when all could be hashed, else 2 (or 1: see the module)."""
    if args.threads is not None and args.threads < 1:
        print("tesengine: error: --threads must be at least 1", file=sys.stderr)
        return 2
    return run(_hash_all(args))


async def _hash_all(args: argparse.Namespace) -> int:
    from ..digest import Digester
    from ..digest.filehash import describe_path

    show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    bar = _Bar() if show else None
    status = 0
    async with Digester(
        threads=args.threads, cache_dir=args.cache_dir, cache=not args.no_cache, progress=bar
    ) as digester:
        jobs = [asyncio.ensure_future(digester.digest(path)) for path in args.paths]
        timer = asyncio.get_running_loop().call_later(PROGRESS_DELAY, bar.start) if bar else None
        try:
            for path, job in zip(args.paths, jobs, strict=True):
                try:
                    digest = await job
                except DigestError as exc:
                    status = max(status, 1 if isinstance(exc, InputChanged) else 2)
                    _print(bar, f"tesengine: {exc}", err=True)
                    continue
                _print(bar, f"{digest.hex}  {digest.kind}  {describe_path(path)}")
        finally:
            if timer is not None:
                timer.cancel()
            if bar is not None:
                bar.stop()
    return status


def _print(bar: _Bar | None, line: str, *, err: bool = False) -> None:
    if bar is not None and err:
        bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
    else:
        print(line, file=sys.stderr if err else sys.stdout, flush=bar is not None)


class _Bar:
    """A rich progress bar fed by the digester's progress hooks (on the loop thread)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("hashing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files, {task.fields[hashed]} hashed"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._task = self._progress.add_task("hash", total=0, hashed="0 B")
        self._files = 0
        self._bytes = 0
        self._started = False

    def start(self) -> None:
        self._started = True
        self._progress.start()

    def stop(self) -> None:
        if self._started:
            self._progress.stop()

    def files_found(self, count: int) -> None:
        self._files += count
        self._progress.update(self._task, total=self._files)

    def bytes_hashed(self, n: int) -> None:
        from rich.filesize import decimal

        self._bytes += n
        self._progress.update(self._task, hashed=decimal(self._bytes))

    def file_done(self, path: Path, cached: bool) -> None:
        self._progress.advance(self._task)
