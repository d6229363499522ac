"""Batched existence checks never cost a staging: a listing that fails or overruns is HEADed.

A store may refuse listings (a bucket policy without list permission) or
list far slower than it answers HEADs; staging must still finish with the
answers a HEAD per file gives, and stop listing for that stager.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tesengine.digest import Digester
from tesengine.errors import StorageError
from tesengine.storage import Stager, join_url
from tesengine.storage.existence import PAGE
from tesengine.storage.existence_io import PAGES_PER_RANGE_MAX
from tesengine.storage.ops import Page
from tests.test_existence_stores import (
    FILES,
    FILLERS,
    ListingCountingStorage,
    SlowListing,
    _files,
    _fill,
    digester,
)
from tests.test_storage_ops import Backend, backend
from tests.test_storage_protocol import CountingStorage

__all__ = ["backend", "digester"]

_PROBE = "8"  # where the probe page starts (the middle of the key space)


class BrokenShards(SlowListing):
    """The probe page comes (after some HEADs); every shard listing then ``fails`` or hangs."""

    def __init__(self, inner: object, *, hang: bool) -> None:
        super().__init__(inner, heads_first=10)  # type: ignore[arg-type]
        self.hang = hang

    async def list_pages(
        self, prefix_url: str, *, start_after: str | None = None
    ) -> AsyncIterator[Page]:
        if start_after != _PROBE:
            self.calls["list_pages"] += 1
            if self.hang:
                await asyncio.Event().wait()  # a listing that never answers
            raise StorageError(f"LIST {prefix_url} failed: AccessDenied")
        async for page in super().list_pages(prefix_url, start_after=start_after):
            yield page


class NoListing(CountingStorage):
    """Says it lists in order, then refuses every listing (no list permission)."""

    def lists_in_order(self, prefix_url: str) -> bool:
        return True

    async def list_pages(
        self, prefix_url: str, *, start_after: str | None = None
    ) -> AsyncIterator[Page]:
        self.calls["list_pages"] += 1
        raise StorageError(f"LIST {prefix_url} failed: AccessDenied")
        yield []  # type: ignore[unreachable]  # an async generator, as a real listing is


async def _stage_half_present(
    backend: Backend, digester: Digester, tmp_path: Path, storage: CountingStorage
) -> Stager:
    paths = _files(tmp_path / "in", FILES)
    await _fill(backend, join_url(backend.base, "file"), FILLERS)
    await Stager(CountingStorage(backend.storage), digester, backend.base).stage_many(paths[::2])
    stager = Stager(storage, digester, backend.base, concurrency=4)
    results = await stager.stage_many(paths)
    assert [r.uploaded for r in results] == [i % 2 == 1 for i in range(FILES)]
    for path, result in zip(paths, results, strict=True):  # every input is there, whole
        assert (await backend.storage.head(result.url)).size == path.stat().st_size
    return stager


@pytest.mark.parametrize("hang", [False, True], ids=["shards-fail", "shards-hang"])
@pytest.mark.parametrize("backend", ["memory"], indirect=True)
async def test_a_failing_or_hanging_shard_listing_is_headed(
    backend: Backend, digester: Digester, tmp_path: Path, hang: bool
) -> None:
    broken = BrokenShards(backend.storage, hang=hang)
    async with asyncio.timeout(60):  # a hanging listing must not hang the staging
        stager = await _stage_half_present(backend, digester, tmp_path, broken)
    assert stager.stats.list_plans == 1 and broken.calls["list_pages"] >= 1
    assert "listing stopped" in stager.stats.last_plan
    assert ("took over" in stager.stats.last_plan) is hang
    # Every input not decided by the probe page or the hedges got its own HEAD.
    assert stager.stats.heads == broken.calls["head"] > 10


@pytest.mark.parametrize("backend", ["memory"], indirect=True)
async def test_a_store_refusing_listings_is_headed_and_not_listed_again(
    backend: Backend, digester: Digester, tmp_path: Path
) -> None:
    refusing = NoListing(backend.storage)
    stager = await _stage_half_present(backend, digester, tmp_path, refusing)
    assert "probe listing failed" in stager.stats.last_plan
    assert stager.stats.heads == refusing.calls["head"] == FILES
    listed = refusing.calls["list_pages"]
    more = _files(tmp_path / "more", FILES)
    await stager.stage_many(more)
    assert refusing.calls["list_pages"] == listed  # that stager lists no more


class EndlessRanges(ListingCountingStorage):
    """The probe page is real; every range listing then sends full pages forever.

    Their names climb from the range's start but never reach a wanted
    name, as a hostile or broken store's might (a continuation that never
    ends). ``pages`` counts what each listing yielded.
    """

    async def list_pages(
        self, prefix_url: str, *, start_after: str | None = None
    ) -> AsyncIterator[Page]:
        if start_after == _PROBE:
            async for page in super().list_pages(prefix_url, start_after=start_after):
                yield page
            return
        self.calls["list_pages"] += 1
        base = (start_after or "").ljust(8, "0")
        for first in itertools.count(1, PAGE):
            await asyncio.sleep(0)  # a page is I/O: the loop (and its timeouts) runs between
            self.calls["pages"] += 1
            yield [(f"{base}{i:056x}", 6) for i in range(first, first + PAGE)]


@pytest.mark.parametrize("backend", ["memory"], indirect=True)
async def test_a_listing_that_never_ends_is_cut_off_and_headed(
    backend: Backend, digester: Digester, tmp_path: Path
) -> None:
    # One request slot: no HEAD is sent alongside the probe, so the listing
    # has no HEAD rate to be timed against; its page cap must end it.
    endless = EndlessRanges(backend.storage)
    paths = _files(tmp_path / "in", FILES)
    await _fill(backend, join_url(backend.base, "file"), FILLERS)
    await Stager(CountingStorage(backend.storage), digester, backend.base).stage_many(paths[::2])
    stager = Stager(endless, digester, backend.base, concurrency=1)
    async with asyncio.timeout(60):
        results = await stager.stage_many(paths)
    assert [r.uploaded for r in results] == [i % 2 == 1 for i in range(FILES)]
    ranges = endless.calls["list_pages"]
    assert stager.stats.list_plans == 1 and ranges >= 1
    assert endless.calls["pages"] <= 1 + ranges * PAGES_PER_RANGE_MAX
    assert "listing stopped" not in stager.stats.last_plan  # cut by its page cap, not a timeout
    # what the endless pages covered holds no wanted name: all of those were HEADed
    assert stager.stats.heads == endless.calls["head"] > 0
