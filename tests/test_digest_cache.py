"""The persistent digest cache: hits, every kind of invalidation, damage, sharing."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from tesengine.digest import Digester
from tesengine.digest.cache import CACHE_FILE, SCHEMA_VERSION, DigestCache
from tesengine.digest.filehash import FileStat


def b3hex(data: bytes) -> str:
    return blake3(data).hexdigest()


async def run(cache: Path, path: Path, *, tree: bool = False) -> tuple[str, Digester]:
    """Digest ``path`` with a fresh digester (as a new process would) on ``cache``."""
    async with Digester(cache_dir=cache, threads=2) as d:
        if tree:
            digest, _ = await d.digest_tree(path)
        else:
            digest = await d.digest(path)
    return digest.hex, d


async def test_second_run_hashes_nothing(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"content")
    first, d1 = await run(tmp_path / "c", f)
    second, d2 = await run(tmp_path / "c", f)
    assert first == second == b3hex(b"content")
    assert (d1.stats.files_hashed, d2.stats.files_hashed) == (1, 0)
    assert d2.stats.files_cached == 1


async def test_touch_invalidates(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"content")
    await run(tmp_path / "c", f)
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    again, d = await run(tmp_path / "c", f)
    assert again == b3hex(b"content")
    assert d.stats.files_hashed == 1


async def test_same_size_rewrite_with_restored_mtime_invalidates(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"AAAA")
    await run(tmp_path / "c", f)
    st = f.stat()
    f.write_bytes(b"BBBB")  # same size, same inode...
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...and the old mtime back
    assert f.stat().st_mtime_ns == st.st_mtime_ns and f.stat().st_ino == st.st_ino
    again, d = await run(tmp_path / "c", f)
    assert again == b3hex(b"BBBB")  # only ctime told them apart
    assert d.stats.files_hashed == 1


async def test_inode_swap_by_mv_invalidates(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"AAAA")
    await run(tmp_path / "c", f)
    st = f.stat()
    other = tmp_path / "other"
    other.write_bytes(b"BBBB")
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    other.rename(f)  # `mv other f`: same name, size and mtime, another inode
    assert f.stat().st_ino != st.st_ino
    again, d = await run(tmp_path / "c", f)
    assert again == b3hex(b"BBBB")
    assert d.stats.files_hashed == 1


async def test_warm_directory_hashes_nothing_and_a_change_rehashes_one_file(
    tmp_path: Path,
) -> None:
    root = tmp_path / "tree"
    for sub in ("a", "b", "c"):
        (root / sub).mkdir(parents=True)
        for i in range(5):
            (root / sub / f"f{i}").write_bytes(f"{sub}{i}".encode())
    cold, d1 = await run(tmp_path / "c", root)
    warm, d2 = await run(tmp_path / "c", root)
    assert cold == warm
    assert d1.stats.files_hashed == 15
    assert (d2.stats.files_hashed, d2.stats.files_cached) == (0, 15)

    (root / "b" / "f3").write_bytes(b"changed")
    changed, d3 = await run(tmp_path / "c", root)
    assert changed != cold
    # Only the changed file is hashed; the directory is recombined from the cache.
    assert (d3.stats.files_hashed, d3.stats.files_cached) == (1, 14)
    fresh, _ = await run(tmp_path / "fresh-cache", root)
    assert fresh == changed


def _touch(f: Path, st: os.stat_result) -> None:
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def _rewrite_same_size_old_mtime(f: Path, st: os.stat_result) -> None:
    f.write_bytes(b"BBBB")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))


def _swap_inode(f: Path, st: os.stat_result) -> None:
    other = f.with_name("other.tmp")
    other.write_bytes(b"BBBB")
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    other.rename(f)


@pytest.mark.parametrize("change", [_touch, _rewrite_same_size_old_mtime, _swap_inode])
async def test_directory_rows_check_all_five_fields_of_each_file(
    tmp_path: Path, change: Any
) -> None:
    # Same cases as the single-file tests above, through a directory's cache row.
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    for i in range(4):
        (root / "sub" / f"f{i}").write_bytes(b"AAAA")
    await run(tmp_path / "c", root)
    f = root / "sub" / "f2"
    change(f, f.stat())
    again, d = await run(tmp_path / "c", root)
    fresh, _ = await run(tmp_path / "fresh", root)
    assert again == fresh
    assert (d.stats.files_hashed, d.stats.files_cached) == (1, 3)
    _, d = await run(tmp_path / "c", root)
    assert d.stats.files_hashed == 0, "the changed directory's row was rewritten"


def _grow(f: Path, st: os.stat_result) -> None:
    f.write_bytes(b"AAAAA")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))


def _new_inode_in_place(f: Path, st: os.stat_result) -> None:
    # Same size and mtime; the inode (which may even be reused) and ctime tell it apart.
    data = f.read_bytes()
    f.unlink()
    f.write_bytes(data.replace(b"A", b"C"))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize(
    "change", [_touch, _grow, _rewrite_same_size_old_mtime, _new_inode_in_place]
)
async def test_a_change_is_found_when_the_directory_mtime_is_restored(
    tmp_path: Path, change: Any
) -> None:
    # A warm directory is proved unchanged by each file's stat, never by the
    # directory's own mtime: here that is put back after the change.
    root = tmp_path / "tree"
    sub = root / "sub"
    sub.mkdir(parents=True)
    for i in range(50):
        (sub / f"f{i:02}").write_bytes(b"AAAA")
    cold, _ = await run(tmp_path / "c", root)
    dir_st = sub.stat()
    change(sub / "f17", (sub / "f17").stat())
    os.utime(sub, ns=(dir_st.st_atime_ns, dir_st.st_mtime_ns))
    assert sub.stat().st_mtime_ns == dir_st.st_mtime_ns
    again, d = await run(tmp_path / "c", root, tree=True)
    fresh, _ = await run(tmp_path / "fresh", root)
    assert again == fresh
    assert (d.stats.files_hashed, d.stats.files_cached) == (1, 49)
    if change is not _touch:
        assert again != cold


async def test_a_file_digested_alone_is_found_in_its_directory_later(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    (root / "a").write_bytes(b"a")
    (root / "b").write_bytes(b"b")
    await run(tmp_path / "c", root / "a")
    _, d = await run(tmp_path / "c", root)
    assert (d.stats.files_hashed, d.stats.files_cached) == (1, 1)


async def test_an_unreadable_directory_row_is_ignored(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    for i in range(3):
        (root / f"f{i}").write_bytes(bytes([i]))
    cold, _ = await run(tmp_path / "c", root)
    with sqlite3.connect(tmp_path / "c" / CACHE_FILE) as conn:
        conn.execute("UPDATE dirs SET stats = x'0102', hexes = 'zz'")
    again, d = await run(tmp_path / "c", root)
    assert again == cold
    assert d.stats.files_hashed == 3


def _change_deep_file(root: Path) -> None:
    (root / "a" / "b" / "c" / "f0").write_bytes(b"changed")


def _add_empty_subdir(root: Path) -> None:
    (root / "a" / "new").mkdir()


def _rename_subdir(root: Path) -> None:
    (root / "a" / "b").rename(root / "a" / "b2")


def _remove_file(root: Path) -> None:
    (root / "a" / "b" / "f1").unlink()


def _replace_file_by_dir(root: Path) -> None:
    (root / "a" / "f0").unlink()
    (root / "a" / "f0").mkdir()


@pytest.mark.parametrize(
    "change",
    [_change_deep_file, _add_empty_subdir, _rename_subdir, _remove_file, _replace_file_by_dir],
)
async def test_cached_directory_digests_follow_any_change_below(
    tmp_path: Path, change: Any
) -> None:
    root = tmp_path / "tree"
    for sub in ("a", "a/b", "a/b/c"):
        (root / sub).mkdir(parents=True)
        for i in range(2):
            (root / sub / f"f{i}").write_bytes(f"{sub}{i}".encode())
    cold, _ = await run(tmp_path / "c", root)
    warm, _ = await run(tmp_path / "c", root)
    assert warm == cold
    change(root)
    changed, _ = await run(tmp_path / "c", root)
    again, d = await run(tmp_path / "c", root)
    async with Digester(cache=False) as fresh:
        expected = (await fresh.digest(root)).hex
    assert changed == again == expected != cold
    assert d.stats.files_hashed == 0


async def test_digest_tree_uses_file_entries_from_the_cache(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    for i in range(10):
        (root / f"f{i}").write_bytes(bytes([i]))
    cold, _ = await run(tmp_path / "c", root)
    async with Digester(cache_dir=tmp_path / "c") as d:
        warm, files = await d.digest_tree(root)
    assert warm.hex == cold
    assert d.stats.files_hashed == 0 and d.stats.files_cached == 10
    assert [f.digest.hex for f in files] == [b3hex(bytes([i])) for i in range(10)]
    # Their stats came from the warm lookup, not from a hash of each file.
    stats = [(root / f"f{i}").stat() for i in range(10)]
    assert [(f.size, f.mtime_ns) for f in files] == [(1, st.st_mtime_ns) for st in stats]


async def test_corrupt_cache_warns_and_rebuilds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"content")
    cache = tmp_path / "c"
    cache.mkdir()
    (cache / CACHE_FILE).write_bytes(b"this is not a database" * 100)
    caplog.set_level(logging.WARNING, logger="tesengine.digest")
    got, _ = await run(cache, f)
    assert got == b3hex(b"content")
    assert "unreadable" in caplog.text and "rebuilding" in caplog.text
    _, d = await run(cache, f)  # the rebuilt cache works
    assert d.stats.files_cached == 1


async def test_unusable_cache_dir_warns_and_carries_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"content")
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    caplog.set_level(logging.WARNING, logger="tesengine.digest")
    got, d = await run(blocker / "cache", f)
    assert got == b3hex(b"content")
    assert "disabled" in caplog.text
    assert d.stats.files_hashed == 1


async def test_cache_disabled_writes_nothing(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"content")
    async with Digester(cache=False, cache_dir=tmp_path / "c") as d:
        await d.digest(f)
        await d.digest(f)
    assert d.stats.files_hashed == 2
    assert not (tmp_path / "c").exists()


_WORKER = """
import asyncio, sys
from pathlib import Path
from tesengine.digest import Digester

async def main():
    async with Digester(cache_dir=Path(sys.argv[1]), threads=2) as d:
        for _ in range(3):
            print((await d.digest(sys.argv[2])).hex)

asyncio.run(main())
"""


def test_processes_share_one_cache(tmp_path: Path) -> None:
    trees = []
    for t in range(2):
        root = tmp_path / f"tree{t}"
        root.mkdir()
        for i in range(300):
            (root / f"f{i}").write_bytes(f"{t}-{i}".encode())
        trees.append(root)
    cache = tmp_path / "c"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(cache), str(trees[n % 2])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outputs]
    assert all("WARNING" not in err for _, err in outputs)
    per_tree = [{out for out, _ in outputs[n::2]} for n in range(2)]
    assert all(len(s) == 1 for s in per_tree)
    with sqlite3.connect(cache / CACHE_FILE) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        # A tree's files are kept in one row per directory.
        assert conn.execute("SELECT count(*) FROM files").fetchone() == (0,)
        rows = conn.execute("SELECT names FROM dirs").fetchall()
        assert sorted(len(names.split(b"\0")) for (names,) in rows) == [300, 300]


async def test_from_config_uses_threads_and_cache_dir(tmp_path: Path) -> None:
    from tesengine.config import BackendConfig

    config = BackendConfig(
        type="tes",
        url="http://127.0.0.1:1",
        inputs="file:///tmp/in",
        outputs="file:///tmp/out",
        digest_threads=3,
        cache_dir=tmp_path / "configured",
    )
    (tmp_path / "f").write_bytes(b"x")
    async with Digester.from_config(config) as d:
        assert d.threads == 3
        await d.digest(tmp_path / "f")
    assert (tmp_path / "configured" / CACHE_FILE).is_file()


async def test_old_rows_are_pruned_when_due(tmp_path: Path) -> None:
    from tesengine.digest.cache import MAX_AGE

    old, new = tmp_path / "old", tmp_path / "new"
    old.write_bytes(b"old")
    new.write_bytes(b"new")
    await run(tmp_path / "c", old)
    await run(tmp_path / "c", new)
    db = tmp_path / "c" / CACHE_FILE
    with sqlite3.connect(db) as conn:  # age one row, and make a prune due
        conn.execute(
            "UPDATE files SET stored = stored - ? WHERE ino = ?", (MAX_AGE + 5, old.stat().st_ino)
        )
        conn.execute("UPDATE meta SET value = 0 WHERE key = 'pruned'")
    _, d_old = await run(tmp_path / "c", old)
    _, d_new = await run(tmp_path / "c", new)
    assert (d_old.stats.files_hashed, d_new.stats.files_hashed) == (1, 0)


async def test_cache_of_another_schema_version_is_rebuilt(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    cache.mkdir()
    with sqlite3.connect(cache / CACHE_FILE) as conn:  # an older layout, version 0
        conn.execute("CREATE TABLE files (dev, ino, hex)")
        conn.execute("INSERT INTO files VALUES (1, 2, 'x')")
    f = tmp_path / "f"
    f.write_bytes(b"content")
    got, _ = await run(cache, f)
    again, d = await run(cache, f)
    assert got == again == b3hex(b"content")
    assert d.stats.files_cached == 1
    with sqlite3.connect(cache / CACHE_FILE) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def _stats(inos: list[int], dev: int = 7) -> list[FileStat]:
    return [
        FileStat(dev, ino, 100 + ino % 7, 10**18 + ino % 999, 10**18 + ino % 997) for ino in inos
    ]


@pytest.mark.parametrize(
    "inos",
    [
        list(range(1000, 1300)),  # dense: read as one inode range
        [1000 + 10**6 * i for i in range(300)],  # sparse: looked up key by key
        [(1 << 64) - 1 - i for i in range(50)],  # inodes with the top bit set
    ],
    ids=["dense", "sparse", "top-bit"],
)
def test_lookup_needs_all_five_fields_to_match(tmp_path: Path, inos: list[int]) -> None:
    cache = DigestCache(tmp_path)
    stats = _stats(inos)
    cache.store_files((s, f"{i:064x}") for i, s in enumerate(stats))
    assert cache.lookup_files(stats) == [f"{i:064x}" for i in range(len(stats))]
    changed = [
        s._replace(**{field: getattr(s, field) + 1})
        for s, field in zip(stats, FileStat._fields * len(stats), strict=False)
    ]
    assert cache.lookup_files(changed) == [None] * len(stats)
    mixed = [changed[0], stats[1], *_stats([inos[2]], dev=8), stats[3]]
    assert cache.lookup_files(mixed) == [None, f"{1:064x}", None, f"{3:064x}"]
    cache.close()


@pytest.mark.parametrize("field", FileStat._fields)
async def test_a_warm_directory_row_misses_a_change_in_any_one_field(
    tmp_path: Path, field: str
) -> None:
    # On disk no change moves one field alone (a rewrite moves ctime too), so
    # the real stats of a warm directory are read back with one field moved.
    root = tmp_path / "tree"
    root.mkdir()
    names = [f"f{i}" for i in range(4)]
    for name in names:
        (root / name).write_bytes(name.encode())
    await run(tmp_path / "c", root)
    st = root.stat()
    stats = [FileStat.of((root / n).stat()) for n in names]
    cache = DigestCache(tmp_path / "c")
    try:
        hexes, exact, digest = cache.lookup_dir((st.st_dev, st.st_ino), names, stats, b"")
        assert exact and digest is not None
        assert hexes == [b3hex(n.encode()) for n in names]
        moved = [*stats[:2], stats[2]._replace(**{field: getattr(stats[2], field) + 1}), stats[3]]
        found, exact, digest = cache.lookup_dir((st.st_dev, st.st_ino), names, moved, b"")
    finally:
        cache.close()
    assert found == [hexes[0], hexes[1], None, hexes[3]]
    assert (exact, digest) == (False, None)
