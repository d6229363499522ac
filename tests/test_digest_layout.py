"""Known-answer tests for Sprocket's directory scheme, derived by hand.

Every expected digest is built here from DESIGN.md's byte layout with blake3
directly (never with tesengine's own helpers), so a change to the layout code
cannot change what the tests expect.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from blake3 import blake3

from tesengine.digest import EMPTY_DIRECTORY, Digest, Digester, directory_digest
from tesengine.digest.layout import directory_preimage


def b3(data: bytes) -> bytes:
    return blake3(data).digest()


def entry(name: str, kind: int, child: bytes) -> bytes:
    """u32 LE name length, UTF-8 name, kind byte, u32 LE 32, 32 digest bytes."""
    raw = name.encode("utf-8")
    return len(raw).to_bytes(4, "little") + raw + bytes([kind]) + b"\x20\0\0\0" + child


def directory(*entries: bytes) -> bytes:
    """Entries in the order given (the test states the order), then u32 LE count."""
    return b3(b"".join(entries) + len(entries).to_bytes(4, "little"))


FILE, DIR = 0, 1


@pytest.fixture
async def digester(tmp_path: Path) -> AsyncIterator[Digester]:
    async with Digester(cache_dir=tmp_path / "cache", threads=2) as d:
        yield d


def test_empty_directory_is_blake3_of_four_zero_bytes() -> None:
    expected = b3(b"\0\0\0\0").hex()
    assert Digest("directory", expected) == EMPTY_DIRECTORY
    # `printf '\0\0\0\0' | b3sum`; BLAKE3 of no bytes at all (af1349b9...) would be wrong.
    assert expected == "ec2bd03bf86b935fa34d71ad7ebb049f1f10f87d343e521511d8f9e6625620cd"


def test_published_file_vectors() -> None:
    # BLAKE3 of b"x" and b"hello world!" as quoted in Sprocket's own tests.
    assert b3(b"x").hex() == "3ae7d805f6789a6402acb70ad4096a85a56bf6804eaf25c0493ac697548d30b5"
    assert b3(b"hello world!").hex() == (
        "3aa61c409fd7717c9d9c639202af2fae470c0ef669be7ba2caea5779cb534e9d"
    )


def test_preimage_bytes_written_out() -> None:
    child = Digest("file", "11" * 32)
    sub = Digest("directory", "22" * 32)
    got = directory_preimage([("sub", sub), ("a", child)])
    assert got == (
        b"\x01\x00\x00\x00" + b"a" + b"\x00" + b"\x20\x00\x00\x00" + b"\x11" * 32
        + b"\x03\x00\x00\x00" + b"sub" + b"\x01" + b"\x20\x00\x00\x00" + b"\x22" * 32
        + b"\x02\x00\x00\x00"
    )  # fmt: skip
    assert directory_digest([("a", child), ("sub", sub)]).hex == b3(got).hex()


def test_digest_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="64 lowercase hex"):
        Digest("file", "AB" * 32)
    with pytest.raises(ValueError, match="kind"):
        Digest("blob", "ab" * 32)  # type: ignore[arg-type]
    assert Digest("file", "ab" * 32).key == "file/" + "ab" * 32


async def test_nested_directories(tmp_path: Path, digester: Digester) -> None:
    root = tmp_path / "in"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "sub" / "empty").mkdir()
    (root / "top.txt").write_bytes(b"top")
    (root / "sub" / "b.txt").write_bytes(b"bee")
    (root / "sub" / "deeper" / "c").write_bytes(b"")

    deeper = directory(entry("c", FILE, b3(b"")))
    empty = directory()
    sub = directory(
        entry("b.txt", FILE, b3(b"bee")),
        entry("deeper", DIR, deeper),
        entry("empty", DIR, empty),
    )
    expected = directory(entry("sub", DIR, sub), entry("top.txt", FILE, b3(b"top")))

    assert await digester.digest(root) == Digest("directory", expected.hex())
    assert await digester.digest(root / "sub" / "empty") == Digest("directory", empty.hex())


async def test_symlinks_are_followed_and_broken_ones_skipped(
    tmp_path: Path, digester: Digester
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "t").write_bytes(b"tee")
    root = tmp_path / "in"
    root.mkdir()
    (root / "real").write_bytes(b"real")
    (root / "to_file").symlink_to(root / "real")
    (root / "to_dir").symlink_to(target, target_is_directory=True)
    (root / "broken").symlink_to(tmp_path / "nowhere")

    target_digest = directory(entry("t", FILE, b3(b"tee")))
    expected = directory(  # "broken" is neither hashed nor counted: 3 entries
        entry("real", FILE, b3(b"real")),
        entry("to_dir", DIR, target_digest),
        entry("to_file", FILE, b3(b"real")),
    )
    digest, files = await digester.digest_tree(root)
    assert digest.hex == expected.hex()
    assert [f.relpath for f in files] == ["real", "to_dir/t", "to_file"]
    assert files[2].digest == Digest("file", b3(b"real").hex())


async def test_unicode_names_hash_their_utf8_bytes(tmp_path: Path, digester: Digester) -> None:
    root = tmp_path / "in"
    root.mkdir()
    names = ["café.txt", "日本語", "😀"]
    for name in names:
        (root / name).write_bytes(name.encode())
    expected = directory(*(entry(n, FILE, b3(n.encode())) for n in names))
    assert (await digester.digest(root)).hex == expected.hex()


async def test_entries_sort_by_utf8_bytes(tmp_path: Path, digester: Digester) -> None:
    root = tmp_path / "in"
    root.mkdir()
    # Byte order, written out: uppercase before lowercase, "a" before "a.txt"
    # before "a0" ("." is 0x2e, "0" 0x30), U+FF21 (ef bc a1) before U+1F600 (f0 9f 98 80).
    in_byte_order = ["B", "a", "a.txt", "a0", "b", "\uff21", "\U0001f600"]
    # Orders other tools use put these differently, so the vector discriminates.
    assert sorted(in_byte_order, key=str.casefold) != in_byte_order
    assert sorted(in_byte_order, key=lambda n: n.encode("utf-16-be")) != in_byte_order
    for name in reversed(in_byte_order):
        (root / name).write_bytes(b"same")
    expected = directory(*(entry(n, FILE, b3(b"same")) for n in in_byte_order))
    assert (await digester.digest(root)).hex == expected.hex()


async def test_directory_and_file_kinds_differ(tmp_path: Path, digester: Digester) -> None:
    # A file whose content equals an empty directory's pre-image still has kind "file".
    root = tmp_path / "in"
    root.mkdir()
    (root / "x").write_bytes(b"\0\0\0\0")
    digest = await digester.digest(root / "x")
    assert digest == Digest("file", EMPTY_DIRECTORY.hex)
    assert digest.key.startswith("file/")
    assert (await digester.digest(root)).hex == directory(entry("x", FILE, b3(b"\0" * 4))).hex()


def test_non_utf8_name_is_rejected_by_the_layout() -> None:
    bad = os.fsdecode(b"bad\xff")
    with pytest.raises(UnicodeEncodeError):
        directory_digest([(bad, EMPTY_DIRECTORY)])
