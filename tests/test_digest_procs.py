"""Small files hashed in worker processes: same digests, fallbacks, no process left behind."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from tesengine.digest import Digester
from tesengine.digest.filehash import FileStat, regular_stat
from tesengine.digest.procs import HashProcs
from tesengine.errors import DigestError


def make_tree(root: Path, count: int) -> dict[str, bytes]:
    contents = {}
    for i in range(count):
        rel = f"d{i % 3}/f{i:04}"
        data = os.urandom(i % 700)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        contents[rel] = data
    return contents


def processes(digester: Digester) -> int:
    return digester._exec.procs.running


async def test_large_tree_hashes_in_processes_with_the_same_digests(tmp_path: Path) -> None:
    root = tmp_path / "in"
    contents = make_tree(root, 300)
    async with Digester(cache=False, threads=2) as in_threads:
        in_threads._exec.procs_min_files = 10**9
        expected = await in_threads.digest(root)
        assert processes(in_threads) == 0
    async with Digester(cache_dir=tmp_path / "cache", threads=2) as d:
        d._exec.procs_min_files = 10
        digest, files = await d.digest_tree(root)
        assert processes(d) >= 1
        workers = list(d._exec.procs._all)
        again = await d.digest(root)  # from the cache, rows stored by the process path
        assert d.stats.files_cached == 300
    assert digest == expected == again
    assert {f.relpath: f.digest.hex for f in files} == {
        rel: blake3(data).hexdigest() for rel, data in contents.items()
    }
    assert all(w.popen.poll() is not None for w in workers), "aclose stops every worker"


async def test_digest_files_uses_processes_too(tmp_path: Path) -> None:
    contents = make_tree(tmp_path, 400)
    paths = [tmp_path / rel for rel in contents]
    async with Digester(cache=False, threads=2) as d:
        d._exec.procs_min_files = 10
        got = await d.digest_files(paths)
        assert processes(d) >= 1
    assert [g.hex for g in got] == [blake3(data).hexdigest() for data in contents.values()]


async def test_a_file_a_process_cannot_tell_is_hashed_and_reported_by_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "in"
    contents = make_tree(root, 200)
    real = HashProcs.hash

    def unsure_of_one(self: HashProcs, paths: list[str], stats: Any) -> list[str | None]:
        got = real(self, paths, stats)
        return [None if p.endswith("f0001") else g for p, g in zip(paths, got, strict=True)]

    monkeypatch.setattr(HashProcs, "hash", unsure_of_one)
    async with Digester(cache=False, threads=2) as d:
        d._exec.procs_min_files = 10
        _, files = await d.digest_tree(root)
        assert d.stats.files_hashed == 200
        assert {f.relpath: f.digest.hex for f in files}["d1/f0001"] == blake3(
            contents["d1/f0001"]
        ).hexdigest()

        def fail(path: str, **kwargs: Any) -> tuple[str, FileStat]:
            raise DigestError(f"{path}: injected", path=path)

        monkeypatch.setattr("tesengine.digest.executor.hash_file", fail)
        with pytest.raises(DigestError, match="f0001: injected"):
            await d.digest(root)


def test_worker_answers_none_for_a_changed_or_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    st = regular_stat(str(path))
    stale = FileStat(st.dev, st.ino, st.size, st.mtime_ns - 1, st.ctime_ns)
    procs = HashProcs(1)
    try:
        got = procs.hash([str(path), str(path), str(tmp_path / "gone")], [st, stale, st])
        assert got == [blake3(b"abc").hexdigest(), None, None]
    finally:
        procs.close()
    assert procs.running == 0


def test_a_dead_worker_is_replaced_and_its_batch_answered_none(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    st = regular_stat(str(path))
    procs = HashProcs(1)
    try:
        assert procs.hash([str(path)], [st]) == [blake3(b"abc").hexdigest()]
        (worker,) = procs._all
        worker.popen.kill()
        worker.popen.wait()
        assert procs.hash([str(path)], [st]) == [None]  # the caller hashes it itself
        assert procs.running == 0
        assert procs.hash([str(path)], [st]) == [blake3(b"abc").hexdigest()]
    finally:
        procs.close()
    assert procs.hash([str(path)], [st]) == [None], "closed: no new worker"
    assert procs.running == 0


async def test_large_file_is_mapped_in_a_worker_process(tmp_path: Path) -> None:
    path = tmp_path / "large"
    path.write_bytes(os.urandom(5 << 20))
    expected = blake3(path.read_bytes()).hexdigest()
    async with Digester(cache=False, threads=2) as mapped:
        assert (await mapped.digest(path)).hex == expected
        assert processes(mapped) == 1  # the mapping happened there, not here
    async with Digester(cache=False, threads=2, mmap=False) as reader:
        assert (await reader.digest(path)).hex == expected
        assert processes(reader) == 0
    async with Digester(cache=False, threads=2) as no_workers:
        no_workers._exec.procs.count = 0  # none can start: the file is read here instead
        assert (await no_workers.digest(path)).hex == expected
