"""A user's own StorageLike (a counting wrapper) drives TesBackend end to end."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

import pytest

from tesengine import Executor, RemoteFile, Storage, StorageLike, Task, TesBackend
from tesengine.server import LocalTesServer
from tesengine.storage import ObjectInfo
from tesengine.tes import State
from tests.fixtures.tes_server import bwrap_available
from tests.support import file_config, require


class CountingStorage:
    """Satisfies StorageLike structurally (no base class) by wrapping a real Storage."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    async def exists(self, url: str) -> bool:
        self.calls["exists"] += 1
        return await self.inner.exists(url)

    async def head(self, url: str) -> ObjectInfo:
        self.calls["head"] += 1
        return await self.inner.head(url)

    async def put_bytes(self, url: str, data: bytes, *, create_only: bool = False) -> bool:
        self.calls["put_bytes"] += 1
        return await self.inner.put_bytes(url, data, create_only=create_only)

    async def put_stream(
        self, url: str, chunks: AsyncIterable[bytes], *, create_only: bool = False
    ) -> bool:
        self.calls["put_stream"] += 1
        return await self.inner.put_stream(url, chunks, create_only=create_only)

    async def read_bytes(self, url: str) -> bytes:
        self.calls["read_bytes"] += 1
        return await self.inner.read_bytes(url)

    async def download(self, url: str, dest: Path) -> Path:
        self.calls["download"] += 1
        return await self.inner.download(url, dest)

    async def walk(self, prefix_url: str) -> AsyncIterator[tuple[str, ObjectInfo]]:
        self.calls["walk"] += 1
        async for entry in self.inner.walk(prefix_url):
            yield entry


def _typed(storage: CountingStorage) -> StorageLike:
    return storage  # mypy checks here that the wrapper satisfies the Protocol


async def test_user_storage_sees_uploads_and_reads(tmp_path: Path) -> None:
    require(bwrap_available(), "bubblewrap (bwrap) for the local runtime")
    objects = tmp_path / "storage"
    objects.mkdir()
    (tmp_path / "in.txt").write_text("one\ntwo\n")
    server = LocalTesServer(tmp_path / "server", storage_url=objects.as_uri(), runtime="local")
    async with server:
        config = file_config(server.url, objects, tmp_path / "cache")
        async with Storage(config.storage) as inner:
            counting = CountingStorage(inner)
            async with TesBackend(config, storage=_typed(counting)) as backend:
                run = await backend.submit(
                    Task(
                        name="upper",
                        executors=[
                            Executor(
                                image="debian:stable-slim",
                                command=["sh", "-c", "tr a-z A-Z < /in/in.txt > /out/u.txt"],
                            )
                        ],
                        inputs={"/in/in.txt": tmp_path / "in.txt"},
                        outputs={"u": "/out/u.txt"},
                    )
                )
                result = await run
                assert result.state is State.COMPLETE
                out = result.outputs["u"]
                assert isinstance(out, RemoteFile)
                reads_before = counting.calls["download"] + counting.calls["read_bytes"]
                assert await out.read_text() == "ONE\nTWO\n"
    uploads = counting.calls["put_bytes"] + counting.calls["put_stream"]
    assert uploads >= 1, counting.calls  # the local input was staged through the wrapper
    assert counting.calls["download"] + counting.calls["read_bytes"] > reads_before, counting.calls
    staged = [p for p in (objects / "inputs" / "file").rglob("*") if p.is_file()]
    assert [p.read_text() for p in staged] == ["one\ntwo\n"]


@pytest.mark.parametrize("name", ["StorageLike"])
def test_storage_like_is_exported(name: str) -> None:
    import tesengine
    import tesengine.storage

    assert getattr(tesengine, name) is getattr(tesengine.storage, name)
