"""The SQLite side of the task store: one table of JSON task documents.

Blocking functions, called from worker threads by :mod:`.store`. Writes go
through one connection in explicit ``BEGIN IMMEDIATE`` transactions that are
rolled back on any failure, so a failed commit leaves nothing half-written;
reads use a second connection (WAL lets them run beside a writer, even one
holding ``BEGIN EXCLUSIVE``). Connections are set up by :mod:`tesengine._sqlite`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import logging
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from .._sqlite import Schema, connect, write_transaction
from .task_doc import TaskDoc

__all__ = ["StoredRow", "TaskDb", "trim_heap", "tune_heap"]

log = logging.getLogger("tesengine.server.store")

# Version 1 is the table as it was before versions were recorded: such a file is adopted.
_SCHEMA = Schema(
    "the task database",
    version=1,
    statements=(
        "CREATE TABLE IF NOT EXISTS tasks"
        " (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL)",
    ),
)


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One readable row: its sequence number, parsed document and JSON size."""

    seq: int
    doc: TaskDoc
    size: int


class TaskDb:
    """A writer and a reader connection on one task database file."""

    def __init__(self, path: Path, busy_timeout: float = 5.0) -> None:
        self.path = path
        self._writer = connect(path, _SCHEMA, busy_timeout=busy_timeout)
        try:
            self._reader = connect(path, _SCHEMA, busy_timeout=busy_timeout)
        except BaseException:
            self._writer.close()
            raise
        self._read_lock = threading.Lock()

    def max_seq(self) -> int:
        """The highest sequence number in the table, readable row or not."""
        with self._read_lock:
            (value,) = self._reader.execute("SELECT COALESCE(MAX(seq), 0) FROM tasks").fetchone()
        return int(value)

    def load(self, keep: Callable[[StoredRow], Any]) -> list[Any]:
        """``keep(row)`` for every readable row, oldest first; unreadable rows are logged.

        Rows are parsed one at a time, so ``keep`` can shrink each before the
        next is read (start-up memory stays near what is kept, not the file).
        """
        kept = []
        for row in self._rows():
            kept.append(keep(row))
        return kept

    def _rows(self) -> Iterator[StoredRow]:
        with self._read_lock:
            cursor = self._reader.execute("SELECT seq, doc FROM tasks ORDER BY seq")
            for seq, text in cursor:
                doc, why = _parse(text)
                if doc is None:
                    log.warning(
                        "task database %s: row seq=%s is unreadable (%s); skipped",
                        self.path,
                        seq,
                        why,
                    )
                    continue
                yield StoredRow(int(seq), doc, len(text))

    def read(self, seq: int) -> StoredRow | None:
        """The stored document of row ``seq``."""
        with self._read_lock:
            found = self._reader.execute("SELECT doc FROM tasks WHERE seq = ?", (seq,)).fetchone()
        if found is None:
            return None
        doc, _why = _parse(found[0])
        return None if doc is None else StoredRow(seq, doc, len(found[0]))

    def write(self, rows: list[tuple[int, str, str]]) -> None:
        """Insert or update ``(seq, id, doc)`` rows in one transaction; all or nothing."""

        def upsert(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO tasks (seq, id, doc) VALUES (?, ?, ?) "
                "ON CONFLICT(seq) DO UPDATE SET doc = excluded.doc",
                rows,
            )

        write_transaction(self._writer, upsert)

    def close(self) -> None:
        """Close both connections."""
        self._writer.close()
        self._reader.close()


def _parse(text: object) -> tuple[TaskDoc | None, str]:
    """The document in a row, or None and why it cannot be used."""
    try:
        doc = json.loads(text) if isinstance(text, str | bytes) else None
    except (ValueError, RecursionError) as exc:
        return None, f"not valid JSON: {str(exc)[:100]}"
    if not isinstance(doc, dict):
        return None, "not a JSON object"
    if not isinstance(doc.get("id"), str) or not doc["id"]:
        return None, "no task id"
    if not isinstance(doc.get("state"), str):
        return None, "no task state"
    # The one cast of a stored row: the server wrote it from a TaskDoc. Only id and state
    # are checked here (State.parse reads a string outside StateName as UNKNOWN).
    return cast(TaskDoc, doc), ""


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD = 1 << 20
"""Blocks from this size up get their own mapping, returned to the system when freed."""


def tune_heap() -> None:
    """Make glibc map big blocks (documents of tens of MB) on their own, once per process.

    By default glibc raises its mmap threshold after the first big block is
    freed, and later big blocks come from the heap, where freed memory stays
    in the process: a server that reads and drops 30 MB documents would keep
    growing. A fixed 1 MiB threshold gives such memory back on free. Outside
    glibc this does nothing.
    """
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def trim_heap() -> None:
    """Give freed heap memory back to the system (glibc ``malloc_trim``; elsewhere nothing)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):  # not glibc (musl has neither)
        return None
    return libc
