"""Bringing a finished task's outputs into its host directory (coroutines for the loop).

One listing of the work directory's prefix, then one GET per file, written
straight to its final host path (a temporary file renamed into place): no
cache copy, no second request. Each file is remembered with its URL.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from ...storage import StorageLike
from .paths import UrlMemory


@dataclass(frozen=True, slots=True)
class Fetch:
    """Where the files of a task's container directory output go on the host."""

    url: str  # the directory output: <prefix>/task
    work_dir: Path
    stdout: Path
    stderr: Path

    def place(self, rel: str) -> Path | None:
        """The host path of the output file ``rel``; None for what stays remote."""
        if rel == "stdout.txt":
            return self.stdout
        if rel == "stderr.txt":
            return self.stderr
        head, _, rest = rel.partition("/")
        return self.work_dir / rest if head == "work" and rest else None


async def fetch_outputs(storage: StorageLike, memory: UrlMemory, fetch: Fetch) -> int:
    """Download the work directory, stdout and stderr; returns the number of files."""
    jobs = []
    async for rel, info in storage.walk(fetch.url):  # decoded names; '..' refused
        dest = fetch.place(rel)
        if dest is not None:
            jobs.append(_one(storage, memory, info.url, dest, (fetch.url, rel)))
    await asyncio.gather(*jobs)
    return len(jobs)


async def _one(
    storage: StorageLike, memory: UrlMemory, url: str, dest: Path, origin: tuple[str, str]
) -> None:
    await storage.download(url, dest)
    await asyncio.to_thread(memory.remember, dest, *origin)


async def read_small(storage: StorageLike, url: str) -> str:
    """The text of a small object (the recorded exit code)."""
    return (await storage.read_bytes(url)).decode("utf-8", "replace")
