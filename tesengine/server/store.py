"""Task records: in memory for speed, persisted to SQLite with group commit.

The event loop owns the records. A change marks the record dirty; one
flusher coroutine serialises every dirty record (on the loop, so no thread
ever sees a half-updated dict) and writes them in a single transaction in a
worker thread. Creating a task waits for the transaction that holds it
(so an acknowledged task survives a crash), while many concurrent creations
share one commit. State changes do not wait: they ride on the next commit.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TesEngineError
from ..tes.models import SUBMISSION_TAG

__all__ = ["TaskRecord", "TaskStore"]

log = logging.getLogger("tesengine.server.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL
)
"""


@dataclass(slots=True, eq=False)
class TaskRecord:
    """One task: its creation sequence number and its FULL-view document."""

    seq: int
    doc: dict[str, Any]

    @property
    def id(self) -> str:
        """The task id."""
        return str(self.doc["id"])

    @property
    def state(self) -> str:
        """The task state."""
        return str(self.doc["state"])


class TaskStore:
    """The server's task records; open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: sqlite3.Connection | None = None
        self._by_id: dict[str, TaskRecord] = {}
        self._by_submission: dict[str, TaskRecord] = {}
        self._ordered: list[TaskRecord] = []
        self._dirty: dict[int, TaskRecord] = {}
        self._wake = asyncio.Event()
        self._commit: asyncio.Future[None] | None = None
        self._writing: asyncio.Future[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._next_seq = 1

    async def open(self) -> list[TaskRecord]:
        """Load every stored task (oldest first) and start the flusher."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db, rows = await asyncio.to_thread(_connect, self._path)
        except sqlite3.Error as exc:
            raise TesEngineError(f"cannot open the task database {self._path}: {exc}") from exc
        for seq, doc in rows:
            self._index(TaskRecord(seq, json.loads(doc)))
        if self._ordered:
            self._next_seq = self._ordered[-1].seq + 1
        self._commit = asyncio.get_running_loop().create_future()
        self._flusher = asyncio.create_task(self._flush_forever(), name="tes-store-flusher")
        return list(self._ordered)

    def __len__(self) -> int:
        return len(self._ordered)

    def get(self, task_id: str) -> TaskRecord | None:
        """The record with ``task_id``, if any."""
        return self._by_id.get(task_id)

    async def add(self, doc: dict[str, Any]) -> TaskRecord:
        """Store a new task and return once it is committed to disk."""
        record = TaskRecord(self._next_seq, doc)
        self._next_seq += 1
        self._index(record)
        commit = self._pending_commit()
        self.touch(record)
        await asyncio.shield(commit)
        return record

    def by_submission(self, tag: str) -> TaskRecord | None:
        """The task created with ``tesengine-submission: tag``, if any."""
        return self._by_submission.get(tag)

    def _index(self, record: TaskRecord) -> None:
        self._by_id[record.id] = record
        self._ordered.append(record)
        tag = (record.doc.get("tags") or {}).get(SUBMISSION_TAG)
        if tag:
            self._by_submission[tag] = record

    def touch(self, record: TaskRecord) -> None:
        """Schedule ``record`` for the next commit (write-behind)."""
        self._dirty[record.seq] = record
        self._wake.set()

    def newest_first(self, before_seq: int | None = None) -> Iterator[TaskRecord]:
        """Records from newest to oldest, starting below ``before_seq``."""
        end = len(self._ordered)
        if before_seq is not None:
            end = bisect.bisect_left(self._ordered, before_seq, key=lambda r: r.seq)
        for i in range(end - 1, -1, -1):
            yield self._ordered[i]

    async def flush(self) -> None:
        """Wait until every change made so far is committed."""
        if self._dirty:
            commit = self._pending_commit()
            self._wake.set()
            await asyncio.shield(commit)
        elif self._writing is not None:
            await asyncio.shield(self._writing)

    async def close(self) -> None:
        """Commit what is pending, stop the flusher and close the database."""
        if self._flusher is None:
            return
        await self.flush()
        self._flusher.cancel()
        await asyncio.gather(self._flusher, return_exceptions=True)
        self._flusher = None
        if self._db is not None:
            await asyncio.to_thread(self._db.close)
            self._db = None

    def _pending_commit(self) -> asyncio.Future[None]:
        assert self._commit is not None, "TaskStore.open() was not called"
        return self._commit

    async def _flush_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._dirty:
                continue
            rows = [(r.seq, r.id, json.dumps(r.doc)) for r in self._dirty.values()]
            self._dirty.clear()
            commit, self._commit = self._pending_commit(), loop.create_future()
            self._writing = commit
            try:
                await asyncio.to_thread(self._write, rows)
            except sqlite3.Error as exc:
                # Keep serving from memory; creations waiting on this commit fail.
                log.error("writing %d task records to %s failed: %s", len(rows), self._path, exc)
                commit.set_exception(
                    TesEngineError(f"cannot write the task database {self._path}: {exc}")
                )
                commit.exception()  # retrieved here: nobody may be waiting on it
            else:
                commit.set_result(None)
            finally:
                self._writing = None

    def _write(self, rows: list[tuple[int, str, str]]) -> None:
        assert self._db is not None
        with self._db:
            self._db.executemany(
                "INSERT INTO tasks (seq, id, doc) VALUES (?, ?, ?) "
                "ON CONFLICT(seq) DO UPDATE SET doc = excluded.doc",
                rows,
            )


def _connect(path: Path) -> tuple[sqlite3.Connection, list[tuple[int, str]]]:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL: a commit survives a process crash; only a power cut may lose
    # the last few, and the fsync per commit would cap throughput.
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(_SCHEMA)
    rows = db.execute("SELECT seq, doc FROM tasks ORDER BY seq").fetchall()
    # sqlite3 with isolation_level=None is in autocommit; `with db` needs BEGIN.
    db.isolation_level = "DEFERRED"
    return db, rows
