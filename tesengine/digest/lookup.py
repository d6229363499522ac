"""The digest job's side of the cache: look files up by stat, remember what was hashed.

Blocking (stat calls and SQLite); runs in digest pool threads. The
:class:`~tesengine.digest.cache.DigestCache` keeps its own lock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from itertools import repeat
from operator import attrgetter

from .cache import DigestCache
from .dir_rows import subdir_names
from .filehash import FileStat, regular_stat, regular_stats_in
from .plan import changed_rows, node_hex, node_stat
from .walk import DirNode, FileNode

__all__ = ["CachedDigests"]

_NAME = attrgetter("name")
_STAT = attrgetter("stat")


class CachedDigests:
    """Digests of unchanged files from the cache; new ones written back."""

    def __init__(self, cache: DigestCache) -> None:
        self._cache = cache

    def open(self) -> None:
        """Open the database now (it otherwise opens on first use)."""
        self._cache.open()

    def close(self) -> None:
        """Close the database."""
        self._cache.close()

    def look_up(self, nodes: Sequence[FileNode], folder: DirNode | None = None) -> list[FileNode]:
        """Stat ``nodes`` and take their digests from the cache; the misses.

        The files of ``folder`` are looked for in its directory row first
        (one query for the directory), then, for those it lacks, one by one.
        """
        stats = _stat_all(nodes, folder)
        if folder is not None:
            names = list(map(_NAME, nodes))
            subdirs = subdir_names(d.name for d in folder.dirs)
            known, folder.current, folder.cached_hex = self._cache.lookup_dir(
                folder.key, names, stats, subdirs
            )
            if None in known:  # new or moved files may have rows of their own
                rows = self._cache.lookup_files(stats)
                known = [k or r for k, r in zip(known, rows, strict=True)]
        else:
            known = self._cache.lookup_files(stats)
        if None not in known:  # the warm case, in C: no Python step per file
            deque(map(setattr, nodes, repeat("hex"), known), maxlen=0)
            deque(map(setattr, nodes, repeat("cached"), repeat(True)), maxlen=0)
            return []
        misses = []
        for node, cached in zip(nodes, known, strict=True):
            if cached is None:
                misses.append(node)
            else:
                node.hex, node.cached = cached, True
        return misses

    def remember_files(self, nodes: Sequence[FileNode]) -> None:
        """Store the digests of the files of ``nodes`` that were hashed (not cached)."""
        self._cache.store_files((node_stat(n), node_hex(n)) for n in nodes if not n.cached)

    def remember_tree(self, tree: DirNode) -> None:
        """Store the rows of ``tree``'s directories that are new or changed."""
        self._cache.store_dirs(changed_rows(tree))


def _stat_all(nodes: Sequence[FileNode], folder: DirNode | None) -> list[FileStat]:
    """Give every node its stat: the files of ``folder`` in one pass if they can be."""
    if folder is not None and not any(map(_STAT, nodes)):
        stats = regular_stats_in(folder.path, list(map(_NAME, nodes)))
        if stats is not None:
            deque(map(setattr, nodes, repeat("stat"), stats), maxlen=0)
            return stats
    for node in nodes:  # one by one, so that an error names its file
        if node.stat is None:
            node.stat = regular_stat(node.path)
    return [node_stat(n) for n in nodes]
