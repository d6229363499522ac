"""Task records: an in-memory index over SQLite, written with group commit.

The event loop owns the records. A change marks the record dirty; one
flusher coroutine serialises every dirty record (on the loop, so no thread
ever sees a half-updated dict) and writes them in a single transaction in a
worker thread. State changes do not wait: they ride on the next commit.

Creating a task waits for the transaction that holds it, and the index only
ever shows committed tasks: a new record joins the index (and its submission
tag the de-duplication map) when its commit succeeds. A failed commit rolls
back, fails every creation in it with :class:`StoreUnavailable` (the API
answers 503, nothing was created) and puts the changes of existing records
back in the queue for a later try.

Memory: a record whose document is large (input ``content``, executor
stdout/stderr tails, system logs) keeps only its BASIC view in memory once it
is committed and no task run holds it; the FULL document is read back from
SQLite when asked for, through a small cache bounded in bytes.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from ..errors import StoreUnavailable, TaskStoreError
from ..tes.models import SUBMISSION_TAG
from .record import TaskRecord
from .task_doc import TaskDoc
from .taskdb import StoredRow, TaskDb, trim_heap, tune_heap

__all__ = ["TaskRecord", "TaskStore"]

log = logging.getLogger("tesengine.server.store")

LARGE_DOC = 64 * 1024
"""A document bigger than this (as JSON) is kept in memory only while in use."""
CACHE_BYTES = 32 * 1024 * 1024
"""Budget for large documents read back from SQLite and kept for the next read."""
RETRY_WRITE = 1.0
"""Seconds before changes from a failed commit are written again."""


class TaskStore:
    """The server's task records; open with :meth:`open`, close with :meth:`close`.

    ``busy_timeout``: how long a commit waits for another holder of the
    database's write lock before it fails.
    """

    def __init__(self, path: Path, *, busy_timeout: float = 5.0) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._db: TaskDb | None = None
        self._by_id: dict[str, TaskRecord] = {}
        self._by_submission: dict[str, TaskRecord] = {}
        self._ordered: list[TaskRecord] = []
        self._dirty: dict[int, TaskRecord] = {}
        self._new: dict[int, TaskRecord] = {}
        self._new_tags: dict[str, TaskRecord] = {}
        self._inflight: set[int] = set()
        self._cache: OrderedDict[int, tuple[TaskRecord, int]] = OrderedDict()
        self._cached_bytes = 0
        self._wake = asyncio.Event()
        self._commit: asyncio.Future[None] | None = None
        self._writing: asyncio.Future[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._next_seq = 1

    async def open(self) -> list[TaskRecord]:
        """Load every readable stored task (oldest first) and start the flusher."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tune_heap()
        try:
            self._db, records, top = await asyncio.to_thread(self._load)
        except Exception as exc:  # sqlite3.Error, or a file that is not a database
            raise TaskStoreError(f"cannot open the task database {self._path}: {exc}") from exc
        for record in records:
            self._index(record)
        self._next_seq = top + 1
        self._commit = asyncio.get_running_loop().create_future()
        self._flusher = asyncio.create_task(self._flush_forever(), name="tes-store-flusher")
        return list(self._ordered)

    def _load(self) -> tuple[TaskDb, list[TaskRecord], int]:
        db = TaskDb(self._path, self._busy_timeout)
        try:
            return db, db.load(self._record_of), db.max_seq()
        except BaseException:
            db.close()
            raise

    def _record_of(self, row: StoredRow) -> TaskRecord:
        record = TaskRecord(row.seq, row.doc, self._read_back, row.size)
        # Unfinished tasks are changed or run right after start-up: keep them whole.
        if row.size > LARGE_DOC and record.state.is_final:
            record.shrink()
        return record

    def __len__(self) -> int:
        return len(self._ordered)

    def get(self, task_id: str) -> TaskRecord | None:
        """The committed record with ``task_id``, if any."""
        return self._by_id.get(task_id)

    async def add(self, doc: TaskDoc) -> TaskRecord:
        """Store a new task and return once it is committed.

        Raises :class:`StoreUnavailable` when the commit fails; the task is
        then in neither the index nor the database.
        """
        record = TaskRecord(self._next_seq, doc, self._read_back)
        self._next_seq += 1
        commit = self._pending_commit()
        self._new[record.seq] = record
        tag = _tag(doc)
        if tag:
            self._new_tags.setdefault(tag, record)
        self.touch(record)
        await asyncio.shield(commit)
        return record

    def by_submission(self, tag: str) -> TaskRecord | None:
        """The committed task created with ``tesengine-submission: tag``, if any."""
        return self._by_submission.get(tag)

    async def find_submission(self, tag: str) -> TaskRecord | None:
        """Like :meth:`by_submission`, first waiting for a creation with ``tag`` in progress."""
        while (found := self._by_submission.get(tag)) is None and tag in self._new_tags:
            commit = self._commit if self._new_tags[tag].seq in self._dirty else self._writing
            if commit is None:
                break
            await asyncio.gather(asyncio.shield(commit), return_exceptions=True)
        return found

    def touch(self, record: TaskRecord) -> None:
        """Schedule ``record`` for the next commit (write-behind)."""
        record.doc  # noqa: B018 -- a record is written whole: hold the full document
        self._uncache(record)
        self._dirty[record.seq] = record
        self._wake.set()

    def newest_first(self, before_seq: int | None = None) -> Iterator[TaskRecord]:
        """Records from newest to oldest, starting below ``before_seq``."""
        end = len(self._ordered)
        if before_seq is not None:
            end = bisect.bisect_left(self._ordered, before_seq, key=lambda r: r.seq)
        for i in range(end - 1, -1, -1):
            yield self._ordered[i]

    async def load(self, record: TaskRecord) -> TaskDoc:
        """The full document of ``record``, read back in a worker thread if needed."""
        if not record.loaded:
            doc = await asyncio.to_thread(self._read_back, record)
            if not record.loaded:
                record.fill(doc)
                self._cache_put(record)  # may shrink it again: too big to keep
            return doc
        if record.seq in self._cache:
            self._cache.move_to_end(record.seq)
        return record.doc

    async def pin(self, record: TaskRecord) -> None:
        """Hold the full document of ``record`` in memory until :meth:`unpin`."""
        record.pins += 1
        if not record.loaded:
            doc = await asyncio.to_thread(self._read_back, record)
            record.fill(doc)
        self._uncache(record)

    def unpin(self, record: TaskRecord) -> None:
        """Release a :meth:`pin`; the record shrinks once its last change is committed."""
        record.pins = max(0, record.pins - 1)
        self._settle(record)

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
        try:
            await self.flush()
        except StoreUnavailable as exc:
            log.error("%d task changes were not saved: %s", len(self._dirty), exc)
        self._flusher.cancel()
        await asyncio.gather(self._flusher, return_exceptions=True)
        self._flusher = None
        if self._retry is not None:
            self._retry.cancel()
        if self._db is not None:
            await asyncio.to_thread(self._db.close)
            self._db = None

    # -- internals ------------------------------------------------------------

    def _index(self, record: TaskRecord) -> None:
        self._by_id[record.id] = record
        if self._ordered and self._ordered[-1].seq > record.seq:
            bisect.insort(self._ordered, record, key=lambda r: r.seq)
        else:
            self._ordered.append(record)
        tag = _tag(record.summary)
        if tag:
            self._by_submission.setdefault(tag, record)

    def _read_back(self, record: TaskRecord) -> TaskDoc:
        assert self._db is not None, "TaskStore.open() was not called"
        row = self._db.read(record.seq)
        if row is None:
            raise TaskStoreError(f"task {record.id} is missing from the task database")
        record.size = row.size
        return row.doc

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
            batch = dict(self._dirty)
            self._dirty.clear()
            rows = [(r.seq, r.id, json.dumps(r.doc)) for r in batch.values()]
            commit, self._commit = self._pending_commit(), loop.create_future()
            self._writing = commit
            self._inflight = set(batch)
            try:
                await asyncio.to_thread(self._write, rows)
            except Exception as exc:  # sqlite3.Error, a full disk...
                self._failed(batch, commit, exc)
            else:
                self._committed(batch, rows, commit)
            finally:
                self._writing = None
                self._inflight = set()
                # Not kept while waiting for the next change: they hold whole documents.
                del batch, rows

    def _write(self, rows: list[tuple[int, str, str]]) -> None:
        assert self._db is not None
        self._db.write(rows)

    def _committed(
        self,
        batch: dict[int, TaskRecord],
        rows: list[tuple[int, str, str]],
        commit: asyncio.Future[None],
    ) -> None:
        sizes = {seq: len(doc) for seq, _id, doc in rows}
        for seq, record in batch.items():
            record.size = sizes[seq]
            if self._new.pop(seq, None) is not None:
                self._forget_tag(record)
                self._index(record)
        self._inflight = set()
        shrunk = sum(self._settle(record) for record in batch.values())
        if shrunk:
            trim_heap()
        commit.set_result(None)

    def _failed(
        self, batch: dict[int, TaskRecord], commit: asyncio.Future[None], exc: Exception
    ) -> None:
        new = [r for seq, r in batch.items() if self._new.pop(seq, None) is not None]
        for record in new:
            self._forget_tag(record)
        again = {seq: r for seq, r in batch.items() if r.id in self._by_id}
        for seq, record in again.items():
            self._dirty.setdefault(seq, record)
        log.error(
            "writing %d task records to %s failed: %s (%d new tasks refused, %d changes kept "
            "for another try)",
            len(batch),
            self._path,
            exc,
            len(new),
            len(again),
        )
        if again and self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(RETRY_WRITE, self._rewake)
        commit.set_exception(StoreUnavailable(f"the task database is unavailable: {exc}"))
        commit.exception()  # retrieved here: nobody may be waiting on it

    def _rewake(self) -> None:
        self._retry = None
        self._wake.set()

    def _forget_tag(self, record: TaskRecord) -> None:
        tag = _tag(record.summary)
        if tag and self._new_tags.get(tag) is record:
            del self._new_tags[tag]

    def _settle(self, record: TaskRecord) -> bool:
        """Shrink a large record nobody is using and whose last change is on disk."""
        busy = record.pins or record.seq in self._dirty or record.seq in self._inflight
        if not busy and record.loaded and record.size > LARGE_DOC and record.id in self._by_id:
            record.shrink()
            return True
        return False

    def _cache_put(self, record: TaskRecord) -> None:
        if record.size > CACHE_BYTES // 4:
            record.shrink()  # too big to keep: the caller has its copy
            return
        self._cache[record.seq] = (record, record.size)
        self._cached_bytes += record.size
        while self._cached_bytes > CACHE_BYTES and self._cache:
            _seq, (old, size) = self._cache.popitem(last=False)
            self._cached_bytes -= size
            self._settle(old)

    def _uncache(self, record: TaskRecord) -> None:
        if (held := self._cache.pop(record.seq, None)) is not None:
            self._cached_bytes -= held[1]


def _tag(doc: TaskDoc) -> str | None:
    tags = doc.get("tags")
    value = tags.get(SUBMISSION_TAG) if isinstance(tags, dict) else None
    return value if isinstance(value, str) and value else None
