"""Storage operations against real servers: moto, rclone, Azurite, a folder, memory."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tesengine.errors import ObjectNotFound, StorageError
from tesengine.storage import Storage, join_url
from tesengine.storage.ops import MULTIPART_THRESHOLD

# rclone serve s3 ignores If-None-Match; staging checks existence first anyway.
ENFORCES_CREATE = frozenset({"moto", "azurite", "file", "memory"})


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    storage: Storage
    base: str  # a unique prefix for this test


@pytest.fixture(params=["moto", "rclone", "azurite", "file", "memory"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A Storage and a fresh prefix on each kind of store."""
    unique = uuid.uuid4().hex[:12]
    name = request.param
    if name in ("moto", "rclone"):
        server = request.getfixturevalue(f"{name}_s3")
        storage, base = Storage(server.storage_config()), server.url(unique)
    elif name == "azurite":
        azurite = request.getfixturevalue("azurite")
        storage, base = Storage(azurite.storage_config()), azurite.url(unique)
    elif name == "file":
        storage, base = Storage(), f"file://{tmp_path}/store"
    else:
        storage, base = Storage(), f"memory://{unique}/in"
    yield Backend(name, storage, base)
    await storage.aclose()


async def test_put_head_read_list_and_create_only(backend: Backend) -> None:
    storage, url = backend.storage, join_url(backend.base, "dir", "a b.txt")
    assert not await storage.exists(url)
    assert await storage.put_bytes(url, b"first", create_only=True) is True
    if backend.name in ENFORCES_CREATE:
        assert await storage.put_bytes(url, b"second", create_only=True) is False
        assert await storage.read_bytes(url) == b"first"  # create-only never overwrote
    info = await storage.head(url)
    assert (info.url, info.size) == (url, 5)
    await storage.put_bytes(join_url(backend.base, "dir", "sub", "c"), b"xyz")
    await storage.put_bytes(join_url(backend.base, "dirx", "d"), b"no")
    listed = sorted([(i.url, i.size) async for i in storage.list(join_url(backend.base, "dir"))])
    assert listed == [(url, 5), (join_url(backend.base, "dir", "sub", "c"), 3)]


async def test_absent_object_is_object_not_found_naming_the_url(
    backend: Backend, tmp_path: Path
) -> None:
    url = join_url(backend.base, "missing")
    with pytest.raises(ObjectNotFound) as info:
        await backend.storage.head(url)
    assert "missing" in str(info.value)
    with pytest.raises(ObjectNotFound):
        await backend.storage.read_bytes(url)
    with pytest.raises(ObjectNotFound):
        await backend.storage.download(url, tmp_path / "never")
    assert list(tmp_path.iterdir()) == []  # the temporary file was removed


async def test_large_file_round_trip_via_multipart_and_download(
    backend: Backend, tmp_path: Path
) -> None:
    data = os.urandom(MULTIPART_THRESHOLD + 3 * 1024 * 1024)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    url = join_url(backend.base, "big.bin")
    assert await backend.storage.put_file(url, src, create_only=True) is True
    assert await backend.storage.put_file(url, src, create_only=True) is False
    dest = await backend.storage.download(url, tmp_path / "out" / "big.bin")
    assert dest.read_bytes() == data
    assert [p.name for p in dest.parent.iterdir()] == ["big.bin"]  # no temp file left


async def test_failing_stream_publishes_nothing(backend: Backend) -> None:
    url = join_url(backend.base, "interrupted")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield os.urandom(4 * 1024 * 1024)
        raise RuntimeError("source went away mid-upload")

    with pytest.raises((RuntimeError, StorageError)):
        await backend.storage.put_stream(url, chunks())
    assert not await backend.storage.exists(url)


async def test_async_with_forgets_the_stores_it_built_not_shared_buckets() -> None:
    url = f"memory://{uuid.uuid4().hex[:12]}/k"
    async with Storage() as storage:
        assert isinstance(storage, Storage)
        await storage.put_bytes(url, b"kept")
        assert len(storage._stores) == 1
    assert len(storage._stores) == 0  # closed: what it built is gone
    async with Storage() as other:  # memory buckets are process-wide, not this Storage's
        assert await other.read_bytes(url) == b"kept"
    assert await storage.read_bytes(url) == b"kept"  # a closed Storage builds its store again
