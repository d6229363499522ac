"""Awkward object names through every store kind: staged, walked, downloaded, refused.

Names with spaces, ``%``, ``#``, ``?`` and non-ASCII letters must reach the
store under their own name and come back as the same local name (not
``a%20b.txt``); a ``..`` segment is refused the same way on every store.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tesengine import Executor, RemoteFile, Task
from tesengine.digest import Digester
from tesengine.engine.outputs import OutputCache, RemoteDirectory
from tesengine.errors import StorageError
from tesengine.storage import Stager, Storage, join_url, parse_url
from tests.fixtures.s3 import S3Server, boto3_client
from tests.test_engine import Env, local_env

__all__ = ["local_env"]  # the fixture, shared with test_engine

#: relative path -> content; every awkward character in a file or folder name
NAMES = {
    "a b.txt": b"space",
    "100%.txt": b"lone percent",
    "50%41.txt": b"percent escape look-alike",
    "q?x=1.txt": b"question mark",
    "h#frag.txt": b"hash",
    "ünï/cödé ✓.txt": b"unicode",
    "dir with space/x%20y": b"nested",
}


@dataclass(frozen=True, slots=True)
class Store:
    name: str
    storage: Storage
    base: str
    endpoint: str | None = None


@pytest.fixture(params=["file", "memory", "moto", "azurite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    unique = uuid.uuid4().hex[:12]
    if request.param == "moto":
        server = request.getfixturevalue("moto_s3")
        found = Store("moto", Storage(server.storage_config()), server.url(unique), server.endpoint)
    elif request.param == "azurite":
        azurite = request.getfixturevalue("azurite")
        found = Store("azurite", Storage(azurite.storage_config()), azurite.url(unique))
    elif request.param == "file":
        found = Store("file", Storage(), (tmp_path / "store").as_uri())
    else:
        found = Store("memory", Storage(), f"memory://{unique}/in")
    async with found.storage:
        yield found


def _tree(root: Path) -> Path:
    for rel, data in NAMES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


async def test_awkward_names_round_trip_staging_walk_and_download(
    store: Store, tmp_path: Path
) -> None:
    async with Digester(threads=1, cache=False) as digester:
        staged = await Stager(store.storage, digester, store.base).stage(_tree(tmp_path / "src"))
    keys = {parse_url(info.url).key async for info in store.storage.list(staged.url)}
    prefix = parse_url(staged.url).key
    assert keys == {f"{prefix}/{rel}" for rel in NAMES}  # each object under its real name

    directory = RemoteDirectory(staged.url, OutputCache(store.storage, tmp_path / "cache"))
    walked = {rel: await f.read_bytes() async for rel, f in directory.walk()}
    assert walked == NAMES
    local = await directory.download(tmp_path / "out")
    files = [p for p in local.rglob("*") if p.is_file()]
    assert {p.relative_to(local).as_posix(): p.read_bytes() for p in files} == NAMES
    assert await directory.file("q?x=1.txt").read_bytes() == b"question mark"
    single = await directory.file("a b.txt").download()
    assert single.name == "a b.txt"


async def test_dot_dot_is_refused_on_every_store(store: Store) -> None:
    directory = RemoteDirectory(join_url(store.base, "d"))
    for bad in ("../x", "a/../../x", "..", "a\\..\\x"):
        with pytest.raises(StorageError, match="unsafe relative path"):
            directory.file(bad)
        with pytest.raises(StorageError, match="unsafe relative path"):
            join_url(store.base, bad)
    # A hand-written URL with a '..' key never reaches the store either.
    sneaky = store.base + "/d/../escaped"
    with pytest.raises(StorageError):
        await store.storage.put_bytes(sneaky, b"x")
    with pytest.raises(StorageError):
        await store.storage.read_bytes(sneaky)


async def test_listing_with_a_planted_dot_dot_key_is_refused(
    moto_s3: S3Server, tmp_path: Path
) -> None:
    """A key that another tool wrote with a '..' segment fails the walk: nothing is fetched."""
    unique = uuid.uuid4().hex[:12]
    client = boto3_client(moto_s3.endpoint)
    client.put_object(Bucket=moto_s3.bucket, Key=f"{unique}/d/ok", Body=b"ok")
    client.put_object(Bucket=moto_s3.bucket, Key=f"{unique}/d/../evil", Body=b"x")
    async with Storage(moto_s3.storage_config()) as storage:
        cache = OutputCache(storage, tmp_path / "cache")
        directory = RemoteDirectory(moto_s3.url(f"{unique}/d"), cache)
        with pytest.raises(StorageError, match=r"LIST .* failed"):
            await directory.download()
    assert not (tmp_path / "cache").exists()


async def test_a_directory_with_awkward_names_reaches_a_task_under_its_names(
    local_env: Env, tmp_path: Path
) -> None:
    """Staged by the engine, fetched by the server's walk, listed inside the sandbox."""
    src = _tree(tmp_path / "src")
    sh = Executor(
        image="debian:stable-slim",
        command=["sh", "-c", "cd /in/d && find . -type f | sort > /out/list"],
    )
    task = Task(name="names", executors=[sh], inputs={"/in/d": src}, outputs={"l": "/out/list"})
    async with local_env.backend() as backend:
        result = await (await backend.submit(task))
    listing = result.outputs["l"]
    assert isinstance(listing, RemoteFile)
    assert (await listing.read_text()).splitlines() == sorted(f"./{rel}" for rel in NAMES)
