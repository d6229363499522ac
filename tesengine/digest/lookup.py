"""The digest job's side of the cache: look files up by stat, remember what was hashed.

Blocking (stat calls and SQLite); runs in digest pool threads. The
:class:`~tesengine.digest.cache.DigestCache` keeps its own lock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from itertools import repeat
from operator import attrgetter
from os import stat_result

from .cache import DigestCache
from .dir_rows import row_digest, same_row, subdir_names
from .filehash import FileStat, file_stats, raw_stats_in, regular_stat, stat_fields
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
        if folder is not None and not any(map(_STAT, nodes)):
            names = list(map(_NAME, nodes))
            found = raw_stats_in(folder.path, names)
            if found is not None:
                if self._all_current(nodes, folder, names, found):
                    return []
                stats = file_stats(found)
                deque(map(setattr, nodes, repeat("stat"), stats), maxlen=0)
                return self._look_up(nodes, folder, stats)
        for node in nodes:  # one by one, so that an error names its file
            if node.stat is None:
                node.stat = regular_stat(node.path)
        return self._look_up(nodes, folder, [node_stat(n) for n in nodes])

    def _all_current(
        self, nodes: Sequence[FileNode], folder: DirNode, names: list[str], found: list[stat_result]
    ) -> bool:
        """The warm case: whether ``folder``'s row matched every file, which then has its hex.

        The live stat fields are compared with the row's whole, in C, with no
        :class:`FileStat` per file; those are built only if asked for
        (:func:`.walk.fill_stats`).
        """
        row = self._cache.dir_row(folder.key)
        hexes = None if row is None else same_row(row, names, stat_fields(found))
        if row is None or hexes is None:
            return False
        deque(map(setattr, nodes, repeat("hex"), hexes), maxlen=0)
        deque(map(setattr, nodes, repeat("cached"), repeat(True)), maxlen=0)
        folder.raw_stats = found
        folder.current = True
        folder.cached_hex = row_digest(row, subdir_names(d.name for d in folder.dirs))
        return True

    def _look_up(
        self, nodes: Sequence[FileNode], folder: DirNode | None, stats: list[FileStat]
    ) -> list[FileNode]:
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
