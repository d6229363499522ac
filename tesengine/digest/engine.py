"""The :class:`Digester`: async digests of files and directories.

Everything that blocks (stat, directory walks, reads, hashing, SQLite) runs
in the digester's bounded pool, so the event loop stays responsive while
thousands of callers wait. Files are handed to the pool in batches, so that
per-call overhead does not dominate small files. Large files hash in
parallel (blake3 releases the GIL for long stretches); in a small job,
batches of small files take turns, because two threads that each make a system call every
few microseconds spend more time handing the GIL over than they gain (one
thread measured faster than two on a tree of 16 KiB files). A directory
digest is combined sequentially once all its files are known, so it is
deterministic.

Performance notes (20,000 x 16 KiB files, 2 cores): reading and hashing
a small file costs ~12 µs of Python that holds the GIL, so a large job
sends its small files to worker processes (:mod:`.procs`) in batches,
while one thread stats the files and looks them up in the cache directory
by directory and keeps feeding them. A warm run must still stat every
file, since that is the only proof none changed, so its floor is one
``stat`` per file; the rest is the walk, one cache query per directory and
a dictionary probe per file (a directory whose files and subdirectories
all match reuses its stored digest instead of being recombined).
"""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

from .._closing import AsyncClosing
from ..singleflight import SingleFlight
from .cache import DigestCache, DirRow, subdir_names
from .filehash import FileStat, hash_file, regular_stat
from .layout import Digest, FileEntry
from .pool import DigestPool
from .procs import HashProcs
from .progress import DigestProgress, DigestStats, NullProgress, default_cache_dir
from .walk import (
    DirNode,
    FileNode,
    combine,
    iter_dirs,
    iter_files,
    reuse_digests,
    scan,
    stat_path,
)

if TYPE_CHECKING:
    from ..config import BackendConfig

__all__ = ["DigestProgress", "DigestStats", "Digester", "NullProgress", "default_cache_dir"]

T = TypeVar("T")
StrPath = str | os.PathLike[str]

#: At most this many files are handed to a worker at a time.
_BATCH_FILES = 256
#: Files at least this large are hashed outside the small-file lock (see _batch_job).
_LARGE = 1 << 20
#: A job of at least this many files hashes its small files in worker processes...
_PROCS_MIN_FILES = 2000
#: ...in batches that have at least this many small files to hash.
_PROCS_MIN_BATCH = 32


class Digester(AsyncClosing):
    """Computes Sprocket-compatible digests off the event loop, with a cache.

    ``threads`` bounds the worker pool (default: one per CPU); ``cache_dir``
    holds the persistent digest cache (default :func:`default_cache_dir`),
    and ``cache=False`` turns it off. Large files are memory-mapped in worker
    processes, so a file truncated while it is hashed cannot kill this one
    with SIGBUS (see :mod:`.filehash`); ``mmap=False`` reads them in this
    process instead (slower, but no worker process is started for them).
    Use it as ``async with Digester() as d`` or call :meth:`aclose`.
    """

    def __init__(
        self,
        *,
        threads: int | None = None,
        cache_dir: Path | None = None,
        progress: DigestProgress | None = None,
        cache: bool = True,
        mmap: bool = True,
    ) -> None:
        self._pool = DigestPool(threads)
        self._cache = DigestCache((cache_dir or default_cache_dir()) if cache else None)
        self._progress: DigestProgress = progress or NullProgress()
        self._tracking = progress is not None
        self._mmap = mmap
        self._flights: SingleFlight[tuple[object, ...], Any] = SingleFlight()
        self._small_files = threading.Lock()
        self._procs = HashProcs(min(self._pool.threads, os.cpu_count() or 1))
        self._procs_min_files = _PROCS_MIN_FILES
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

    async def digest_files(self, paths: Iterable[StrPath]) -> list[Digest]:
        """The digests of many regular files, in the order given, in one batched pass.

        Like :meth:`digest_file` for each path, but the files are looked up
        in the cache and hashed in batches (one query and one pool job per
        batch, not per file), which is what makes thousands of small files
        cheap. A path given twice is hashed once. The first error is raised.
        """
        wheres = [_absolute(p) for p in paths]
        nodes = {w: FileNode(os.path.basename(w), w) for w in wheres}
        files = list(nodes.values())
        if files:
            self._progress.files_found(len(files))
            await self._hash_all(files)
            await self._pool.run(self._store_new, files)
        return [_known(nodes[w]) for w in wheres]

    async def digest_tree(self, path: StrPath) -> tuple[Digest, list[FileEntry]]:
        """A directory's digest and every file in it, sorted by relative path.

        Broken symlinks are skipped, as they are in the digest.
        """
        where = _absolute(path)
        return await self._once(("tree", where), lambda: self._tree(where, want_files=True))

    async def aclose(self) -> None:
        """Cancel digests in flight, stop the workers and close the cache."""
        await self._flights.cancel_all()
        await asyncio.to_thread(self._pool.close)
        await asyncio.to_thread(self._procs.close)
        self._cache.close()

    async def _once(self, key: tuple[object, ...], start: Callable[[], Awaitable[T]]) -> T:
        """Concurrent requests for one key share one job (:class:`SingleFlight`'s rule).

        It leaves the table when it ends; the persistent cache remembers.
        """
        result: T = await self._flights.run(key, start)
        return result

    async def _digest(self, where: str) -> Digest:
        mode = (await self._pool.run(stat_path, where)).st_mode
        if stat.S_ISDIR(mode):
            digest, _ = await self._tree(where, want_files=False)
            return digest
        return await self._file(where)

    async def _file(self, where: str) -> Digest:
        node = FileNode(os.path.basename(where), where)
        self._progress.files_found(1)
        await self._pool.run(self._batch_job, [node], store=True)
        self._report([node])
        return _known(node)

    async def _tree(self, root: str, *, want_files: bool) -> tuple[Digest, list[FileEntry]]:
        # The cache opens on another worker while this one walks the tree.
        loop = asyncio.get_running_loop()
        tree, _ = await asyncio.gather(self._pool.run(scan, root), self._pool.run(self._cache.open))
        files = [f for _, f in iter_files(tree)]
        self._progress.files_found(len(files))
        sent: list[Future[None]] = []
        stop = threading.Event()
        try:
            rest = await self._pool.run(self._look_up_tree, tree, len(files), loop, sent, stop)
            await self._hash_all(rest, look_up=False)
            await asyncio.gather(*map(asyncio.wrap_future, sent))
        except BaseException:
            stop.set()  # queued batches are dropped; running ones finish
            for job in list(sent):
                job.cancel()
            raise
        return await self._pool.run(self._finish, tree, files, want_files)

    def _look_up_tree(
        self,
        tree: DirNode,
        total: int,
        loop: asyncio.AbstractEventLoop,
        sent: list[Future[None]],
        stop: threading.Event,
    ) -> list[FileNode]:
        """Stat and look up every file; hand the misses on as soon as a batch is full.

        One thread does it all, directory by directory (one cache query
        each): that is cheaper than a pool job per chunk, and a warm run
        needs nothing else. In a large tree, full batches of small misses
        go straight to the worker processes while this thread goes on. The
        misses not sent (large files, or all of a small tree) are returned;
        the jobs sent are added to ``sent``. Setting ``stop`` ends it early.
        """
        procs = total >= self._procs_min_files
        rest: list[FileNode] = []
        queue: list[FileNode] = []
        for folder in iter_dirs(tree):
            if stop.is_set():
                return rest
            if not folder.files:
                continue
            with self._small_files:
                misses = self._look_up(folder.files, folder)
            if self._tracking or len(misses) < len(folder.files):
                loop.call_soon_threadsafe(self._report, [n for n in folder.files if n.cached])
            for node in misses:
                (queue if procs and _stat(node).size < _LARGE else rest).append(node)
            while len(queue) >= _BATCH_FILES:
                batch, queue = queue[:_BATCH_FILES], queue[_BATCH_FILES:]
                sent.append(self._procs.submit(partial(self._proc_batch, batch, loop)))
        if queue:
            sent.append(self._procs.submit(partial(self._proc_batch, queue, loop)))
        return rest

    def _look_up(self, nodes: Sequence[FileNode], folder: DirNode | None = None) -> list[FileNode]:
        """Stat ``nodes`` and take their digests from the cache; the misses.

        The files of ``folder`` are looked for in its directory row first.
        """
        for node in nodes:
            if node.stat is None:
                node.stat = regular_stat(node.path)
        stats = [_stat(n) for n in nodes]
        if folder is not None:
            names = [n.name for n in nodes]
            subdirs = subdir_names(d.name for d in folder.dirs)
            known, folder.current, folder.cached_hex = self._cache.lookup_dir(
                folder.key, names, stats, subdirs
            )
            if None in known:  # new or moved files may have rows of their own
                rows = self._cache.lookup_files(stats)
                known = [k or r for k, r in zip(known, rows, strict=True)]
        else:
            known = self._cache.lookup_files(stats)
        misses = []
        for node, cached in zip(nodes, known, strict=True):
            if cached is None:
                misses.append(node)
            else:
                node.hex, node.cached = cached, True
        return misses

    def _proc_batch(self, nodes: list[FileNode], loop: asyncio.AbstractEventLoop) -> None:
        """Hash ``nodes`` in a worker process; on a driver thread.

        They are stored with the rest at the end: storing each batch here
        instead measured slower (its SQLite writes and this thread's
        lookups contend for the cache lock and the GIL).
        """
        self._hash_in_procs(nodes)
        loop.call_soon_threadsafe(self._report, nodes)

    async def _hash_all(self, files: Sequence[FileNode], *, look_up: bool = True) -> None:
        """Give every file its digest, in batches spread over the pool."""
        procs = len(files) >= self._procs_min_files
        jobs = [
            asyncio.ensure_future(self._batch(batch, procs, look_up))
            for batch in _batches(files, self._pool.threads)
        ]
        try:
            await asyncio.gather(*jobs)
        except BaseException:
            for job in jobs:
                job.cancel()  # queued batches leave the pool; running ones finish
            raise

    async def _batch(self, batch: list[FileNode], procs: bool, look_up: bool) -> None:
        await self._pool.run(self._batch_job, batch, store=False, procs=procs, look_up=look_up)
        self._report(batch)

    def _batch_job(
        self, batch: list[FileNode], *, store: bool, procs: bool = False, look_up: bool = True
    ) -> None:
        """Stat, look up and hash what the cache lacks; in a worker thread.

        One stat per file is the least that proves a cached digest current;
        one query serves the whole batch. Small files are handled one batch
        at a time across the pool: each costs a few microseconds of Python
        between system calls, and two threads doing that hand the GIL back
        and forth on every call, which measured slower than one thread.
        Large files (the hashing itself releases the GIL for long) are
        hashed outside that lock, in parallel. In a large job, small files
        go to worker processes instead, where they do hash in parallel.
        """
        large: list[FileNode] = []
        small: list[FileNode] = []
        with self._small_files:
            for node in self._look_up(batch) if look_up else batch:
                (small if _stat(node).size < _LARGE else large).append(node)
            if not procs or len(small) < _PROCS_MIN_BATCH:
                for node in small:
                    self._hash(node)
                small = []
        if small:
            self._hash_in_procs(small)
        for node in large:
            self._hash(node)
        if store:
            self._store_new(batch)

    def _hash_in_procs(self, nodes: list[FileNode]) -> None:
        hexes = self._procs.hash([n.path for n in nodes], [_stat(n) for n in nodes])
        for node, hex_ in zip(nodes, hexes, strict=True):
            if hex_ is None:  # unreadable, changed, or no worker: the thread tells why
                self._hash(node)
            else:
                node.hex = hex_

    def _hash(self, node: FileNode) -> None:
        mapped = self._procs.hash_mapped if self._mmap else None
        hex_, node.stat = hash_file(node.path, expected=node.stat, mapped=mapped)
        node.hex = hex_

    def _store_new(self, nodes: Sequence[FileNode]) -> None:
        """Remember the digests of the files of ``nodes`` that were hashed."""
        self._cache.store_files((_stat(n), _hex(n)) for n in nodes if not n.cached)

    def _finish(
        self, tree: DirNode, files: Sequence[FileNode], want_files: bool
    ) -> tuple[Digest, list[FileEntry]]:
        """Combine the directory digest; remember the new file digests in one go."""
        reuse_digests(tree)
        digest = combine(tree)
        self._cache.store_dirs(_changed_rows(tree))
        if not want_files:
            return digest, []
        entries = [
            FileEntry(rel, Path(f.path), _known(f), _stat(f).size, _stat(f).mtime_ns)
            for rel, f in iter_files(tree)
        ]
        entries.sort(key=lambda e: e.relpath)
        return digest, entries

    def _report(self, nodes: Sequence[FileNode]) -> None:
        # On the loop thread, once per batch: only a progress display needs a call per file.
        hashed = [n for n in nodes if not n.cached]
        stats = self.stats
        stats.files_cached += len(nodes) - len(hashed)
        stats.files_hashed += len(hashed)
        stats.bytes_hashed += sum(_stat(n).size for n in hashed)
        if self._tracking:
            progress = self._progress
            for node in nodes:
                if not node.cached:
                    progress.bytes_hashed(_stat(node).size)
                progress.file_done(Path(node.path), node.cached)


def _absolute(path: StrPath) -> str:
    # Symlinks stay as given: they are followed when read, as Sprocket does.
    return os.path.abspath(os.fspath(path))


def _hex(node: FileNode) -> str:
    assert node.hex is not None, f"{node.path} has no digest yet"
    return node.hex


def _known(node: FileNode) -> Digest:
    return Digest._trusted("file", _hex(node))


def _stat(node: FileNode) -> FileStat:
    assert node.stat is not None, f"{node.path} was never looked at"
    return node.stat


def _changed_rows(tree: DirNode) -> Iterator[DirRow]:
    """Cache rows of the directories with files whose row is missing or out of date."""
    for d in iter_dirs(tree):
        hex_ = combine(d).hex
        if d.files and not (d.current and d.cached_hex == hex_):
            files = d.files
            yield (
                d.key,
                [f.name for f in files],
                [_stat(f) for f in files],
                [_hex(f) for f in files],
                subdir_names(c.name for c in d.dirs),
                hex_,
            )


def _batches(files: Sequence[FileNode], threads: int) -> list[list[FileNode]]:
    """Batches small enough to spread over every worker, big enough to be cheap."""
    size = max(1, min(_BATCH_FILES, -(-len(files) // (threads * 4))))
    return [list(files[i : i + size]) for i in range(0, len(files), size)]
