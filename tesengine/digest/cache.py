"""The persistent digest cache: SQLite in the user cache directory.

A file's digest is reused only when its device, inode, size, mtime_ns and
ctime_ns all match what they were when it was hashed. mtime alone is not
enough: ``cp -p`` or ``touch -r`` restore it after a same-size rewrite, and
an ``mv`` of another file into place keeps the name but not the inode.
A directory's digest is stored with its row (below), but it is trusted only
when every file of the directory matched its stat and the subdirectories
have the names they had, recursively: only a stat of every file proves that
none changed. Otherwise it is recombined from the files' cached digests.

The files of a tree are kept one row per directory (keyed by the
directory's device and inode): the names, the five stat fields and the hex
of all its files, packed (:mod:`.dir_rows`). A warm tree then costs one query per directory
and a dictionary probe per file; each file must still match all five
fields of its own stat. Files not found there (new, moved, or digested
one by one) are looked up in the per-file table.

Rows are dropped 90 days after they were written (checked at most once a
day, when the cache is opened), so files deleted long ago do not keep the
database growing; a file still in use is then simply hashed once more.

The cache is an optimisation, never a reason to fail: an unreadable or
corrupt database is reported as a warning and rebuilt, and if even that
fails the run goes on without a cache. WAL mode and a busy timeout let
several processes share one file; SQLite's locking keeps it consistent.
All methods block; they run in digest pool threads, serialised by a lock.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

from .._sqlite import Schema, connect, write_transaction
from .dir_rows import DirRow, StoredRow, match_row, pack_row, row_digest, same_row, unpack_row
from .filehash import FileStat

__all__ = ["CACHE_FILE", "MAX_AGE", "SCHEMA_VERSION", "DigestCache"]

log = logging.getLogger("tesengine.digest")

CACHE_FILE = "digests.sqlite3"
#: Bumped whenever the tables change; a database of another version is rebuilt.
SCHEMA_VERSION = 3
MAX_AGE = 90 * 86400
_PRUNE_EVERY = 86400
_SCHEMA = """
CREATE TABLE files (
    dev INTEGER NOT NULL, ino INTEGER NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
    hex TEXT NOT NULL,
    stored INTEGER NOT NULL,
    PRIMARY KEY (dev, ino)
) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE dirs (
    dev INTEGER NOT NULL, ino INTEGER NOT NULL,
    names BLOB NOT NULL, stats BLOB NOT NULL, hexes TEXT NOT NULL,
    subdirs BLOB NOT NULL, digest TEXT NOT NULL,
    stored INTEGER NOT NULL,
    PRIMARY KEY (dev, ino)
) WITHOUT ROWID;
"""
# SQLite matches the five stat fields itself and returns only the hits.
_LOOKUP = (
    "WITH q(i, dev, ino, size, mtime_ns, ctime_ns) AS (VALUES {rows})"
    " SELECT q.i, f.hex FROM q JOIN files AS f ON f.dev = q.dev AND f.ino = q.ino"
    " WHERE f.size = q.size AND f.mtime_ns = q.mtime_ns AND f.ctime_ns = q.ctime_ns"
    " AND length(f.hex) = 64"
)
_CHUNK = 999 // 6  # rows of 6 parameters under SQLite's oldest bound-parameter limit
# A range scan reads every cached row between the lowest and highest inode:
# worth it while that is at most a few rows per file asked for.
_RANGE = (
    "SELECT ino, size, mtime_ns, ctime_ns, hex FROM files WHERE dev = ? AND ino BETWEEN ? AND ?"
    " AND length(hex) = 64"
)
_SPAN = 16
_DIR_LOOKUP = "SELECT names, stats, hexes, subdirs, digest FROM dirs WHERE dev = ? AND ino = ?"
_TOP = 1 << 63


def _signed(s: FileStat) -> tuple[int, ...]:
    # SQLite integers are signed 64-bit; some filesystems use the top bit of ino.
    if s.dev < _TOP and s.ino < _TOP:
        return s
    return tuple(v - (1 << 64) if v >= _TOP else v for v in s)


class DigestCache:
    """File digests by stat; a ``None`` directory disables the cache."""

    def __init__(self, directory: Path | None) -> None:
        self.path = directory / CACHE_FILE if directory is not None else None
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._disabled = directory is None

    def lookup_files(self, stats: Sequence[FileStat]) -> list[str | None]:
        """The cached hex of each file in ``stats``, or None where there is none.

        A row counts only when all five stat fields match. This runs for
        every file of a tree, so it is one query per chunk: a range scan of
        the primary key when the inodes are close together (files created
        together usually are), else a join against the listed keys.
        """
        result: list[str | None] = [None] * len(stats)
        if self._disabled or not stats:
            return result
        for start in range(0, len(stats), _CHUNK):
            chunk = stats[start : start + _CHUNK]
            by_key = self._rows_near(chunk)
            if by_key is None:
                self._join(chunk, start, result)
                continue
            # a FileStat hashes and compares as the plain tuple of its five fields
            result[start : start + len(chunk)] = map(by_key.get, chunk)
        return result

    def _rows_near(self, chunk: Sequence[FileStat]) -> dict[tuple[int, ...], str] | None:
        """Hex by all five stat fields of the rows in ``chunk``'s inode range.

        None unless the chunk is on one device and its inodes densely packed.
        """
        dev = chunk[0].dev
        inos = [s.ino for s in chunk if s.dev == dev]
        low, high = min(inos), max(inos)
        if len(inos) < len(chunk) or max(dev, high) >= _TOP:
            return None
        if high - low > _SPAN * len(chunk) + 64:
            return None
        rows = self._query(_RANGE, (dev, low, high))
        return {(dev, ino, size, mtime, ctime): hex_ for ino, size, mtime, ctime, hex_ in rows}

    def _join(self, chunk: Sequence[FileStat], start: int, result: list[str | None]) -> None:
        params: list[int] = []
        for i, s in enumerate(chunk, start):
            params += (i, *_signed(s))
        sql = _LOOKUP.format(rows=",".join(["(?,?,?,?,?,?)"] * len(chunk)))
        for i, hex_ in self._query(sql, tuple(params)):
            result[i] = hex_

    def store_files(self, rows: Iterable[tuple[FileStat, str]]) -> None:
        """Remember that the file with each stat has the given hex digest."""
        now = int(time.time())
        values = [(*_signed(s), hex_, now) for s, hex_ in rows]
        self._write("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)", values)

    def dir_row(self, key: tuple[int, int]) -> StoredRow | None:
        """The stored row of the directory ``key`` (device, inode), as read (unchecked)."""
        if self._disabled or max(key) >= _TOP:
            return None
        rows = self._query(_DIR_LOOKUP, key)
        return tuple(rows[0]) if rows else None

    def lookup_dir(
        self, key: tuple[int, int], names: Sequence[str], stats: Sequence[FileStat], subdirs: bytes
    ) -> tuple[list[str | None], bool, str | None]:
        """The cached hex of each file of one directory, from its row.

        Also whether the row is exact (every file found, and no other), and
        if so, and the directory has the subdirectories ``subdirs`` (see
        :func:`.dir_rows.subdir_names`), the directory digest stored with the row: it
        holds if every subdirectory's does.
        """
        misses: list[str | None] = [None] * len(names)
        stored = self.dir_row(key)
        if stored is None:
            return misses, False, None
        same = same_row(stored, names, list(chain.from_iterable(stats)))
        if same is not None:
            return list[str | None](same), True, row_digest(stored, subdirs)
        row = unpack_row(*stored[:3])
        if row is None:
            return misses, False, None
        found = match_row(row, names, stats)
        exact = len(row[0]) == len(names) and None not in found
        return found, exact, row_digest(stored, subdirs) if exact else None

    def store_dirs(self, dirs: Iterable[DirRow]) -> None:
        """Remember each directory's files, subdirectory names and digest."""
        now = int(time.time())
        rows: list[tuple[object, ...]] = []
        loose: list[tuple[FileStat, str]] = []
        for key, names, stats, hexes, subdirs, digest in dirs:
            packed = pack_row(names, stats, hexes) if max(key) < _TOP else None
            if packed is None:
                loose += zip(stats, hexes, strict=True)  # values SQLite cannot pack: one by one
            else:
                rows.append((*key, *packed, subdirs, digest, now))
        self._write("INSERT OR REPLACE INTO dirs VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self.store_files(loose)

    def open(self) -> None:
        """Open the database now rather than on first use (it may take a while)."""
        with self._lock:
            self._connection()

    def close(self) -> None:
        """Close the database connection (it reopens on next use)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _query(self, sql: str, params: tuple[object, ...]) -> list[Any]:
        with self._lock:
            conn = self._connection()
            if conn is None:
                return []
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                self._failed("read", exc)
                return []

    def _write(self, sql: str, values: Sequence[tuple[object, ...]]) -> None:
        if not values:
            return
        with self._lock:
            conn = self._connection()
            if conn is None:
                return
            try:
                with conn:
                    conn.executemany(sql, values)
            except sqlite3.Error as exc:
                self._failed("write", exc)

    def _connection(self) -> sqlite3.Connection | None:
        if self._conn is None and not self._disabled:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection | None:
        assert self.path is not None
        for attempt in range(2):
            try:
                return _connect(self.path)
            except (OSError, sqlite3.Error) as exc:
                if attempt == 0 and isinstance(exc, sqlite3.DatabaseError):
                    log.warning("digest cache %s is unreadable (%s); rebuilding it", self.path, exc)
                    _remove(self.path)
                    continue
                log.warning("digest cache %s disabled: %s", self.path, exc)
        self._disabled = True
        return None

    def _failed(self, what: str, exc: sqlite3.Error) -> None:
        log.warning("digest cache %s: %s failed (%s); carrying on", self.path, what, exc)
        if not isinstance(exc, sqlite3.OperationalError) and self.path is not None:
            # Corruption found mid-run: start afresh next time it is used.
            assert self._conn is not None
            self._conn.close()
            self._conn = None
            log.warning("digest cache %s looks corrupt; rebuilding it", self.path)
            _remove(self.path)


_TABLES = Schema(
    "digest cache",
    SCHEMA_VERSION,
    tuple(s for s in _SCHEMA.split(";") if s.strip()),
    rebuild=True,
    drop=("files", "meta", "trees", "dirs"),
)


def _connect(path: Path) -> sqlite3.Connection:
    conn = connect(path, _TABLES, busy_timeout=30)
    try:
        if _prune_due(conn):
            write_transaction(conn, _prune)
        conn.isolation_level = "DEFERRED"  # `with conn:` commits a batch of writes at once
    except BaseException:
        conn.close()
        raise
    return conn


def _prune_due(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT value FROM meta WHERE key = 'pruned'").fetchone()
    return row is None or time.time() - int(row[0]) >= _PRUNE_EVERY


def _prune(conn: sqlite3.Connection) -> None:
    if not _prune_due(conn):
        return  # another process just did it
    now = int(time.time())
    conn.execute("DELETE FROM files WHERE stored < ?", (now - MAX_AGE,))
    conn.execute("DELETE FROM dirs WHERE stored < ?", (now - MAX_AGE,))
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('pruned', ?)", (now,))


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
