"""The staging pipeline against real stores: addresses, dedup, atomicity, verification."""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
from blake3 import blake3

from tesengine.digest import Digest, Digester, NullProgress
from tesengine.digest.engine import StrPath
from tesengine.errors import ContentMismatch, InputChanged
from tesengine.storage import NullStagingProgress, Stager, Storage, join_url
from tesengine.storage.ops import MULTIPART_THRESHOLD, ObjectInfo
from tests.test_storage_ops import Backend, backend

__all__ = ["backend"]  # the parametrised fixture, shared with test_storage_ops


@pytest.fixture
async def digester(tmp_path: Path) -> AsyncIterator[Digester]:
    async with Digester(threads=2, cache_dir=tmp_path / "digest-cache") as d:
        yield d


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "a.txt": b"alpha\n",
        "sub/b.bin": os.urandom(3000),
        "sub/deeper/c": b"",
        "space name.txt": b"spaces too",
    }
    for rel, data in files.items():
        write(root / rel, data)
    return files


async def test_file_goes_to_its_content_address_once(
    backend: Backend, digester: Digester, tmp_path: Path
) -> None:
    data = os.urandom(1000)
    src = write(tmp_path / "in.bin", data)
    stager = Stager(backend.storage, digester, backend.base)
    result = await stager.stage(src)
    assert result.url == join_url(backend.base, "file", blake3(data).hexdigest())
    assert (result.kind, result.uploaded) == ("file", True)
    assert await backend.storage.read_bytes(result.url) == data
    again = await Stager(backend.storage, digester, backend.base).stage(str(src))
    assert (again.url, again.uploaded) == (result.url, False)


async def test_large_file_streams_and_round_trips(
    backend: Backend, digester: Digester, tmp_path: Path
) -> None:
    data = os.urandom(MULTIPART_THRESHOLD + 1024 * 1024 + 7)
    src = write(tmp_path / "big.bin", data)
    result = await Stager(backend.storage, digester, backend.base).stage(src)
    assert result.uploaded
    assert result.url.endswith(blake3(data).hexdigest())
    assert await backend.storage.read_bytes(result.url) == data


async def test_directory_files_then_marker_and_restage_is_one_request(
    backend: Backend, digester: Digester, tmp_path: Path
) -> None:
    files = make_tree(tmp_path / "tree")
    stager = Stager(backend.storage, digester, backend.base)
    result = await stager.stage(tmp_path / "tree")
    assert (result.kind, result.uploaded) == ("directory", True)
    listed = {i.url: i.size async for i in backend.storage.list(result.url)}
    assert listed == {join_url(result.url, rel): len(data) for rel, data in files.items()}
    hex_ = result.url.rsplit("/", 1)[1].partition("?")[0]
    assert await backend.storage.exists(join_url(backend.base, "complete", "directory", hex_))
    fresh = Stager(backend.storage, digester, backend.base)
    again = await fresh.stage(tmp_path / "tree")
    assert (again.url, again.uploaded) == (result.url, False)
    assert fresh.stats.requests == 1  # one HEAD of the marker


async def test_url_inputs_pass_through_without_any_request(
    digester: Digester, tmp_path: Path
) -> None:
    storage = Storage()
    stager = Stager(storage, digester, "memory://unused/in")
    urls = ["s3://b/k", "gs://b/k", "az://c/k", "https://h/x?sig=1", "http://h/y", "file:///etc/x"]
    results = await stager.stage_many(urls)
    assert [(r.url, r.kind, r.uploaded) for r in results] == [(u, "url", False) for u in urls]
    assert (stager.stats.requests, storage.requests) == (0, 0)


class _ChangeAfterHash(NullProgress):
    """Rewrites a file right after the digester hashed it (same size, new bytes)."""

    def __init__(self, victim: Path) -> None:
        self.victim = victim
        self.done = False

    def file_done(self, path: Path, cached: bool) -> None:
        if not self.done and path == self.victim:
            self.done = True
            size = self.victim.stat().st_size
            self.victim.write_bytes(b"X" * size)


@pytest.mark.parametrize("size", [100, MULTIPART_THRESHOLD + 5])
async def test_file_changed_after_hashing_is_never_published(
    backend: Backend, tmp_path: Path, size: int
) -> None:
    original = os.urandom(size)
    src = write(tmp_path / "victim.bin", original)
    hook = _ChangeAfterHash(src)
    async with Digester(threads=1, cache=False, progress=hook) as digester:
        stager = Stager(backend.storage, digester, backend.base)
        with pytest.raises(InputChanged, match=r"victim\.bin"):
            await stager.stage(src)
    assert hook.done
    old_url = join_url(backend.base, "file", blake3(original).hexdigest())
    assert not await backend.storage.exists(old_url)
    assert [i async for i in backend.storage.list(join_url(backend.base, "file"))] == []


async def test_directory_with_a_file_changed_after_hashing_gets_no_marker(
    backend: Backend, tmp_path: Path
) -> None:
    make_tree(tmp_path / "tree")
    hook = _ChangeAfterHash(tmp_path / "tree" / "sub" / "b.bin")
    async with Digester(threads=1, cache=False, progress=hook) as digester:
        stager = Stager(backend.storage, digester, backend.base)
        with pytest.raises(InputChanged):
            await stager.stage(tmp_path / "tree")
    markers = [i async for i in backend.storage.list(join_url(backend.base, "complete"))]
    assert markers == []


async def test_interrupted_directory_upload_is_completed_next_time(
    backend: Backend, digester: Digester, tmp_path: Path
) -> None:
    files = make_tree(tmp_path / "tree")
    first = await Stager(backend.storage, digester, backend.base).stage(tmp_path / "tree")
    hex_ = first.url.rsplit("/", 1)[1].partition("?")[0]
    # What an interruption leaves behind: some files, no marker.
    await backend.storage.delete(join_url(backend.base, "complete", "directory", hex_))
    await backend.storage.delete(join_url(first.url, "sub/b.bin"))
    stager = Stager(backend.storage, digester, backend.base)
    again = await stager.stage(tmp_path / "tree")
    assert again.uploaded
    assert await backend.storage.read_bytes(join_url(first.url, "sub/b.bin")) == files["sub/b.bin"]
    assert (stager.stats.files_uploaded, stager.stats.files_skipped) == (1, len(files) - 1)
    assert stager.stats.puts == 2  # the missing file, then the marker


async def test_sprocket_style_directory_without_marker_gets_one(
    backend: Backend, digester: Digester, tmp_path: Path
) -> None:
    """Sprocket uploads the files only; tesengine checks them by listing and adds the marker."""
    files = make_tree(tmp_path / "tree")
    digest, _ = await digester.digest_tree(tmp_path / "tree")
    base = join_url(backend.base, digest.key)
    for rel, data in files.items():
        await backend.storage.put_bytes(join_url(base, rel), data)
    stager = Stager(backend.storage, digester, backend.base)
    result = await stager.stage(tmp_path / "tree")
    assert result.url == base
    assert not result.uploaded  # only the marker went up: the directory was present
    assert (stager.stats.heads, stager.stats.lists, stager.stats.puts) == (1, 1, 1)
    # Nothing of the directory was sent (only the marker): not "uploaded" by this call.
    assert (result.uploaded, stager.stats.files_uploaded) == (False, 0)
    assert await backend.storage.exists(stager.marker_url(digest))


async def test_identical_content_in_flight_is_uploaded_once(
    backend: Backend, digester: Digester, tmp_path: Path
) -> None:
    data = os.urandom(5000)
    paths = [write(tmp_path / f"copy{i}.bin", data) for i in range(20)]
    stager = Stager(backend.storage, digester, backend.base)
    before = backend.storage.requests
    results = await asyncio.gather(*(stager.stage(p) for p in paths))
    assert len({r.url for r in results}) == 1
    assert sum(r.uploaded for r in results) == 1
    assert (stager.stats.heads, stager.stats.puts) == (1, 1)
    assert backend.storage.requests - before == 2  # what the store saw: one HEAD, one PUT
    await stager.stage(paths[0])  # known present: no request at all
    assert backend.storage.requests - before == 2


class _Counting(Storage):
    """A real Storage that records how many calls are in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        self.peak = 0

    async def head(self, url: str) -> ObjectInfo:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(0)  # let every waiting caller try to get in
            return await super().head(url)
        finally:
            self.now -= 1


async def test_requests_are_bounded_by_concurrency(digester: Digester, tmp_path: Path) -> None:
    paths = [write(tmp_path / f"f{i}", str(i).encode()) for i in range(40)]
    storage = _Counting()
    stager = Stager(storage, digester, "memory://bounded/in", concurrency=3)
    results = await stager.stage_many(paths)
    assert all(r.uploaded for r in results)
    assert 1 <= storage.peak <= 3


class _Recorder(NullStagingProgress):
    def __init__(self) -> None:
        self.uploaded_bytes = 0
        self.uploaded: list[int] = []
        self.skipped = 0

    def bytes_uploaded(self, n: int) -> None:
        self.uploaded_bytes += n

    def file_uploaded(self, url: str, size: int) -> None:
        self.uploaded.append(size)

    def file_skipped(self, url: str, size: int) -> None:
        self.skipped += 1


async def test_progress_reports_bytes_uploaded_and_files_skipped(
    digester: Digester, tmp_path: Path
) -> None:
    small = write(tmp_path / "small", b"s" * 10)
    big = write(tmp_path / "big", os.urandom(MULTIPART_THRESHOLD + 100))
    progress = _Recorder()
    stager = Stager(Storage(), digester, "memory://progress/in", progress=progress)
    await stager.stage_many([small, big])
    assert sorted(progress.uploaded) == [10, MULTIPART_THRESHOLD + 100]
    assert progress.uploaded_bytes == 10 + MULTIPART_THRESHOLD + 100
    fresh = Stager(Storage(), digester, "memory://progress/in", progress=progress)
    await fresh.stage_many([small, big])
    assert progress.skipped == 2


async def test_cancelled_upload_leaves_the_address_absent(
    backend: Backend, digester: Digester, tmp_path: Path
) -> None:
    data = os.urandom(MULTIPART_THRESHOLD * 2)
    src = write(tmp_path / "big.bin", data)
    started = asyncio.Event()

    class _Signal(NullStagingProgress):
        def bytes_uploaded(self, n: int) -> None:
            started.set()

    stager = Stager(backend.storage, digester, backend.base, progress=_Signal())
    task = asyncio.create_task(stager.stage(src))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    url = join_url(backend.base, "file", blake3(data).hexdigest())
    assert not await backend.storage.exists(url)
    result = await stager.stage(src)  # the next attempt does it
    assert (result.url, result.uploaded) == (url, True)
    assert await backend.storage.read_bytes(url) == data


async def test_stage_many_sends_one_request_per_distinct_content(
    backend: Backend, digester: Digester, tmp_path: Path
) -> None:
    data = os.urandom(3000)
    copies = [write(tmp_path / f"copy{i}.bin", data) for i in range(5)]
    other = write(tmp_path / "other.bin", b"other")
    asked = [copies[0], other, *copies, str(copies[2])]
    stager = Stager(backend.storage, digester, backend.base, concurrency=4)
    before = backend.storage.requests
    results = await stager.stage_many(asked)
    assert [r.source for r in results] == [str(p) for p in asked]
    assert [r.url for r in results] == [
        join_url(backend.base, "file", blake3(b"other" if p == other else data).hexdigest())
        for p in asked
    ]
    assert [r.uploaded for r in results] == [True, True] + [False] * 6
    assert (stager.stats.heads, stager.stats.puts) == (2, 2)
    assert backend.storage.requests - before == 4
    assert digester.stats.files_hashed == 2 + 4  # every distinct path once


async def test_staging_a_directory_walks_it_once(
    backend: Backend, digester: Digester, tmp_path: Path
) -> None:
    files = make_tree(tmp_path / "tree")
    stager = Stager(backend.storage, digester, backend.base)
    result = await stager.stage(tmp_path / "tree")
    assert result.uploaded
    # one pass over the tree: each file hashed once, none looked up a second time
    assert (digester.stats.files_hashed, digester.stats.files_cached) == (len(files), 0)


async def test_stage_many_across_digest_chunks_keeps_order_and_dedups(
    digester: Digester, tmp_path: Path
) -> None:
    # 600 files digest in two chunks; contents repeat across the chunk boundary
    paths = [write(tmp_path / f"f{i:03}", f"content {i % 400}".encode()) for i in range(600)]
    stager = Stager(Storage(), digester, "memory://chunks/in", concurrency=8, list_margin=math.inf)
    results = await stager.stage_many(paths)
    assert [r.source for r in results] == [str(p) for p in paths]
    assert [r.url.rsplit("/", 1)[1] for r in results] == [
        blake3(f"content {i % 400}".encode()).hexdigest() for i in range(600)
    ]
    assert [r.uploaded for r in results] == [True] * 400 + [False] * 200
    # 400 names are a batch to list (always: no HEADs alongside the probe page): the
    # probe page and one listing of the empty prefix
    assert (stager.stats.heads, stager.stats.lists, stager.stats.puts) == (0, 2, 400)


class EditsFirst(Digester):
    """Rewrites a file (to a different size) just before digesting it."""

    def __init__(self, edit: Path, data: bytes, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.edit, self.data = edit, data

    async def digest_files(self, paths: Iterable[StrPath]) -> list[Digest]:
        self.edit.write_bytes(self.data)
        return await super().digest_files(paths)


@pytest.mark.parametrize("backend", ["memory"], indirect=True)
async def test_a_file_resized_before_its_digest_is_judged_by_its_new_size(
    backend: Backend, tmp_path: Path
) -> None:
    """Staging sizes files before digesting them; a size that changed since is not a mismatch."""
    new = b"the longer content it has by the time it is digested\n"
    src = write(tmp_path / "in.txt", b"short\n")
    present = await backend.storage.put_bytes(
        join_url(backend.base, "file", blake3(new).hexdigest()), new
    )
    assert present
    async with EditsFirst(src, new, cache_dir=tmp_path / "cache") as digester:
        result = await Stager(backend.storage, digester, backend.base).stage(src)
    assert result.url.endswith(blake3(new).hexdigest()) and not result.uploaded
    edited = write(tmp_path / "other.txt", b"x" * 10)
    await backend.storage.put_bytes(
        join_url(backend.base, "file", blake3(b"y" * 11).hexdigest()), b"z" * 12
    )
    async with EditsFirst(edited, b"y" * 11, cache_dir=tmp_path / "cache2") as digester:
        with pytest.raises(ContentMismatch, match="12 bytes"):  # a planted object still is
            await Stager(backend.storage, digester, backend.base).stage(edited)
