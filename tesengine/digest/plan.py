"""Planning a digest job (pure): where each file is hashed, in which batches.

Reading and hashing a small file costs ~12 µs of Python that holds the
GIL, so a large job sends its small files to worker processes in batches;
large files (hashing releases the GIL for long stretches) and the small
files of a small job are hashed in threads. Nothing here does I/O: the
functions look only at the nodes the walk built and the stats taken since.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .dir_rows import DirRow, subdir_names
from .filehash import FileStat
from .layout import Digest, FileEntry
from .walk import DirNode, FileNode, combine, fill_stats, iter_dirs, iter_files

__all__ = [
    "BATCH_FILES",
    "LARGE",
    "PROCS_MIN_BATCH",
    "PROCS_MIN_FILES",
    "ProcBatcher",
    "batches",
    "changed_rows",
    "file_entries",
    "is_large",
    "known",
    "node_hex",
    "node_stat",
]

#: At most this many files are handed to a worker at a time.
BATCH_FILES = 256
#: Files at least this large are hashed in threads, outside the small-file lock.
LARGE = 1 << 20
#: A job of at least this many files hashes its small files in worker processes...
PROCS_MIN_FILES = 2000
#: ...in batches that have at least this many small files to hash.
PROCS_MIN_BATCH = 32


def node_stat(node: FileNode) -> FileStat:
    """The stat of a file the job has looked at."""
    assert node.stat is not None, f"{node.path} was never looked at"
    return node.stat


def node_hex(node: FileNode) -> str:
    """The hex digest of a file the job has hashed or found in the cache."""
    assert node.hex is not None, f"{node.path} has no digest yet"
    return node.hex


def known(node: FileNode) -> Digest:
    """The :class:`Digest` of a file that has its hex."""
    return Digest._trusted("file", node_hex(node))


def is_large(node: FileNode) -> bool:
    """True for a file hashed on its own (in a thread, or mapped in a process)."""
    return node_stat(node).size >= LARGE


@dataclass(slots=True)
class ProcBatcher:
    """Sorts cache misses as they are found: full batches of small files for processes.

    With ``procs`` off (a small job) nothing is batched: every miss is left
    in ``rest``, for the threads.
    """

    procs: bool
    rest: list[FileNode] = field(default_factory=list)
    _queue: list[FileNode] = field(default_factory=list)

    def add(self, misses: Sequence[FileNode]) -> list[list[FileNode]]:
        """Take ``misses``; the batches now full enough to send."""
        for node in misses:
            (self._queue if self.procs and not is_large(node) else self.rest).append(node)
        full: list[list[FileNode]] = []
        while len(self._queue) >= BATCH_FILES:
            full.append(self._queue[:BATCH_FILES])
            self._queue = self._queue[BATCH_FILES:]
        return full

    def flush(self) -> list[FileNode]:
        """The last, partial batch for the processes (maybe empty)."""
        last, self._queue = self._queue, []
        return last


def batches(files: Sequence[FileNode], threads: int) -> list[list[FileNode]]:
    """Batches small enough to spread over every worker, big enough to be cheap."""
    size = max(1, min(BATCH_FILES, -(-len(files) // (threads * 4))))
    return [list(files[i : i + size]) for i in range(0, len(files), size)]


def changed_rows(tree: DirNode) -> Iterator[DirRow]:
    """Cache rows of the directories with files whose row is missing or out of date."""
    for d in iter_dirs(tree):
        hex_ = combine(d).hex
        if d.files and not (d.current and d.cached_hex == hex_):
            fill_stats(d)
            files = d.files
            yield (
                d.key,
                [f.name for f in files],
                [node_stat(f) for f in files],
                [node_hex(f) for f in files],
                subdir_names(c.name for c in d.dirs),
                hex_,
            )


def file_entries(tree: DirNode) -> list[FileEntry]:
    """Every file of ``tree`` as a :class:`FileEntry`, sorted by relative path."""
    for d in iter_dirs(tree):
        fill_stats(d)
    entries = [
        FileEntry(rel, Path(f.path), known(f), node_stat(f).size, node_stat(f).mtime_ns)
        for rel, f in iter_files(tree)
    ]
    entries.sort(key=lambda e: e.relpath)
    return entries
