"""Executing a digest job: the blocking work, in pool threads and worker processes.

Everything here blocks and runs on a :class:`~.pool.DigestPool` thread; the
:class:`~.engine.Digester` awaits it. Small files are handled one batch at
a time across the pool: each costs a few microseconds of Python between
system calls, and two threads doing that hand the GIL back and forth on
every call, which measured slower than one thread. Large files (the
hashing itself releases the GIL for long) are hashed outside that lock, in
parallel. In a large job, small files go to worker processes
(:mod:`.procs`) instead, where they do hash in parallel.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from functools import partial

from .filehash import hash_file
from .lookup import CachedDigests
from .plan import PROCS_MIN_BATCH, PROCS_MIN_FILES, ProcBatcher, is_large, node_stat
from .procs import HashProcs
from .walk import DirNode, FileNode, iter_dirs

__all__ = ["HashExecutor", "ProcFeed", "Report"]

#: Cached files are reported in runs of this many, not per directory: each
#: report wakes the event loop's thread, which then contends for the GIL with
#: the walk, whose every stat releases it (the gain was within this machine's
#: noise; it is kept because it cannot cost more).
REPORT_FILES = 4096
#: Hands nodes that have their digests to the event loop (thread-safe).
Report = Callable[[list[FileNode]], None]


class ProcFeed:
    """The batches a tree walk sends to the worker processes, for the job to await.

    The walking thread calls :meth:`send`; the job, on the loop, awaits
    :meth:`wait` once the walk returned, or calls :meth:`cancel` on failure
    (queued batches are dropped; running ones finish).
    """

    def __init__(self, executor: HashExecutor, report: Report) -> None:
        self._executor = executor
        self._report = report
        self._lock = threading.Lock()
        self._sent: list[Future[None]] = []

    def send(self, batch: list[FileNode]) -> None:
        """Hash ``batch`` on a worker process (from the walking thread)."""
        future = self._executor.procs.submit(partial(self._hash, batch))
        with self._lock:
            self._sent.append(future)

    async def wait(self) -> None:
        """Until every batch sent has its digests."""
        with self._lock:
            sent = list(self._sent)
        await asyncio.gather(*map(asyncio.wrap_future, sent))

    def cancel(self) -> None:
        """Drop the batches that have not started."""
        with self._lock:
            sent = list(self._sent)
        for future in sent:
            future.cancel()

    def _hash(self, batch: list[FileNode]) -> None:
        # They are stored with the rest at the end: storing each batch here
        # instead measured slower (its SQLite writes and the walking thread's
        # lookups contend for the cache lock and the GIL).
        self._executor.hash_in_procs(batch)
        self._report(batch)


class HashExecutor:
    """Looks files up and hashes the misses, in threads and worker processes."""

    def __init__(self, lookup: CachedDigests, threads: int, *, mmap: bool) -> None:
        self.lookup = lookup
        self.procs = HashProcs(min(threads, os.cpu_count() or 1))
        #: A job of at least this many files uses the worker processes.
        self.procs_min_files = PROCS_MIN_FILES
        self._mmap = mmap
        self._small_files = threading.Lock()

    def use_procs(self, total: int) -> bool:
        """Whether a job of ``total`` files hashes its small files in processes."""
        return total >= self.procs_min_files

    def look_up_tree(
        self, tree: DirNode, total: int, feed: ProcFeed, report: Report, stop: threading.Event
    ) -> list[FileNode]:
        """Stat and look up every file; send full batches of small misses to ``feed``.

        One thread does it all, directory by directory (one cache query
        each): that is cheaper than a pool job per chunk, and a warm run
        needs nothing else. The misses not sent (large files, or all of a
        small tree) are returned. Setting ``stop`` ends it early.
        """
        batcher = ProcBatcher(self.use_procs(total))
        found: list[FileNode] = []  # cached files not yet reported
        for folder in iter_dirs(tree):
            if stop.is_set():
                return batcher.rest
            if not folder.files:
                continue
            with self._small_files:
                misses = self.lookup.look_up(folder.files, folder)
            if not misses:
                found += folder.files
            elif len(misses) < len(folder.files):
                found += [n for n in folder.files if n.cached]
            if len(found) >= REPORT_FILES:
                report(found)
                found = []
            for batch in batcher.add(misses):
                feed.send(batch)
        if found:
            report(found)
        if last := batcher.flush():
            feed.send(last)
        return batcher.rest

    def look_up(self, nodes: list[FileNode]) -> list[FileNode]:
        """Stat ``nodes`` and take their digests from the cache (one query); the misses."""
        with self._small_files:
            return self.lookup.look_up(nodes)

    def hash_batch(
        self, batch: list[FileNode], *, store: bool, procs: bool = False, look_up: bool = True
    ) -> None:
        """Stat, look up and hash what the cache lacks (one query for the batch)."""
        large: list[FileNode] = []
        small: list[FileNode] = []
        with self._small_files:
            for node in self.lookup.look_up(batch) if look_up else batch:
                (large if is_large(node) else small).append(node)
            if not procs or len(small) < PROCS_MIN_BATCH:
                for node in small:
                    self.hash(node)
                small = []
        if small:
            self.hash_in_procs(small)
        for node in large:
            self.hash(node)
        if store:
            self.lookup.remember_files(batch)

    def hash_in_procs(self, nodes: Sequence[FileNode]) -> None:
        """Hash ``nodes`` on a worker process; the ones it could not, here."""
        hexes = self.procs.hash([n.path for n in nodes], [node_stat(n) for n in nodes])
        for node, hex_ in zip(nodes, hexes, strict=True):
            if hex_ is None:  # unreadable, changed, or no worker: the thread tells why
                self.hash(node)
            else:
                node.hex = hex_

    def hash(self, node: FileNode) -> None:
        """Hash one file in this thread (a large one memory-mapped in a worker process)."""
        mapped = self.procs.hash_mapped if self._mmap else None
        node.hex, node.stat = hash_file(node.path, expected=node.stat, mapped=mapped)

    def close(self) -> None:
        """Stop the worker processes."""
        self.procs.close()
