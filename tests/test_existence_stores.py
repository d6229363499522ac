"""Batched existence checks against real stores: listings decide as HEADs would, cheaper.

Each test stages a batch big enough to be listed into a prefix that also
holds unrelated objects (so the listing is sharded and must stop early),
through a counting wrapper, and compares with a stager whose storage
cannot list (it sends one HEAD per input, the reference behaviour).
"""

from __future__ import annotations

import asyncio
import math
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from blake3 import blake3

from tesengine.digest import Digester
from tesengine.errors import ContentMismatch
from tesengine.storage import Stager, join_url
from tesengine.storage.existence import PAGE_HEADS_MAX
from tesengine.storage.ops import ObjectInfo, Page, Storage
from tests.support import await_until
from tests.test_storage_ops import Backend, backend
from tests.test_storage_protocol import CountingStorage

__all__ = ["backend"]

FILES = 300  # above the listing threshold (64)
FILLERS = 2000  # unrelated objects under <inputs>/file/: two pages and more


class ListingCountingStorage(CountingStorage):
    """The counting wrapper, plus the optional ordered listing (it may list)."""

    def lists_in_order(self, prefix_url: str) -> bool:
        return self.inner.lists_in_order(prefix_url)

    async def list_pages(
        self, prefix_url: str, *, start_after: str | None = None
    ) -> AsyncIterator[Page]:
        self.calls["list_pages"] += 1
        async for page in self.inner.list_pages(prefix_url, start_after=start_after):
            self.calls["pages"] += 1
            yield page


@pytest.fixture
async def digester(tmp_path: Path) -> AsyncIterator[Digester]:
    async with Digester(threads=2, cache_dir=tmp_path / "digest-cache") as d:
        yield d


def _files(root: Path, n: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = root / f"f{i:04}"
        path.write_bytes(f"input {i} ".encode() + os.urandom(16))
        paths.append(path)
    return paths


async def _fill(backend: Backend, prefix: str, n: int) -> None:
    limit = asyncio.Semaphore(32)

    async def put(i: int) -> None:
        async with limit:
            await backend.storage.put_bytes(join_url(prefix, os.urandom(32).hex()), b"filler")

    await asyncio.gather(*(put(i) for i in range(n)))


async def test_listing_decides_like_heads_with_far_fewer_requests(
    backend: Backend, digester: Digester, tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    paths = _files(tmp_path / "in", FILES)
    await _fill(backend, join_url(backend.base, "file"), FILLERS)
    present = paths[::2]
    await Stager(CountingStorage(backend.storage), digester, backend.base).stage_many(present)

    counting = ListingCountingStorage(backend.storage)
    stager = Stager(counting, digester, backend.base, list_margin=math.inf)
    results = await stager.stage_many(paths)
    expected = [join_url(backend.base, "file", blake3(p.read_bytes()).hexdigest()) for p in paths]
    assert [r.url for r in results] == expected
    assert [r.uploaded for r in results] == [i % 2 == 1 for i in range(FILES)]
    assert stager.stats.files_skipped == len(present)
    if backend.name == "file":  # a folder lists in no order: HEADs, as before
        assert (counting.calls["head"], counting.calls["list_pages"]) == (FILES, 0)
        return
    assert counting.calls["head"] == 0, counting.calls  # every name was decided by listing
    assert counting.calls["pages"] <= FILES // 10, counting.calls
    assert stager.stats.list_plans == 1 and stager.stats.lists >= counting.calls["pages"]
    plans = [r.getMessage() for r in debug_logs.records if "existence of" in r.getMessage()]
    assert plans and stager.stats.last_plan in plans[0]

    # The HEAD path (a storage that cannot list) now finds everything, at the same URLs.
    heads = CountingStorage(backend.storage)
    again = await Stager(heads, digester, backend.base).stage_many(paths)
    assert [(r.url, r.uploaded) for r in again] == [(u, False) for u in expected]
    assert heads.calls["head"] == FILES
    relisted = ListingCountingStorage(backend.storage)
    third = await Stager(relisted, digester, backend.base, list_margin=math.inf).stage_many(paths)
    assert third == again and relisted.calls["head"] == 0


async def test_wrong_size_object_seen_in_a_listing_is_content_mismatch(
    backend: Backend, digester: Digester, tmp_path: Path
) -> None:
    paths = _files(tmp_path / "in", 100)
    await _fill(backend, join_url(backend.base, "file"), 1200)
    victim = paths[37]
    planted = join_url(backend.base, "file", blake3(victim.read_bytes()).hexdigest())
    await backend.storage.put_bytes(planted, b"not the file")
    counting = ListingCountingStorage(backend.storage)
    with pytest.raises(ContentMismatch, match="12 bytes") as listed:
        await Stager(counting, digester, backend.base, list_margin=math.inf).stage_many(paths)
    if backend.name != "file":
        assert counting.calls["pages"] >= 1 and counting.calls["head"] == 0, counting.calls
    with pytest.raises(ContentMismatch) as headed:
        await Stager(CountingStorage(backend.storage), digester, backend.base).stage_many(paths)
    assert str(listed.value) == str(headed.value)  # the same refusal either way
    assert await backend.storage.read_bytes(planted) == b"not the file"


async def test_directory_markers_of_a_large_batch_are_listed(
    backend: Backend, digester: Digester, tmp_path: Path
) -> None:
    dirs = []
    for i in range(70):
        d = tmp_path / "dirs" / f"d{i:02}"
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "x.txt").write_text(f"directory {i}")
        dirs.append(d)
    await Stager(CountingStorage(backend.storage), digester, backend.base).stage_many(dirs[:35])
    counting = ListingCountingStorage(backend.storage)
    stager = Stager(counting, digester, backend.base, list_margin=math.inf)
    results = await stager.stage_many(dirs)
    assert [r.uploaded for r in results] == [False] * 35 + [True] * 35
    heads = CountingStorage(backend.storage)
    again = await Stager(heads, digester, backend.base).stage_many(dirs)
    assert [r.url for r in again] == [r.url for r in results]
    assert [r.uploaded for r in again] == [False] * 70
    if backend.name == "file":
        assert counting.calls["exists"] == 70
        return
    assert counting.calls["exists"] == 0, counting.calls  # no marker was HEADed
    assert heads.calls["exists"] == 70


class SlowListing(ListingCountingStorage):
    """A store whose listing page comes only after ``heads_first`` HEADs were sent.

    Like ``rclone serve s3``, which reads the whole namespace for every
    listing request: a page takes many HEADs' time. HEADs past the first
    ``heads_first`` wait for the page, so the count at the probe is exact.
    """

    def __init__(self, inner: Storage, heads_first: int) -> None:
        super().__init__(inner)
        self.heads_first = heads_first
        self.listed = asyncio.Event()

    async def head(self, url: str) -> ObjectInfo:
        if self.calls["head"] >= self.heads_first:
            await self.listed.wait()
        return await super().head(url)

    async def list_pages(
        self, prefix_url: str, *, start_after: str | None = None
    ) -> AsyncIterator[Page]:
        await await_until(lambda: self.calls["head"] >= self.heads_first, what="HEADs first")
        async for page in super().list_pages(prefix_url, start_after=start_after):
            self.listed.set()
            yield page


@pytest.mark.parametrize("backend", ["memory"], indirect=True)
async def test_listing_far_slower_than_heads_is_headed_instead(
    backend: Backend, digester: Digester, tmp_path: Path
) -> None:
    paths = _files(tmp_path / "in", FILES)
    await _fill(backend, join_url(backend.base, "file"), FILLERS)
    await Stager(CountingStorage(backend.storage), digester, backend.base).stage_many(paths[::2])
    slow = SlowListing(backend.storage, heads_first=150)  # 7 slots, ~21 each: not too dear
    stager = Stager(slow, digester, backend.base, concurrency=8)
    results = await stager.stage_many(paths)
    assert [r.uploaded for r in results] == [i % 2 == 1 for i in range(FILES)]
    # HEADs went out while the probe page was awaited, then for the rest the probe
    # page did not cover (too few to list, or listing judged slower): no shard listed
    reason = stager.stats.last_plan
    assert stager.stats.list_plans == 0 and ("HEADs done while" in reason or "small" in reason)
    assert (slow.calls["list_pages"], slow.calls["pages"]) == (1, 1), slow.calls
    assert 150 < slow.calls["head"] < FILES and stager.stats.heads == slow.calls["head"]


@pytest.mark.parametrize("backend", ["memory"], indirect=True)
async def test_a_probe_page_dearer_than_many_heads_stops_listing_for_good(
    backend: Backend, digester: Digester, tmp_path: Path
) -> None:
    """Like ``rclone serve s3`` at 100,000 keys: no shard is sent, now or later."""
    paths = _files(tmp_path / "in", FILES)
    await _fill(backend, join_url(backend.base, "file"), FILLERS)
    slow = SlowListing(backend.storage, heads_first=3 * PAGE_HEADS_MAX + 3)
    stager = Stager(slow, digester, backend.base, concurrency=4)
    results = await stager.stage_many(paths)
    assert all(r.uploaded for r in results)
    assert re.search(r"took the time of (99|1\d\d) HEADs", stager.stats.last_plan)
    assert "listing stopped" in stager.stats.last_plan and stager.stats.list_plans == 0
    assert slow.calls["list_pages"] == 1  # the probe alone
    heads = slow.calls["head"]
    more = await stager.stage_many(_files(tmp_path / "more", FILES))
    assert all(r.uploaded for r in more)
    assert slow.calls["list_pages"] == 1  # that stager lists no more
    assert stager.stats.heads == slow.calls["head"] == heads + FILES


@pytest.mark.parametrize("backend", ["memory"], indirect=True)
async def test_names_all_headed_during_the_probe_need_no_plan(
    backend: Backend, digester: Digester, tmp_path: Path
) -> None:
    paths = _files(tmp_path / "in", 100)
    slow = SlowListing(backend.storage, heads_first=100)
    slow.listed.set()  # HEADs never wait: all 100 go out before the probe page
    stager = Stager(slow, digester, backend.base)
    results = await stager.stage_many(paths)
    assert all(r.uploaded for r in results)
    assert (slow.calls["head"], slow.calls["list_pages"]) == (100, 1), slow.calls
    assert stager.stats.list_plans == 0


async def test_small_batch_sends_heads_and_no_listing(
    backend: Backend, digester: Digester, tmp_path: Path
) -> None:
    paths = _files(tmp_path / "in", 10)
    counting = ListingCountingStorage(backend.storage)
    stager = Stager(counting, digester, backend.base)
    results = await stager.stage_many(paths)
    assert all(r.uploaded for r in results)
    assert (counting.calls["head"], counting.calls["list_pages"]) == (10, 0)
    assert stager.stats.list_plans == 0
