"""SQLite set up once: connections, pragmas and schema versions of tesengine's databases.

Two databases use it: the task store of ``tesengine serve`` and the digest
cache. Both open files that several connections (or processes) share, so
every connection gets the same settings:

- ``isolation_level=None``: no implicit transactions; writers open their own
  (:func:`write_transaction`), so a failed one leaves nothing half-written;
- WAL, so readers run beside a writer, and ``synchronous=NORMAL``: a commit
  survives a process crash, only a power cut may lose the last few (an
  fsync per commit would cap throughput);
- a busy timeout: how long a statement waits for another holder of the lock.

The schema version is SQLite's ``PRAGMA user_version``. A cache rebuilds
tables of any other version; a store adopts a file written before it was
versioned (version 0, tables created if absent) and refuses any other
version rather than guess at it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Schema", "connect", "user_version", "write_transaction"]

log = logging.getLogger("tesengine.sqlite")


@dataclass(frozen=True, slots=True)
class Schema:
    """The tables of one database at one version.

    ``rebuild``: the database is a cache, and tables of another version
    (``drop`` names them, old ones too) are dropped and made afresh.
    """

    name: str
    version: int
    statements: tuple[str, ...]
    rebuild: bool = False
    drop: tuple[str, ...] = ()

    def apply(self, conn: sqlite3.Connection) -> None:
        """Bring ``conn``'s database to this schema; call it inside a write transaction."""
        found = user_version(conn)
        if found == self.version:
            return  # another connection built it while this one waited for the lock
        if self.rebuild:
            for table in self.drop:
                conn.execute(f"DROP TABLE IF EXISTS {table}")
        elif found != 0:
            raise sqlite3.DatabaseError(
                f"{self.name} has schema version {found}; this tesengine knows {self.version}"
            )
        log.info("%s: creating tables (schema version %d)", self.name, self.version)
        for statement in self.statements:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {int(self.version)}")


def connect(path: Path, schema: Schema, *, busy_timeout: float) -> sqlite3.Connection:
    """A connection to ``path`` (created if missing) with the settings above, at ``schema``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, timeout=busy_timeout, check_same_thread=False, isolation_level=None
    )
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if user_version(conn) != schema.version:
            write_transaction(conn, schema.apply)
    except BaseException:
        conn.close()
        raise
    return conn


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version stored in the database (0 when never set)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def write_transaction(
    conn: sqlite3.Connection, change: Callable[[sqlite3.Connection], None]
) -> None:
    """Run ``change(conn)`` in one ``BEGIN IMMEDIATE`` transaction: all of it or nothing.

    IMMEDIATE takes the write lock first, so two processes opening a new
    database at once do not both build it.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        change(conn)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
