"""How a directory's files are kept in one digest-cache row, and matched again.

A row holds a directory's file names (NUL-separated UTF-8), the five stat
fields of each file (packed signed 64-bit integers), the 64-character hex of
each file, the names of its subdirectories and the directory's own hex. These
functions only encode, decode and compare rows; :mod:`.cache` stores them.
A row read back may be corrupt, so every decoder returns None rather than
raising.
"""

from __future__ import annotations

import binascii
from array import array
from collections.abc import Iterable, Sequence
from itertools import chain

from .filehash import FileStat

__all__ = [
    "DirRow",
    "StoredRow",
    "all_hex",
    "match_row",
    "pack_row",
    "row_digest",
    "same_row",
    "subdir_names",
    "unpack_row",
]


def all_hex(text: object) -> bool:
    """Whether a column read back is lowercase hex text (a corrupt row may hold anything).

    Decoding and re-encoding runs in C: a frozenset's issuperset() of a
    directory's 12,800 hex characters cost more than its stats when warm.
    """
    if not isinstance(text, str):
        return False
    try:
        return binascii.unhexlify(text).hex() == text
    except (binascii.Error, ValueError):
        return False


#: (key, file names, their stats, their hexes, :func:`subdir_names`, directory hex)
DirRow = tuple[tuple[int, int], Sequence[str], Sequence[FileStat], Sequence[str], bytes, str]


def subdir_names(names: Iterable[str]) -> bytes:
    """The names of a directory's subdirectories, as a row keeps them."""
    return _joined(sorted(names))


def _joined(names: Iterable[str]) -> bytes:
    # NUL never occurs in a file name, so it separates them.
    return "\0".join(names).encode("utf-8")


def _split_hexes(hexes: str) -> list[str]:
    """A row's hex column, one 64-character digest per file."""
    return [hexes[i : i + 64] for i in range(0, len(hexes), 64)]


def pack_row(
    names: Sequence[str], stats: Sequence[FileStat], hexes: Sequence[str]
) -> tuple[bytes, bytes, str] | None:
    """The names, stats and hexes columns of a row; None if a stat field overflows 64 bits."""
    try:
        packed = array("q", chain.from_iterable(stats)).tobytes()
    except OverflowError:
        return None
    return _joined(names), packed, "".join(hexes)


def unpack_row(
    names: bytes, stats: bytes, hexes: str
) -> tuple[list[str], list[tuple[int, ...]], list[str]] | None:
    """Names, stat fields and hexes of a directory row; None if it does not parse."""
    try:
        listed = names.decode("utf-8").split("\0")
        values = array("q", stats)
    except (ValueError, UnicodeDecodeError, TypeError):
        return None
    count = len(listed)
    if len(values) != 5 * count or len(hexes) != 64 * count or not all_hex(hexes):
        return None
    it = iter(values)
    fields: list[tuple[int, ...]] = list(zip(it, it, it, it, it, strict=True))
    return listed, fields, _split_hexes(hexes)


#: A row as read back: (names, stats, hexes, subdirs, digest) columns, unchecked.
StoredRow = tuple[bytes, bytes, str, bytes, str]


def same_row(row: StoredRow, names: Sequence[str], fields: Sequence[int]) -> list[str] | None:
    """The hexes of a row that holds exactly ``names`` with exactly ``fields``, or None.

    ``fields`` are the five stat fields of every file, flat (see
    :func:`.filehash.stat_fields`). The warm case: the names, and all five
    fields of every file, each compared in one C-level comparison, not a
    Python step per file.
    """
    stored_names, stored_stats, hexes = row[0], row[1], row[2]
    if stored_names != _joined(names):
        return None
    try:
        # tolist() runs in C; packing the live stats measured twice as slow
        if array("q", stored_stats).tolist() != fields:
            return None
    except (ValueError, TypeError):
        return None
    if len(hexes) != 64 * len(names) or not all_hex(hexes):
        return None
    return _split_hexes(hexes)


def row_digest(row: StoredRow, subdirs: bytes) -> str | None:
    """The directory digest of an exactly matched row, if its subdirectories are ``subdirs``."""
    stored = row[4]
    return stored if row[3] == subdirs and len(stored) == 64 and all_hex(stored) else None


def match_row(
    row: tuple[list[str], list[tuple[int, ...]], list[str]],
    names: Sequence[str],
    stats: Sequence[FileStat],
) -> list[str | None]:
    """Each file's hex from ``row`` where all five stat fields match."""
    listed, fields, hexes = row
    if listed == names:  # the usual case: the same files, listed in the same order
        return [h if f == s else None for f, s, h in zip(fields, stats, hexes, strict=True)]
    table = dict(zip(listed, zip(fields, hexes, strict=True), strict=True))
    get = table.get
    return [
        None if (e := get(n)) is None or e[0] != s else e[1]
        for n, s in zip(names, stats, strict=True)
    ]
