"""Content addresses: the digest values and Sprocket's directory scheme (pure, no I/O).

A tesengine user and a Sprocket user who share an inputs bucket must dedupe
each other's uploads, so every byte below is Sprocket's, not a choice of ours.
Changing any of it silently splits the bucket into two worlds.

File
    BLAKE3 (32 bytes) of the file's content. Key ``file/<hex>``.

Directory
    BLAKE3 over the directory's entries, sorted by the UTF-8 bytes of their
    names. That is code-point order (``"Z" < "a" < "z" < "é"``), which is
    neither locale collation nor UTF-16 order: ``"\uff21"`` (fullwidth A)
    sorts before ``"\U0001f600"`` here but after it in Java or JavaScript.
    Each entry contributes::

        u32 LE  len(name_utf8)
        bytes   name_utf8                # the name within this directory
        u8      kind                     # 0 = file, 1 = directory
        u32 LE  32                       # digest length
        bytes   digest[32]               # the child's digest, recursively

    then, after all entries, ``u32 LE`` the number of entries hashed.
    Symlinks are followed (an entry has the kind of its target); a broken
    symlink is skipped and not counted; a name that is not valid UTF-8 is an
    error. The empty directory is therefore ``BLAKE3(00 00 00 00)``.
    Key ``directory/<hex>``; its files are uploaded under
    ``directory/<hex>/<relative path>``.

Hex is always 64 lowercase characters.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from blake3 import blake3

__all__ = [
    "EMPTY_DIRECTORY",
    "Digest",
    "DigestKind",
    "FileEntry",
    "directory_digest",
    "directory_digest_of",
    "directory_preimage",
    "sort_key",
]

DigestKind = Literal["file", "directory"]

_KIND_BYTE: dict[str, bytes] = {"file": b"\x00", "directory": b"\x01"}
_U32 = struct.Struct("<I")
_DIGEST_LEN = _U32.pack(32)
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class Digest:
    """The content address of a file or a directory."""

    kind: DigestKind
    hex: str

    def __post_init__(self) -> None:
        if self.kind not in _KIND_BYTE:
            raise ValueError(f"digest kind must be 'file' or 'directory', got {self.kind!r}")
        if len(self.hex) != 64 or not _HEX.issuperset(self.hex):
            raise ValueError(f"digest hex must be 64 lowercase hex characters, got {self.hex!r}")

    @property
    def key(self) -> str:
        """``file/<hex>`` or ``directory/<hex>``: the object key under ``inputs``."""
        return f"{self.kind}/{self.hex}"

    @property
    def raw(self) -> bytes:
        """The 32 digest bytes."""
        return bytes.fromhex(self.hex)

    def __str__(self) -> str:
        return self.key

    @classmethod
    def _trusted(cls, kind: DigestKind, hex_: str) -> Digest:
        # For blake3's own hexdigest() output: skips the checks, once per file.
        digest = object.__new__(cls)
        object.__setattr__(digest, "kind", kind)
        object.__setattr__(digest, "hex", hex_)
        return digest


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One regular file inside a hashed directory.

    ``size`` and ``mtime_ns`` are the file's stat when it was hashed, so a
    stager can notice that it changed before uploading it.
    """

    relpath: str
    path: Path
    digest: Digest
    size: int
    mtime_ns: int


def sort_key(name: str) -> bytes:
    """Sprocket's entry order: the UTF-8 bytes of the name.

    Raises :class:`UnicodeEncodeError` for names that are not valid UTF-8 on
    disk (Python decodes those to lone surrogates).
    """
    return name.encode("utf-8")


def directory_preimage(entries: Iterable[tuple[str, Digest]]) -> bytes:
    """The exact bytes that are hashed for a directory with ``entries``.

    ``entries`` are (name, child digest) pairs of the entries that count
    (broken symlinks already left out); the order given does not matter.
    """
    return _preimage((name, child.kind, child.hex) for name, child in entries)


def _preimage(entries: Iterable[tuple[str, DigestKind, str]]) -> bytes:
    # Names are unique within a directory, so the tuples sort by name bytes alone.
    encoded = sorted((sort_key(name), _KIND_BYTE[kind], hex_) for name, kind, hex_ in entries)
    parts: list[bytes] = []
    for name, kind, hex_ in encoded:
        parts += (_U32.pack(len(name)), name, kind, _DIGEST_LEN, bytes.fromhex(hex_))
    parts.append(_U32.pack(len(encoded)))
    return b"".join(parts)


def directory_digest(entries: Iterable[tuple[str, Digest]]) -> Digest:
    """The digest of a directory whose counted entries are ``entries``."""
    return Digest("directory", blake3(directory_preimage(entries)).hexdigest())


def directory_digest_of(entries: Iterable[tuple[str, DigestKind, str]]) -> Digest:
    """:func:`directory_digest` from (name, kind, hex) triples (no :class:`Digest` per file)."""
    return Digest("directory", blake3(_preimage(entries)).hexdigest())


#: ``BLAKE3(00 00 00 00)``: the digest of an empty directory.
EMPTY_DIRECTORY = directory_digest(())
