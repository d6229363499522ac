"""Scenarios 2-4: the object store resets uploads, inputs change, the store goes down.

moto (a real S3 API) sits behind the fault proxy; what is at a content
address is always checked directly on moto, never through the proxy.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import blake3
import pytest

from tesengine import Executor, InvalidTask, Task, TesBackend
from tesengine.config import S3Auth, S3Storage, StorageConfig
from tesengine.digest import Digester
from tesengine.errors import InputChanged, StorageError
from tesengine.storage import Stager, Storage
from tests.faults.conftest import full_only, make_config
from tests.faults.procs import server_states
from tests.fixtures.proxy import RESET_AFTER, RESET_BEFORE, UNAVAILABLE, Fault, FaultProxy
from tests.fixtures.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from tests.fixtures.tes_server import ServedTes

Proxy = Callable[[str], Awaitable[FaultProxy]]


def s3_config(endpoint: str) -> StorageConfig:
    auth = S3Auth(access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
    return StorageConfig(s3=S3Storage(region=REGION, endpoint=endpoint, allow_http=True, auth=auth))


@dataclass
class Rig:
    proxy: FaultProxy
    inputs: str  # s3://bucket/<unique>/inputs
    via: Storage  # through the proxy
    direct: Storage  # straight to moto
    stager: Stager

    async def digest_at(self, url: str) -> str:
        return blake3.blake3(await self.direct.read_bytes(url)).hexdigest()

    async def keys(self) -> list[str]:
        return [info.url async for info in self.direct.list(self.inputs)]


@pytest.fixture
async def rig(
    moto_s3: S3Server, fault_proxy: Proxy, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Rig]:
    proxy = await fault_proxy(moto_s3.endpoint)
    inputs = moto_s3.url(f"{request.node.name.replace('[', '-').rstrip(']')}-{time.time_ns()}")
    via = Storage(s3_config(proxy.url))
    direct = Storage(moto_s3.storage_config())
    async with Digester(cache_dir=tmp_path / "digests") as digester:
        yield Rig(proxy, inputs, via, direct, Stager(via, digester, inputs))
    await via.aclose()
    await direct.aclose()


@pytest.mark.parametrize("size", [300_000, 10 * 1024 * 1024], ids=["put", "multipart"])
async def test_upload_reset_mid_stream_publishes_nothing_then_a_correct_object(
    rig: Rig, tmp_path: Path, size: int
) -> None:
    """Scenario 2."""
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(size))
    want = blake3.blake3(data.read_bytes()).hexdigest()
    url = f"{rig.inputs}/file/{want}"
    seen_during_fault: list[bool] = []

    async def look() -> None:
        seen_during_fault.append(await rig.direct.exists(url))

    # a single PUT, or one part of a multipart upload
    rig.proxy.add(Fault("cut_upload"), method="PUT", path="/file/", times=1, on_fault=look)
    try:
        result = await rig.stager.stage(data)
    except StorageError:  # the store's client gave up: staging again is the retry
        assert not await rig.direct.exists(url)
        result = await rig.stager.stage(data)
    assert seen_during_fault == [False]  # nothing at the address after the cut
    assert result.url == url
    assert result.uploaded
    assert await rig.digest_at(url) == want
    assert await rig.keys() == [url]  # no stray partial object anywhere


@pytest.mark.parametrize("fault", [RESET_BEFORE, RESET_AFTER], ids=["lost-request", "lost-answer"])
async def test_a_create_only_put_that_got_no_answer_is_sent_again(
    rig: Rig, tmp_path: Path, fault: Fault
) -> None:
    """obstore never retries a create-only PUT; a content address is safe to send twice.

    Before the answer is lost (the store wrote it) or with the request (it
    did not): either way the one staging call succeeds, with one object.
    """
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(50_000))
    want = blake3.blake3(data.read_bytes()).hexdigest()
    rig.proxy.add(fault, method="PUT", path=f"/file/{want}", times=1)
    result = await rig.stager.stage(data)
    assert rig.proxy.injected[fault.kind] == 1
    assert result.uploaded and result.url == f"{rig.inputs}/file/{want}"
    assert await rig.digest_at(result.url) == want
    assert await rig.keys() == [result.url]


async def test_a_create_only_put_refused_with_an_answer_is_not_sent_again(
    rig: Rig, tmp_path: Path
) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(b"refused\n")
    rig.proxy.add(Fault("status", 400), method="PUT", path="/file/")
    with pytest.raises(StorageError, match="PUT"):
        await rig.stager.stage(data)
    assert rig.proxy.injected["status"] == 1  # an HTTP answer: not a lost request
    assert await rig.keys() == []


@pytest.mark.parametrize("size", [300_000, 10 * 1024 * 1024], ids=["put", "multipart"])
async def test_input_modified_during_staging_is_never_published(
    rig: Rig, tmp_path: Path, size: int
) -> None:
    """Scenario 3: the file changes between hashing and upload."""
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(size))
    old = blake3.blake3(data.read_bytes()).hexdigest()

    async def edit() -> None:  # between the digest and the upload: at the existence check
        with data.open("r+b") as fh:
            fh.write(b"edited!")

    rig.proxy.add(Fault("delay"), method="HEAD", path=f"/file/{old}", times=1, on_fault=edit)
    with pytest.raises(InputChanged, match=r"data\.bin"):
        await rig.stager.stage(data)
    assert await rig.keys() == []  # not under the old digest, nor anywhere else
    new = blake3.blake3(data.read_bytes()).hexdigest()
    result = await rig.stager.stage(data)  # staging it again publishes the new bytes
    assert result.url.endswith(new)
    assert await rig.digest_at(result.url) == new


async def test_directory_modified_during_staging_writes_no_marker(rig: Rig, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(3):
        (tree / f"f{i}.txt").write_text(f"file {i}\n")

    async def edit() -> None:
        (tree / "f1.txt").write_text("edited\n")

    rig.proxy.add(Fault("delay"), method="HEAD", path="/complete/", times=1, on_fault=edit)
    with pytest.raises(InputChanged, match="tree"):
        await rig.stager.stage(tree)
    assert not [k for k in await rig.keys() if "/complete/" in k]


@pytest.mark.parametrize("outage", [3.0, pytest.param(30.0, marks=full_only)])
async def test_store_down_then_back_staging_resumes(
    outage: float, rig: Rig, serve_tes: Callable[..., ServedTes], tmp_path: Path, moto_s3: S3Server
) -> None:
    """Scenario 4: every store request fails (503) for ``outage`` s, then the store is back."""
    served = serve_tes()
    data = tmp_path / "reads.txt"
    data.write_bytes(os.urandom(50_000))
    config = make_config(
        served.url, rig.inputs.removesuffix("/inputs"), tmp_path / "c", s3_config(rig.proxy.url)
    )
    config = config.model_copy(
        update={"backend": config.backend.model_copy(update={"inputs": rig.inputs})}
    )
    rig.proxy.add(UNAVAILABLE, until=time.monotonic() + outage)
    async with TesBackend(config) as backend:
        run = await backend.submit(
            Task("down", [Executor("alpine", ["true"])], inputs={"/in/reads.txt": data})
        )
        assert rig.proxy.injected["status"] >= 2  # the outage was met, and retried through
        task = await backend.client.get_task(run.id, view=__import__("tesengine").tes.View.FULL)
        urls = [i.url for i in task.inputs or []]
        assert len(urls) == 1
        # the input was complete in the store before the task was submitted
        assert await rig.digest_at(urls[0]) == blake3.blake3(data.read_bytes()).hexdigest()
        await run


async def test_broken_store_submits_nothing(
    rig: Rig, serve_tes: Callable[..., ServedTes], tmp_path: Path
) -> None:
    """A store that refuses (403) fails the submission before any task is created."""
    served = serve_tes()
    data = tmp_path / "reads.txt"
    data.write_bytes(b"abc\n")
    config = make_config(served.url, "s3://unused", tmp_path / "c", s3_config(rig.proxy.url))
    config = config.model_copy(
        update={"backend": config.backend.model_copy(update={"inputs": rig.inputs})}
    )
    rig.proxy.add(Fault("status", 403))
    async with TesBackend(config) as backend:
        with pytest.raises(StorageError):
            await backend.submit(
                Task("refused", [Executor("alpine", ["true"])], inputs={"/in/r.txt": data})
            )
        with pytest.raises(InvalidTask):
            await backend.submit(
                Task("bad", [Executor("alpine", ["true"])], inputs={"relative": data})
            )
    assert sum(server_states(served).values()) == 0
    assert await rig.keys() == []
    await asyncio.sleep(0)
