"""Staging local inputs at their content addresses: digest, check, upload once.

Layout under the backend's ``inputs`` URL (Sprocket's, plus one marker)::

    <inputs>/file/<hex>                       a file
    <inputs>/directory/<hex>/<relative path>  each file of a directory
    <inputs>/complete/directory/<hex>         marker: the directory is whole

An object at a content address is trusted without download, so:

* uploads are atomic and create-only where the store supports it (an object
  that is already there is success: it holds the same bytes);
* an object already at a file's address must have the file's size, else
  staging fails with :class:`~tesengine.errors.ContentMismatch` (a cheap
  guard against a stray or planted object; the bytes are not compared);
* what is uploaded is hashed again on the way out and must match the digest
  (:mod:`tesengine.storage.verify`), so a file edited after hashing is never
  published under its old address;
* a directory counts as present only when its marker exists. Its files go
  up concurrently (the ones a listing does not already show), then the
  marker is written last; an interrupted upload is completed next time.
  The marker sits outside ``directory/<hex>/`` so that a TES server that
  downloads the directory prefix gets exactly the directory's files, and a
  string-prefix listing of ``directory/<hex>`` does not match it either.
  Sprocket decides "present" from the prefix alone; a directory it uploaded
  has no marker, so tesengine checks its files once and then writes one;
* identical work in flight is done once (single-flight per URL), requests
  are bounded by ``concurrency``, and an address confirmed present is
  remembered for the life of the :class:`Stager`.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from pathlib import Path

import anyio

from ..digest import Digest, Digester, FileEntry
from ..errors import ContentMismatch, ObjectNotFound, redact_url
from ..singleflight import SingleFlight
from ..thread_limits import ThreadLimit
from ._together import run_all as _all
from .existence_io import LIST_MARGIN, ExistenceLister
from .protocol import OrderedListing, StorageLike
from .reports import NullStagingProgress, StageResult, StagingProgress, StagingStats
from .uploads import UPLOAD_MEMORY, Uploader
from .urls import is_url, join_url, parse_url

__all__ = [
    "MARKER_PREFIX",
    "NullStagingProgress",
    "StageResult",
    "Stager",
    "StagingProgress",
    "StagingStats",
]

#: Directory markers live at ``<inputs>/complete/directory/<hex>``.
MARKER_PREFIX = "complete"
#: Threads that read and re-hash upload bodies at once (per stager and event loop).
UPLOAD_THREADS = 4
#: Files are digested in chunks of up to this many, while earlier ones are checked.
_DIGEST_CHUNK = 2048
_FIRST_DIGEST_CHUNK = 256


class Stager:
    """Uploads local files and directories to ``inputs_url`` by content address."""

    def __init__(
        self,
        storage: StorageLike,
        digester: Digester,
        inputs_url: str,
        *,
        concurrency: int = 32,
        progress: StagingProgress | None = None,
        upload_memory: int = UPLOAD_MEMORY,
        upload_threads: int = UPLOAD_THREADS,
        list_margin: float = LIST_MARGIN,
    ) -> None:
        """``list_margin``: a large batch is HEADed instead of listed when listing is
        expected that many times slower (``math.inf``: always list where possible)."""
        parse_url(inputs_url)  # fail early on an unusable URL
        self.storage = storage
        self.digester = digester
        self.inputs_url = inputs_url
        self.stats = StagingStats()
        self._concurrency = concurrency
        self._progress: StagingProgress = progress or NullStagingProgress()
        # Reading and re-hashing upload bodies (and telling directories from
        # files) block: a few threads of their own, never the loop's pool.
        self._threads = ThreadLimit(upload_threads)
        self._limit: asyncio.Semaphore | None = None
        self._uploads = Uploader(storage, self.stats, self._progress, self._slot, self._threads,
                                 memory=upload_memory)  # fmt: skip
        self._known: set[str] = set()
        self._flights: SingleFlight[str, bool] = SingleFlight()
        self._list_margin = list_margin
        # Large batches are decided by listing, where the storage can list in order.
        self._files = self._lister("file")
        self._markers = self._lister(MARKER_PREFIX, "directory")

    async def stage(self, path_or_url: str | os.PathLike[str]) -> StageResult:
        """Stage one input; a URL is returned untouched, without any request."""
        return (await self.stage_many([path_or_url]))[0]

    async def stage_many(self, items: Iterable[str | os.PathLike[str]]) -> list[StageResult]:
        """Stage every item concurrently; results in the order given.

        The first failure cancels the rest and is raised.
        """
        items = list(items)
        paths = [None if _is_url(i) else _path(i) for i in items]
        local = [p for p in paths if p is not None]
        # one trip to a thread tells every directory from a file, and sizes the files
        dirs, sizes = await self._threads.run(_kinds, local) if local else (set(), {})
        directories = [p for p in local if p in dirs]
        files = [p for p in local if p not in dirs]
        staged = [self._stage_directories(directories), self._stage_files(files, sizes)]
        by_dir, by_file = map(iter, await _all(staged))
        return [
            StageResult(str(i), str(i), "url", uploaded=False)
            if p is None
            else next(by_dir if p in dirs else by_file)
            for i, p in zip(items, paths, strict=True)
        ]

    def marker_url(self, digest: Digest) -> str:
        """Where the completion marker of directory ``digest`` lives."""
        return join_url(self.inputs_url, MARKER_PREFIX, digest.key)

    # -- files -------------------------------------------------------------

    async def _stage_files(self, files: list[Path], sizes: Mapping[Path, int]) -> list[StageResult]:
        """Stage regular files: batched digests feeding ``concurrency`` workers.

        Batching matters when most inputs are already present: per-file
        digest jobs, and one task per file parked on a semaphore, cost as
        much CPU as the existence checks themselves. Files are digested in
        chunks, and the workers start on the first chunk while the next
        is digested. A path given twice, or two paths with one content,
        make one request; only the first of them reports ``uploaded``.
        A large batch is digested whole first, then decided by listing
        (:mod:`~tesengine.storage.existence_io`); what a listing could not
        decide is HEADed by the workers, as a small batch is.
        """
        if not files:
            return []
        urls: list[str] = []
        first: set[str] = set()
        uploaded: dict[str, bool] = {}
        queue: asyncio.Queue[tuple[str, Path, str] | None] = asyncio.Queue()
        workers = min(self._concurrency, len(files))
        batched = self._files is not None and self._files.worth_listing(len(files))
        pending: list[tuple[str, Path, str]] = []
        listed: dict[str, int | None] = {}

        async def digest_all() -> None:
            for chunk in _chunks(files):
                for path, digest in zip(
                    chunk, await self.digester.digest_files(chunk), strict=True
                ):
                    url = join_url(self.inputs_url, digest.key)
                    urls.append(url)
                    if url not in first:
                        first.add(url)
                        (pending.append if batched else queue.put_nowait)((url, path, digest.hex))
            if self._files is not None and pending:
                listed.update(await self._files.decide(self._unknown(pending)))
            for job in pending:
                queue.put_nowait(job)
            for _ in range(workers):
                queue.put_nowait(None)

        async def worker() -> None:
            while (job := await queue.get()) is not None:
                url, path, hex_ = job
                size = sizes.get(path)
                uploaded[url] = await self._stage_file(url, path, hex_, listed, size)

        await _all([digest_all(), *(worker() for _ in range(workers))])
        results = []
        for path, url in zip(files, urls, strict=True):
            done = uploaded.pop(url, False)  # the first path with this content, only
            results.append(StageResult(str(path), url, "file", done))
        return results

    async def _stage_file(
        self, url: str, path: Path, hex_: str, listed: Mapping[str, int | None], size: int | None
    ) -> bool:
        return await self._once(url, lambda: self._ensure_file(url, path, hex_, listed, size))

    async def _ensure_file(
        self, url: str, path: Path, hex_: str, listed: Mapping[str, int | None], size: int | None
    ) -> bool:
        """``size``: the file's when staging began (None: not known), saving a stat here."""
        # A listing's answer is what a HEAD would have said (size, or absent).
        found = listed[hex_] if hex_ in listed else await self._head_size(url)
        if found is None:
            return await self._uploads.upload(url, path, hex_, size)
        # An object at the address is trusted without download, but only if it
        # at least has the right size: anyone who can write the storage could
        # have put something else there. (A size from before the digest is
        # checked again before it is called wrong: the file may have changed.)
        if found != size:
            size = (await anyio.Path(path).stat()).st_size
        if found != size:
            where = redact_url(url)
            raise ContentMismatch(
                f"{where} already exists with {found} bytes, but {path} has {size}: "
                "the object at this content address is not this file; refusing to use it "
                "(delete it, or check who else writes to this storage)",
                url=where,
            )
        self.stats.files_skipped += 1
        self._progress.file_skipped(url, size)
        return False

    async def _head_size(self, url: str) -> int | None:
        async with self._slot():
            self.stats.heads += 1
            try:
                return (await self.storage.head(url)).size
            except ObjectNotFound:
                return None

    # -- directories ---------------------------------------------------------

    async def _stage_directories(self, paths: list[Path]) -> list[StageResult]:
        """Stage directories; many at once have their markers decided by listing."""
        # One walk each gives both the digest and the files to upload if absent.
        trees = await _all([self.digester.digest_tree(p) for p in paths])
        listed: dict[str, int | None] = {}
        if self._markers is not None and self._markers.worth_listing(len(trees)):
            jobs = [(self.marker_url(d), p, d.hex) for p, (d, _) in zip(paths, trees, strict=True)]
            listed = await self._markers.decide(self._unknown(jobs))
        stages = [
            self._stage_directory(p, d, e, listed) for p, (d, e) in zip(paths, trees, strict=True)
        ]
        return await _all(stages)

    async def _stage_directory(
        self, path: Path, digest: Digest, entries: list[FileEntry], listed: Mapping[str, int | None]
    ) -> StageResult:
        url = join_url(self.inputs_url, digest.key)
        marker = self.marker_url(digest)
        work = lambda: self._ensure_directory(digest, entries, listed)  # noqa: E731
        uploaded = await self._once(marker, work)
        return StageResult(str(path), url, "directory", uploaded)

    async def _ensure_directory(
        self, digest: Digest, entries: list[FileEntry], listed: Mapping[str, int | None]
    ) -> bool:
        marker = self.marker_url(digest)
        # Present only when the marker is (a listing's answer counts as a HEAD's).
        if digest.hex in listed:
            has_marker = listed[digest.hex] is not None
        else:
            async with self._slot():
                self.stats.heads += 1
                has_marker = await self.storage.exists(marker)
        if has_marker:
            self._progress.file_skipped(marker, -1)
            return False
        base = join_url(self.inputs_url, digest.key)
        present = await self._listing(base)
        missing: list[FileEntry] = []
        for entry in entries:
            if present.get(entry.relpath) != entry.size:
                missing.append(entry)  # absent, or a stray object of the wrong size
                continue
            self.stats.files_skipped += 1
            self._progress.file_skipped(join_url(base, entry.relpath), entry.size)
        upload = self._uploads.upload
        sends = [upload(join_url(base, e.relpath), e.path, e.digest.hex, e.size) for e in missing]
        written = await _all(sends)
        await self._write_marker(marker, digest, entries)
        # Only the marker is new when every file was there (Sprocket staged it,
        # or another client did concurrently): that is not an upload of the directory.
        return any(written)

    async def _listing(self, base: str) -> dict[str, int]:
        """Relative path -> size of what is already under a directory's prefix."""
        found: dict[str, int] = {}
        async with self._slot():
            async for rel, info in self.storage.walk(base):
                found[rel] = info.size
        self.stats.lists += max(1, (len(found) + 999) // 1000)
        return found

    async def _write_marker(self, marker: str, digest: Digest, entries: list[FileEntry]) -> None:
        body = {
            "format": 1,
            "digest": digest.hex,
            "files": len(entries),
            "bytes": sum(e.size for e in entries),
        }
        async with self._slot():
            self.stats.puts += 1
            await self.storage.put_bytes(marker, json.dumps(body).encode(), create_only=True)

    # -- plumbing -------------------------------------------------------------

    def _lister(self, *parts: str) -> ExistenceLister | None:
        """Batched existence checks under ``<inputs>/<parts>``, if the storage can list."""
        if not isinstance(self.storage, OrderedListing):
            return None
        prefix = join_url(self.inputs_url, *parts)
        head = self._head_size if parts == ("file",) else self._marker_size
        sizes = lambda name: head(join_url(prefix, name))  # noqa: E731
        return ExistenceLister(self.storage, prefix, self._slot, self.stats, head=sizes,
                               concurrency=self._concurrency, margin=self._list_margin)  # fmt: skip

    async def _marker_size(self, url: str) -> int | None:
        """0 when the marker at ``url`` exists (its size is never checked), else None."""
        async with self._slot():
            self.stats.heads += 1
            return 0 if await self.storage.exists(url) else None

    def _unknown(self, jobs: list[tuple[str, Path, str]]) -> set[str]:
        """Names of ``jobs`` (url, path, name) not yet known present to this stager."""
        return {name for url, _, name in jobs if url not in self._known}

    async def _once(self, url: str, work: Callable[[], Awaitable[bool]]) -> bool:
        """Run ``work`` for ``url`` unless it is known present or already running.

        Concurrent callers share one run (:class:`~tesengine.singleflight.SingleFlight`:
        it goes on while any of them waits); only one of them is told ``True``.
        """
        if url in self._known:
            return False

        async def remembered() -> bool:
            uploaded = await work()
            self._known.add(url)  # before the flight ends: no caller slips in between
            return uploaded

        uploaded, first = await self._flights.run_claiming(url, remembered)
        return uploaded and first

    def _slot(self) -> asyncio.Semaphore:
        if self._limit is None:
            self._limit = asyncio.Semaphore(self._concurrency)
        return self._limit


def _chunks(files: list[Path]) -> Iterator[list[Path]]:
    """Small first chunks, so the first requests go out early; larger ones later."""
    start, size = 0, _FIRST_DIGEST_CHUNK
    while start < len(files):
        yield files[start : start + size]
        start, size = start + size, min(size * 2, _DIGEST_CHUNK)


def _is_url(item: str | os.PathLike[str]) -> bool:
    return isinstance(item, str) and is_url(item)


def _path(item: str | os.PathLike[str]) -> Path:
    return item if isinstance(item, Path) else Path(item)  # Path(Path) parses it again


def _kinds(paths: list[Path]) -> tuple[set[Path], dict[Path, int]]:
    """The directories among ``paths``, and each file's size: one stat each, followed."""
    dirs: set[Path] = set()
    sizes: dict[Path, int] = {}
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            continue  # digesting it says what is wrong, naming the path
        if stat.S_ISDIR(info.st_mode):
            dirs.add(path)
        else:
            sizes[path] = info.st_size
    return dirs, sizes
