"""The digest engine against b3sum, its error reports, and its manners on the event loop."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from tesengine.digest import Digest, Digester, NullProgress, digest, engine, filehash
from tesengine.errors import DigestError, InputChanged
from tests.support import await_until, require

MIB = 1 << 20


@pytest.fixture
async def digester(tmp_path: Path) -> AsyncIterator[Digester]:
    async with Digester(cache_dir=tmp_path / "cache", threads=2) as d:
        yield d


def b3sum(*paths: Path) -> list[str]:
    exe = shutil.which("b3sum")
    require(exe is not None, "the b3sum command (apt-get install b3sum)")
    assert exe is not None
    out = subprocess.run([exe, *map(str, paths)], check=True, capture_output=True, text=True)
    return [line.split()[0] for line in out.stdout.splitlines()]


def pattern(size: int) -> bytes:
    block = bytes(range(251))  # a prime period, so chunk boundaries never line up
    return (block * (size // len(block) + 1))[:size]


SIZES = [0, 1, 1023, 1024, 1025, 16 * 1024, 64 * 1024 + 1, filehash.MMAP_THRESHOLD + 4097]


async def test_file_digests_equal_b3sum(tmp_path: Path, digester: Digester) -> None:
    paths = []
    for size in SIZES:  # both the read path and the memory-mapped path
        path = tmp_path / f"f{size}"
        path.write_bytes(pattern(size))
        paths.append(path)
    got = [(await digester.digest(p)).hex for p in paths]
    assert got == b3sum(*paths)
    assert digester.stats.files_hashed == len(SIZES)
    async with Digester(cache=False, mmap=False) as reader:  # large files read, not mapped
        assert [(await reader.digest(p)).hex for p in paths] == got


async def test_directory_files_equal_b3sum(tmp_path: Path, digester: Digester) -> None:
    root = tmp_path / "tree"
    for i in range(150):  # more than one batch per worker
        sub = root / f"d{i % 7}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i}").write_bytes(pattern(i * 37))
    _, files = await digester.digest_tree(root)
    assert [f.relpath for f in files] == sorted(f.relpath for f in files)
    assert len(files) == 150
    assert [f.digest.hex for f in files] == b3sum(*(f.path for f in files))
    first = files[0]
    assert first.path == root / first.relpath
    assert first.size == first.path.stat().st_size
    assert first.mtime_ns == first.path.stat().st_mtime_ns


async def test_module_level_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESENGINE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("tesengine.digest._default", None)
    (tmp_path / "a").write_bytes(b"hello world!")
    got = await digest(tmp_path / "a")
    assert got == Digest("file", b3sum(tmp_path / "a")[0])
    assert (tmp_path / "cache" / "digests.sqlite3").is_file()


async def test_loop_keeps_ticking_while_a_large_file_hashes(
    tmp_path: Path, digester: Digester
) -> None:
    big = tmp_path / "big"
    with big.open("wb") as fh:
        for _ in range(48):
            fh.write(os.urandom(MIB))
    ticks = 0
    job = asyncio.ensure_future(digester.digest(big))
    while not job.done():
        ticks += 1
        await asyncio.sleep(0)
    assert (await job).hex == blake3(big.read_bytes()).hexdigest()
    # A blocked loop would have run this coroutine once or twice in all.
    assert ticks > 20


async def test_single_flight_shares_one_job(tmp_path: Path) -> None:
    path = tmp_path / "shared"
    path.write_bytes(pattern(3 * MIB))
    async with Digester(cache=False, threads=2) as d:
        results = await asyncio.gather(*(d.digest(path) for _ in range(50)))
        assert len(set(results)) == 1
        assert d.stats.files_hashed == 1
        await d.digest(path)  # the job ended, a new request hashes again (no cache)
        assert d.stats.files_hashed == 2


async def test_one_caller_cancelling_does_not_cancel_the_others(tmp_path: Path) -> None:
    path = tmp_path / "shared"
    path.write_bytes(pattern(8 * MIB))
    async with Digester(cache=False, threads=2) as d:
        first = asyncio.ensure_future(d.digest(path))
        second = asyncio.ensure_future(d.digest(path))
        await asyncio.sleep(0)
        first.cancel()
        assert (await second).hex == blake3(pattern(8 * MIB)).hexdigest()
        assert first.cancelled()


async def test_many_callers_share_a_bounded_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(300):
        (tmp_path / f"f{i}").write_bytes(pattern(i))
    lock, running, peak, threads = threading.Lock(), [0], [0], set()
    real = engine.stat_path

    def counting_stat(path: str) -> os.stat_result:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            threads.add(threading.current_thread())
        try:
            return real(path)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(engine, "stat_path", counting_stat)
    async with Digester(cache=False, threads=3) as d:
        results = await asyncio.gather(*(d.digest(tmp_path / f"f{i}") for i in range(300)))
    assert 1 <= peak[0] <= 3  # 300 callers, at most 3 blocking calls at once
    assert threading.current_thread() not in threads  # never on the loop's thread
    assert [r.hex for r in results[:3]] == [blake3(pattern(i)).hexdigest() for i in range(3)]


def append_while_reading(monkeypatch: pytest.MonkeyPatch, path: Path, times: int) -> list[int]:
    """Make the first ``times`` reads of ``path`` race with a real write to it."""
    real = filehash._read
    reads: list[int] = []

    def read_then_write(fd: int, n: int) -> bytes:
        data = real(fd, n)
        reads.append(n)
        if len(reads) <= times:
            with path.open("ab") as fh:
                fh.write(b" and more")
        return data

    monkeypatch.setattr(filehash, "_read", read_then_write)
    return reads


async def test_file_rewritten_while_hashed_is_hashed_again(
    tmp_path: Path, digester: Digester, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "moving"
    path.write_bytes(b"old content")
    reads = append_while_reading(monkeypatch, path, times=1)
    got = await digester.digest(path)
    assert len(reads) == 2
    assert got.hex == blake3(b"old content and more").hexdigest()


async def test_file_that_never_settles_is_reported(
    tmp_path: Path, digester: Digester, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "moving"
    path.write_bytes(pattern(filehash.MMAP_THRESHOLD // 2))
    append_while_reading(monkeypatch, path, times=100)
    with pytest.raises(InputChanged, match="moving: file kept changing") as info:
        await digester.digest(path)
    assert info.value.path == str(path)
    assert digester.stats.files_hashed == 0  # and no stale digest was remembered
    monkeypatch.undo()
    settled = await digester.digest(path)
    assert settled.hex == blake3(path.read_bytes()).hexdigest()


async def test_fifo_is_rejected_without_hanging(tmp_path: Path, digester: Digester) -> None:
    fifo = tmp_path / "in" / "pipe"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    with pytest.raises(DigestError, match=r"pipe: cannot hash a FIFO"):
        await digester.digest(fifo)
    with pytest.raises(DigestError, match=r"pipe: cannot hash a FIFO"):
        await digester.digest(fifo.parent)
    with pytest.raises(DigestError, match=r"pipe: cannot hash a FIFO"):
        filehash.hash_file(str(fifo))  # opened non-blocking, then refused


async def test_socket_and_device_are_rejected(tmp_path: Path, digester: Digester) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        with pytest.raises(DigestError, match="sock: cannot hash a socket"):
            await digester.digest(tmp_path / "sock")
        with pytest.raises(DigestError, match="sock: cannot hash a socket"):
            filehash.hash_file(str(tmp_path / "sock"))
    with pytest.raises(DigestError, match="/dev/null: cannot hash a character device"):
        await digester.digest("/dev/null")


async def test_symlink_loop_to_ancestor_is_reported(tmp_path: Path, digester: Digester) -> None:
    root = tmp_path / "in"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "up").symlink_to(root / "a", target_is_directory=True)
    with pytest.raises(DigestError, match=r"in/a/b/up: symlink loop") as info:
        await digester.digest(root)
    assert info.value.path == str(root / "a" / "b" / "up")


async def test_self_referencing_symlink_is_reported(tmp_path: Path, digester: Digester) -> None:
    root = tmp_path / "in"
    root.mkdir()
    (root / "me").symlink_to(root / "me")
    with pytest.raises(DigestError, match=r"in/me: symlink loop"):
        await digester.digest(root)
    with pytest.raises(DigestError, match=r"in/me: symlink loop"):
        await digester.digest(root / "me")


async def test_symlink_to_sibling_directory_is_not_a_loop(
    tmp_path: Path, digester: Digester
) -> None:
    root = tmp_path / "in"
    (root / "real").mkdir(parents=True)
    (root / "real" / "f").write_bytes(b"f")
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    _, files = await digester.digest_tree(root)
    assert [f.relpath for f in files] == ["alias/f", "real/f"]


async def test_non_utf8_name_is_reported(tmp_path: Path, digester: Digester) -> None:
    root = tmp_path / "in"
    root.mkdir()
    try:
        (root / os.fsdecode(b"bad\xffname")).write_bytes(b"x")
    except (OSError, UnicodeEncodeError):
        pytest.skip("this filesystem refuses names that are not UTF-8")
    with pytest.raises(DigestError, match=r"in/bad\\xffname: file name is not valid UTF-8"):
        await digester.digest(root)


async def test_missing_and_unreadable_paths(tmp_path: Path, digester: Digester) -> None:
    with pytest.raises(DigestError, match="nothing-here: no such file or directory"):
        await digester.digest(tmp_path / "nothing-here")
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(DigestError, match="not a directory"):
        await digester.digest_tree(tmp_path / "f")
    if os.geteuid() == 0:
        return  # root reads everything; the permission case cannot be staged
    locked = tmp_path / "locked"
    locked.write_bytes(b"secret")
    locked.chmod(0)
    with pytest.raises(DigestError, match="locked: cannot read: Permission denied"):
        await digester.digest(locked)


async def test_error_in_one_batch_fails_the_directory(
    tmp_path: Path, digester: Digester, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "in"
    root.mkdir()
    for i in range(400):
        (root / f"f{i:03}").write_bytes(b"x")
    real = filehash.hash_file

    def fail_on_one(path: str, **kwargs: Any) -> tuple[str, filehash.FileStat]:
        if path.endswith("f007"):
            raise DigestError(f"{path}: injected", path=path)
        return real(path, **kwargs)

    monkeypatch.setattr("tesengine.digest.executor.hash_file", fail_on_one)
    with pytest.raises(DigestError, match="f007: injected"):
        await digester.digest(root)
    monkeypatch.undo()
    # Nothing of the failed run was remembered as if it were complete.
    before = digester.stats.files_hashed
    again = await digester.digest(root)
    assert digester.stats.files_hashed - before == 400
    async with Digester(cache=False) as fresh:
        assert again == await fresh.digest(root)


class Recorder(NullProgress):
    def __init__(self) -> None:
        self.found = 0
        self.bytes = 0
        self.done: list[tuple[Path, bool]] = []
        self.threads: set[str] = set()

    def files_found(self, count: int) -> None:
        self.found += count

    def bytes_hashed(self, n: int) -> None:
        self.bytes += n

    def file_done(self, path: Path, cached: bool) -> None:
        self.threads.add(threading.current_thread().name)
        self.done.append((path, cached))


async def test_progress_hooks_run_on_the_loop_thread(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    for i in range(20):
        (root / f"f{i}").write_bytes(b"x" * i)
    first, second = Recorder(), Recorder()
    async with Digester(cache_dir=tmp_path / "c", progress=first) as d:
        await d.digest(root)
    async with Digester(cache_dir=tmp_path / "c", progress=second) as d:
        await d.digest(root)
    assert (first.found, first.bytes, len(first.done)) == (20, sum(range(20)), 20)
    assert not any(cached for _, cached in first.done)
    assert (second.found, second.bytes) == (20, 0)
    assert sorted(second.done) == sorted((root / f"f{i}", True) for i in range(20))
    assert first.threads == second.threads == {threading.current_thread().name}


async def test_last_caller_cancelling_stops_the_work(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    for i in range(2000):
        (root / f"f{i:04}").write_bytes(b"x")
    started = asyncio.Event()

    class FirstDone(NullProgress):
        def file_done(self, path: Path, cached: bool) -> None:
            started.set()

    async with Digester(cache=False, threads=1, progress=FirstDone()) as d:
        caller = asyncio.ensure_future(d.digest(root))
        await started.wait()
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        # the shared job ends once its running batch returns
        await await_until(lambda: d._flights.idle, what="the cancelled digest to end")
        # 8 batches of 250 files were queued; only those already running finished.
        assert 0 < d.stats.files_hashed < 2000


async def test_digest_file_refuses_a_directory(tmp_path: Path, digester: Digester) -> None:
    with pytest.raises(DigestError, match=r": is a directory, not a file$"):
        await digester.digest_file(tmp_path)


async def test_digest_files_batches_many_files_in_order(tmp_path: Path) -> None:
    paths = [tmp_path / f"f{i:03}" for i in range(300)]
    for i, p in enumerate(paths):
        p.write_bytes(pattern(i * 7))
    asked = [*paths, paths[5], str(paths[0])]  # repeats, and a str among Paths
    async with Digester(cache_dir=tmp_path / "c", threads=2) as d:
        got = await d.digest_files(asked)
        assert await d.digest_files([]) == []
    assert [g.hex for g in got] == [blake3(pattern(i * 7)).hexdigest() for i in range(300)] + [
        blake3(pattern(35)).hexdigest(),
        blake3(pattern(0)).hexdigest(),
    ]
    assert all(g.kind == "file" for g in got)
    assert d.stats.files_hashed == 300  # each path once, however often it was asked for
    paths[7].write_bytes(b"changed")
    async with Digester(cache_dir=tmp_path / "c", threads=2) as again:
        second = await again.digest_files(paths)
    assert (again.stats.files_hashed, again.stats.files_cached) == (1, 299)
    assert second[7].hex == blake3(b"changed").hexdigest()
    assert [g.hex for g in second[8:]] == [g.hex for g in got[8:300]]


async def test_a_warm_batch_of_files_takes_one_trip_to_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each trip to a thread costs about what a loopback HEAD does: a warm
    # batch (staging's common case) must not split into a trip per few files.
    paths = [tmp_path / f"f{i}" for i in range(10)]
    for i, p in enumerate(paths):
        p.write_bytes(pattern(i))
    async with Digester(cache_dir=tmp_path / "c", threads=2) as d:
        cold = await d.digest_files(paths)
        trips: list[object] = []
        run = d._pool.run

        async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
            trips.append(func)
            return await run(func, *args, **kwargs)

        monkeypatch.setattr(d._pool, "run", counted)
        warm = await d.digest_files(paths)
        assert len(trips) == 1, trips
    assert warm == cold
    assert (d.stats.files_hashed, d.stats.files_cached) == (10, 10)


async def test_digest_files_refuses_a_directory_and_names_it(
    tmp_path: Path, digester: Digester
) -> None:
    (tmp_path / "f").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    with pytest.raises(DigestError, match=r"sub: is a directory, not a file$"):
        await digester.digest_files([tmp_path / "f", tmp_path / "sub"])


def test_stats_in_a_directory_match_one_stat_each_or_are_none(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).write_bytes(name.encode())
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a")
    got = filehash.regular_stats_in(str(tmp_path), ["a", "b", "link"])
    assert got == [filehash.regular_stat(str(tmp_path / n)) for n in ("a", "b", "link")]
    # Anything amiss leaves it to the per-file stat, whose errors name the file.
    assert filehash.regular_stats_in(str(tmp_path), ["a", "gone"]) is None
    assert filehash.regular_stats_in(str(tmp_path), ["a", "sub"]) is None
    assert filehash.regular_stats_in(str(tmp_path / "gone"), ["a"]) is None


async def test_a_file_gone_between_walk_and_stat_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    for name in ("a", "b"):
        (root / name).write_bytes(name.encode())
    scan = engine.scan

    def scan_then_remove(where: str) -> Any:
        tree = scan(where)
        (root / "b").unlink()
        return tree

    monkeypatch.setattr(engine, "scan", scan_then_remove)
    async with Digester(cache_dir=tmp_path / "c") as d:
        with pytest.raises(DigestError, match="tree/b: cannot read: No such file"):
            await d.digest(root)
