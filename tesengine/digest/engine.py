"""The :class:`Digester`: async digests of files and directories.

Everything that blocks (stat, directory walks, reads, hashing, SQLite) runs
in the digester's bounded pool, so the event loop stays responsive while
thousands of callers wait. Files of a directory are hashed in parallel, in
batches so that per-call overhead does not dominate small files; the
directory digest is then combined sequentially, so it is deterministic.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

import platformdirs

from ..errors import DigestError
from .cache import DigestCache
from .filehash import MMAP_THRESHOLD, FileStat, describe_path, hash_file, kind_of
from .layout import Digest, FileEntry
from .pool import DigestPool
from .walk import (
    DirNode,
    FileNode,
    assign_statkeys,
    combine,
    iter_dirs,
    iter_files,
    pending_files,
    scan,
    stat_path,
)

if TYPE_CHECKING:
    from ..config import BackendConfig

__all__ = ["DigestProgress", "DigestStats", "Digester", "NullProgress", "default_cache_dir"]

T = TypeVar("T")
StrPath = str | os.PathLike[str]

#: A batch of small files handed to one worker at a time.
_BATCH_FILES = 64
_BATCH_BYTES = 4 << 20


class DigestProgress(Protocol):
    """Progress hooks; called on the event loop thread, so keep them quick."""

    def files_found(self, count: int, size: int) -> None:
        """``count`` more files (``size`` bytes in all) are about to be digested."""

    def bytes_hashed(self, n: int) -> None:
        """``n`` more bytes were read and hashed."""

    def file_done(self, path: Path, cached: bool) -> None:
        """``path`` has its digest, from the cache when ``cached``."""


class NullProgress:
    """Progress hooks that do nothing; subclass it to implement only some."""

    def files_found(self, count: int, size: int) -> None:
        """Ignore."""

    def bytes_hashed(self, n: int) -> None:
        """Ignore."""

    def file_done(self, path: Path, cached: bool) -> None:
        """Ignore."""


@dataclass(slots=True)
class DigestStats:
    """Running counters of one :class:`Digester` (for tests and reports)."""

    files_hashed: int = 0
    bytes_hashed: int = 0
    files_cached: int = 0
    trees_cached: int = 0


def default_cache_dir() -> Path:
    """``$TESENGINE_CACHE_DIR``, else the platform's user cache dir for tesengine."""
    env = os.environ.get("TESENGINE_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("tesengine"))


class Digester:
    """Computes Sprocket-compatible digests off the event loop, with a cache.

    ``threads`` bounds the worker pool (default: one per CPU); ``cache_dir``
    holds the persistent digest cache (default :func:`default_cache_dir`),
    and ``cache=False`` turns it off. Use it as ``async with Digester() as d``
    or call :meth:`aclose`.
    """

    def __init__(
        self,
        *,
        threads: int | None = None,
        cache_dir: Path | None = None,
        progress: DigestProgress | None = None,
        cache: bool = True,
    ) -> None:
        self._pool = DigestPool(threads)
        self._cache = DigestCache((cache_dir or default_cache_dir()) if cache else None)
        self._progress: DigestProgress = progress or NullProgress()
        self._inflight: dict[tuple[object, ...], asyncio.Future[Any]] = {}
        self.stats = DigestStats()

    @classmethod
    def from_config(cls, config: BackendConfig, *, progress: DigestProgress | None = None) -> Self:
        """A digester with ``digest_threads`` and ``cache_dir`` from a backend config."""
        return cls(
            threads=config.digest_threads,
            cache_dir=config.resolved_cache_dir,
            progress=progress,
        )

    @property
    def threads(self) -> int:
        """Size of the worker pool."""
        return self._pool.threads

    async def digest(self, path: StrPath) -> Digest:
        """The digest of a file or a directory (symlinks followed)."""
        where = _absolute(path)
        return await self._once(("digest", where), lambda: self._digest(where))

    async def digest_file(self, path: StrPath) -> Digest:
        """The digest of a regular file; anything else is a :class:`DigestError`."""
        where = _absolute(path)
        return await self._once(("file", where), lambda: self._file(where))

    async def digest_tree(self, path: StrPath) -> tuple[Digest, list[FileEntry]]:
        """A directory's digest and every file in it, sorted by relative path.

        Broken symlinks are skipped, as they are in the digest.
        """
        where = _absolute(path)
        return await self._once(("tree", where), lambda: self._tree(where, want_files=True))

    async def aclose(self) -> None:
        """Cancel digests in flight, stop the workers and close the cache."""
        pending = list(self._inflight.values())
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.to_thread(self._pool.close)
        self._cache.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _once(self, key: tuple[object, ...], start: Callable[[], Awaitable[T]]) -> T:
        """Single flight: concurrent requests for one key share one job.

        The job is shielded, so one caller giving up does not cancel it for
        the others; it leaves the table when it ends (the cache remembers).
        """
        key = (asyncio.get_running_loop(), *key)
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(start())
            self._inflight[key] = future
            future.add_done_callback(lambda done: self._forget(key, done))
        result: T = await asyncio.shield(future)
        return result

    def _forget(self, key: tuple[object, ...], done: asyncio.Future[Any]) -> None:
        if self._inflight.get(key) is done:
            del self._inflight[key]
        if not done.cancelled():
            done.exception()  # every awaiter may have gone; never warn "never retrieved"

    async def _digest(self, where: str) -> Digest:
        mode = (await self._pool.run(stat_path, where)).st_mode
        if stat.S_ISDIR(mode):
            digest, _ = await self._tree(where, want_files=False)
            return digest
        return await self._file(where)

    async def _file(self, where: str) -> Digest:
        node = await self._pool.run(self._file_job, where)
        if node.cached:
            self._found_cached([node])
        else:
            self._hashed([node])
        assert node.digest is not None
        return node.digest

    def _file_job(self, where: str) -> FileNode:
        st = stat_path(where)
        if not stat.S_ISREG(st.st_mode):
            raise DigestError(
                f"{describe_path(where)}: cannot hash {kind_of(st.st_mode)};"
                " only regular files and directories can be inputs",
                path=where,
            )
        node = FileNode(os.path.basename(where), where, FileStat.of(st))
        [cached] = self._cache.lookup_files([node.stat])
        if cached is not None:
            node.digest, node.cached = Digest("file", cached), True
            return node
        hex_, node.stat = hash_file(where)
        node.digest = Digest("file", hex_)
        self._cache.store_files([(node.stat, hex_)])
        return node

    async def _tree(self, root: str, *, want_files: bool) -> tuple[Digest, list[FileEntry]]:
        tree = await self._pool.run(self._prepare, root, want_files)
        self.stats.trees_cached += sum(1 for d in iter_dirs(tree, cached=False) if d.cached)
        todo = list(pending_files(tree))
        done = [f for _, f in iter_files(tree) if f.cached]
        self._progress.files_found(len(todo) + len(done), sum(f.stat.size for f in todo + done))
        self._found_cached(done)
        await self._hash_all(todo)
        digest = await self._pool.run(self._finish, tree, todo)
        if not want_files:
            return digest, []
        entries = [
            FileEntry(rel, Path(f.path), _known(f), f.stat.size, f.stat.mtime_ns)
            for rel, f in iter_files(tree)
        ]
        entries.sort(key=lambda e: e.relpath)
        return digest, entries

    def _prepare(self, root: str, want_files: bool) -> DirNode:
        """Walk, then take what the cache knows: whole directories, then files."""
        tree = scan(root)
        if not want_files:
            dirs = list(iter_dirs(tree))
            for node, hex_ in zip(
                dirs, self._cache.lookup_trees([d.statkey for d in dirs]), strict=True
            ):
                if hex_ is not None:
                    node.digest, node.cached = Digest("directory", hex_), True
        files = list(pending_files(tree))
        for f, hex_ in zip(files, self._cache.lookup_files([f.stat for f in files]), strict=True):
            if hex_ is not None:
                f.digest, f.cached = Digest("file", hex_), True
        return tree

    async def _hash_all(self, files: Sequence[FileNode]) -> None:
        jobs = [asyncio.ensure_future(self._hash_and_report(batch)) for batch in _batches(files)]
        try:
            await asyncio.gather(*jobs)
        except BaseException:
            for job in jobs:
                job.cancel()  # queued batches leave the pool; running ones finish
            raise

    async def _hash_and_report(self, batch: list[FileNode]) -> None:
        results = await self._pool.run(self._hash_batch, [f.path for f in batch])
        for node, (hex_, hashed) in zip(batch, results, strict=True):
            node.digest, node.stat = Digest("file", hex_), hashed
        self._hashed(batch)

    @staticmethod
    def _hash_batch(paths: list[str]) -> list[tuple[str, FileStat]]:
        return [hash_file(path) for path in paths]

    def _finish(self, tree: DirNode, hashed: Sequence[FileNode]) -> Digest:
        """Combine the directory digest and store what was learnt in the cache."""
        assign_statkeys(tree)  # stats taken while hashing may differ from the walk's
        digest = combine(tree)
        self._cache.store_files((f.stat, _hex(f)) for f in hashed)
        self._cache.store_trees(
            (d.statkey, _hex(d)) for d in iter_dirs(tree, cached=False) if not d.cached
        )
        return digest

    def _hashed(self, nodes: Sequence[FileNode]) -> None:
        for node in nodes:
            self.stats.files_hashed += 1
            self.stats.bytes_hashed += node.stat.size
            self._progress.bytes_hashed(node.stat.size)
            self._progress.file_done(Path(node.path), False)

    def _found_cached(self, nodes: Sequence[FileNode]) -> None:
        self.stats.files_cached += len(nodes)
        for node in nodes:
            self._progress.file_done(Path(node.path), True)


def _absolute(path: StrPath) -> str:
    # Symlinks stay as given: they are followed when read, as Sprocket does.
    return os.path.abspath(os.fspath(path))


def _known(node: FileNode | DirNode) -> Digest:
    assert node.digest is not None, f"{node.path} has no digest yet"
    return node.digest


def _hex(node: FileNode | DirNode) -> str:
    return _known(node).hex


def _batches(files: Sequence[FileNode]) -> list[list[FileNode]]:
    """Large files alone (blake3 spreads them over threads), small ones grouped."""
    batches: list[list[FileNode]] = []
    current: list[FileNode] = []
    size = 0
    for node in files:
        if node.stat.size >= MMAP_THRESHOLD:
            batches.append([node])
            continue
        current.append(node)
        size += node.stat.size
        if len(current) >= _BATCH_FILES or size >= _BATCH_BYTES:
            batches.append(current)
            current, size = [], 0
    if current:
        batches.append(current)
    return batches
