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

The parts: :mod:`.plan` decides (pure) where each file is hashed and in
which batches, :mod:`.executor` does the blocking work in the pool's
threads and the worker processes, :mod:`.lookup` is the job's side of the
cache; this module orchestrates them on the event loop (single flight,
progress, the order of the steps).

Performance notes (20,000 x 16 KiB files, 2 cores): reading and hashing
a small file costs ~12 µs of Python that holds the GIL, so a large job
sends its small files to worker processes (:mod:`.procs`) in batches,
while one thread stats the files and looks them up in the cache directory
by directory and keeps feeding them. A warm run must still stat every
file, since that is the only proof none changed, so its floor is one
``stat`` per file; the rest is the walk, one cache query per directory and
a dictionary probe per file (a directory whose files and subdirectories
all match reuses its stored digest instead of being recombined). The warm
per-file steps run as C-level ``map`` passes (stat, match, set), not Python
loops: measured, listing plus stat alone is ~1.3x that floor, the walk's
node per file ~0.5x more, and a whole warm digest ~2.2x (it was 3.5x, then
2.3x). A warm directory's stat fields are compared with its row without a
FileStat per file. Stats from two threads measured 1.5x slower than from one
(the GIL changes hands around every stat), so the warm walk stays on one.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from itertools import filterfalse
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

from .._closing import AsyncClosing
from ..singleflight import SingleFlight
from .cache import DigestCache
from .executor import HashExecutor, ProcFeed, Report
from .layout import Digest, FileEntry
from .lookup import CachedDigests
from .plan import batches, file_entries, known, node_stat
from .pool import DigestPool
from .progress import DigestProgress, DigestStats, NullProgress, default_cache_dir
from .walk import DirNode, FileNode, combine, iter_dirs, reuse_digests, scan, stat_path

if TYPE_CHECKING:
    from ..config import BackendConfig

__all__ = ["DigestProgress", "DigestStats", "Digester", "NullProgress", "default_cache_dir"]

T = TypeVar("T")
_CACHED = attrgetter("cached")
StrPath = str | os.PathLike[str]


class Digester(AsyncClosing):
    """Computes Sprocket-compatible digests off the event loop, with a cache.

    ``threads`` bounds the worker threads (default: one per CPU); ``cache_dir``
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
        self._lookup = CachedDigests(
            DigestCache((cache_dir or default_cache_dir()) if cache else None)
        )
        self._exec = HashExecutor(self._lookup, self._pool.threads, mmap=mmap)
        self._progress: DigestProgress = progress or NullProgress()
        self._tracking = progress is not None
        self._flights: SingleFlight[tuple[object, ...], Any] = SingleFlight()
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
        """How many worker threads may run at once."""
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
            # One trip looks every file up (a warm batch needs nothing more);
            # only the misses are spread over the pool to be hashed.
            misses = await self._pool.run(self._exec.look_up, files)
            self._report([n for n in files if n.cached])
            if misses:
                await self._hash_all(misses, look_up=False)
                await self._pool.run(self._lookup.remember_files, misses)
        return [known(nodes[w]) for w in wheres]

    async def digest_tree(self, path: StrPath) -> tuple[Digest, list[FileEntry]]:
        """A directory's digest and every file in it, sorted by relative path.

        Broken symlinks are skipped, as they are in the digest.
        """
        where = _absolute(path)
        return await self._once(("tree", where), lambda: self._tree(where, want_files=True))

    async def aclose(self) -> None:
        """Cancel digests in flight, stop the worker processes and close the cache."""
        await self._flights.cancel_all()  # returns once no pool thread runs a job of theirs
        await self._pool.run(self._exec.close)
        self._lookup.close()

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
        await self._pool.run(self._exec.hash_batch, [node], store=True)
        self._report([node])
        return known(node)

    async def _tree(self, root: str, *, want_files: bool) -> tuple[Digest, list[FileEntry]]:
        # The cache opens on another worker while this one walks the tree.
        tree, _ = await asyncio.gather(
            self._pool.run(scan, root), self._pool.run(self._lookup.open)
        )
        count = sum(len(d.files) for d in iter_dirs(tree))  # not a list of every file
        self._progress.files_found(count)
        report = self._threadsafe_report()
        feed = ProcFeed(self._exec, report)
        walk = partial(self._exec.look_up_tree, tree, count, feed, report)
        try:
            rest = await self._pool.run_stoppable(walk)
            await self._hash_all(rest, look_up=False)
            await feed.wait()
        except BaseException:
            feed.cancel()  # queued batches are dropped; running ones finish
            raise
        return await self._pool.run(self._finish, tree, want_files)

    def _finish(self, tree: DirNode, want_files: bool) -> tuple[Digest, list[FileEntry]]:
        """Combine the directory digest and remember the tree (in a pool thread)."""
        reuse_digests(tree)
        digest = combine(tree)
        self._lookup.remember_tree(tree)
        return digest, (file_entries(tree) if want_files else [])

    async def _hash_all(self, files: Sequence[FileNode], *, look_up: bool = True) -> None:
        """Give every file its digest, in batches spread over the pool."""
        procs = self._exec.use_procs(len(files))
        jobs = [
            asyncio.ensure_future(self._batch(batch, procs, look_up))
            for batch in batches(files, self._pool.threads)
        ]
        try:
            await asyncio.gather(*jobs)
        except BaseException:
            for job in jobs:
                job.cancel()  # queued batches leave the pool; running ones finish
            await asyncio.gather(*jobs, return_exceptions=True)
            raise

    async def _batch(self, batch: list[FileNode], procs: bool, look_up: bool) -> None:
        await self._pool.run(
            self._exec.hash_batch, batch, store=False, procs=procs, look_up=look_up
        )
        self._report(batch)

    def _threadsafe_report(self) -> Report:
        loop = asyncio.get_running_loop()

        def report(nodes: list[FileNode]) -> None:
            loop.call_soon_threadsafe(self._report, nodes)

        return report

    def _report(self, nodes: Sequence[FileNode]) -> None:
        # On the loop thread, once per batch: only a progress display needs a call per file.
        hashed = list(filterfalse(_CACHED, nodes))  # C-level: a warm tree reports every file
        stats = self.stats
        stats.files_cached += len(nodes) - len(hashed)
        stats.files_hashed += len(hashed)
        stats.bytes_hashed += sum(node_stat(n).size for n in hashed)
        if self._tracking:
            progress = self._progress
            for node in nodes:
                if not node.cached:
                    progress.bytes_hashed(node_stat(node).size)
                progress.file_done(Path(node.path), node.cached)


def _absolute(path: StrPath) -> str:
    # Symlinks stay as given: they are followed when read, as Sprocket does.
    return os.path.abspath(os.fspath(path))
