"""Lazy outputs: :class:`RemoteFile` and :class:`RemoteDirectory` hold a URL.

Nothing is downloaded until a value is read. Reads go through an
:class:`OutputCache`: one download per URL (concurrent readers share it),
written to a temporary file and renamed into place, and reused while the
object's ETag and size are unchanged. Passing an output as another task's
input sends only its URL.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import aiofiles
import anyio
import anyio.to_thread

from ..errors import NotReady, ObjectNotFound, OutputMissing, redact_url
from ..redact import redact_repr
from ..singleflight import SingleFlight
from ..storage.urls import join_url, parse_url, safe_relpath

if TYPE_CHECKING:
    from ..storage import ObjectInfo, StorageLike


class OutputReader(Protocol):
    """What a remote output needs to be read: the backend's cache."""

    async def fetch_file(self, url: str) -> Path: ...
    async def fetch_directory(self, url: str) -> Path: ...
    async def list_directory(self, url: str) -> list[tuple[str, str]]:
        """``(relative path, URL)`` of every file of the directory ``url``."""
        ...


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """A file output (or any object URL): lazy, cached on first read."""

    url: str
    reader: OutputReader | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        return redact_repr(self)  # the URL may carry a SAS or a signature

    async def download(self, dest: str | os.PathLike[str] | None = None) -> Path:
        """The local path of the file: the cache's copy, or a copy at ``dest``."""
        cached = await _bound(self.reader, self.url).fetch_file(self.url)
        return cached if dest is None else await _copy(cached, Path(dest))

    async def read_bytes(self) -> bytes:
        """Download once (cached), then return the content."""
        async with aiofiles.open(await self.download(), "rb") as fh:
            return await fh.read()

    async def read_text(self, encoding: str = "utf-8") -> str:
        """Download once (cached), then return the content decoded."""
        return (await self.read_bytes()).decode(encoding)


@dataclass(frozen=True, slots=True)
class RemoteDirectory:
    """A directory output: a URL prefix, listed and downloaded on demand."""

    url: str
    reader: OutputReader | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        return redact_repr(self)  # the URL may carry a SAS or a signature

    async def list(self) -> list[RemoteFile]:
        """Every file under the directory, as lazy :class:`RemoteFile` values.

        An empty directory output lists as ``[]`` (object stores keep no
        empty directories), as does a prefix nothing was ever written under.
        """
        return [file async for _, file in self.walk()]

    async def walk(self) -> AsyncIterator[tuple[str, RemoteFile]]:
        """``(relative path, file)`` for every file under the directory.

        Paths are decoded (``a b.txt``, not ``a%20b.txt``) and never hold a
        ``..`` segment (one in a listing is refused with ``StorageError``).
        """
        entries = await _bound(self.reader, self.url).list_directory(self.url)
        for rel, url in entries:
            yield rel, RemoteFile(url, self.reader)

    def file(self, relpath: str) -> RemoteFile:
        """The file at ``relpath`` inside this directory (not checked until read)."""
        return RemoteFile(join_url(self.url, safe_relpath(relpath)), self.reader)

    async def download(self, dest: str | os.PathLike[str] | None = None) -> Path:
        """Download every file (cached); return the local directory."""
        cached = await _bound(self.reader, self.url).fetch_directory(self.url)
        return cached if dest is None else await _copy(cached, Path(dest))


def _bound(reader: OutputReader | None, url: str) -> OutputReader:
    if reader is None:
        raise NotReady(
            f"{redact_url(url)} is not bound to a backend: read outputs from a TaskResult,"
            " or make one with backend.remote_file()/remote_directory()"
        )
    return reader


async def _copy(source: Path, dest: Path) -> Path:
    def work() -> Path:
        target = dest / source.name if dest.is_dir() and source.is_file() else dest
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tesengine-tmp")
            shutil.copyfile(source, tmp)
            tmp.replace(target)
        return target

    return await anyio.to_thread.run_sync(work)


class OutputCache:
    """Downloads outputs once into ``root`` and reuses them while unchanged."""

    def __init__(self, storage: StorageLike, root: Path) -> None:
        self._storage = storage
        self._root = root
        self._flights: SingleFlight[str, Path] = SingleFlight()
        self._done: dict[str, Path] = {}  # read once per backend: no HEAD on later reads

    async def fetch_file(self, url: str) -> Path:
        """Local cached copy of the object at ``url`` (single-flight per URL)."""
        return await self._single_flight(url, self._fetch_file)

    async def fetch_directory(self, url: str) -> Path:
        """Local cached copy of every object under ``url``."""
        return await self._single_flight(url + "#dir", lambda _: self._fetch_directory(url))

    async def list_directory(self, url: str) -> list[tuple[str, str]]:
        """``(relative path, URL)`` of every object under the directory ``url``."""
        return [(rel, info.url) for rel, info in await self._walk(url)]

    async def _single_flight(self, key: str, work: _Work) -> Path:
        # Only a success is remembered: after a failure the next reader tries again.
        done = self._done.get(key)
        if done is not None:
            return done

        async def remembered() -> Path:
            path = self._done[key] = await work(key)  # before the flight ends
            return path

        return await self._flights.run(key, remembered)

    async def _fetch_file(self, url: str) -> Path:
        info = await self._head(url)
        slot = self._root / "files" / _digest(url)
        name = parse_url(url).name
        target = slot / (name if name not in ("", ".", "..") else "file")
        meta = slot / ".meta.json"
        if await anyio.to_thread.run_sync(_fresh, target, meta, info):
            return target
        await anyio.Path(slot).mkdir(parents=True, exist_ok=True)
        await self._storage.download(url, target)
        await anyio.to_thread.run_sync(_write_meta, meta, info)
        return target

    async def _fetch_directory(self, url: str) -> Path:
        slot = self._root / "dirs" / _digest(url)
        entries = await self._walk(url)  # a refused listing leaves nothing behind
        await anyio.Path(slot).mkdir(parents=True, exist_ok=True)  # an empty output too
        for rel, info in entries:
            cached = await self.fetch_file(info.url)
            await _copy(cached, slot / rel)
        return slot

    async def _walk(self, url: str) -> list[tuple[str, ObjectInfo]]:
        # Object stores hold no empty directories: an empty directory output
        # (a COMPLETE task's declared outputs all exist) lists as nothing.
        return [entry async for entry in self._storage.walk(url)]

    async def _head(self, url: str) -> ObjectInfo:
        try:
            return await self._storage.head(url)
        except ObjectNotFound:
            raise OutputMissing(
                f"no output at {redact_url(url)}: the task did not produce it"
            ) from None


class _Work(Protocol):
    async def __call__(self, key: str, /) -> Path: ...


def _digest(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:40]


def _fresh(target: Path, meta: Path, info: ObjectInfo) -> bool:
    try:
        seen = json.loads(meta.read_text())
    except (OSError, ValueError):
        return False
    return target.is_file() and seen == {"etag": info.etag, "size": info.size}


def _write_meta(meta: Path, info: ObjectInfo) -> None:
    tmp = meta.with_suffix(".tmp")
    tmp.write_text(json.dumps({"etag": info.etag, "size": info.size}))
    tmp.replace(meta)
