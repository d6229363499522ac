"""Walking a directory into a tree of stats (blocking; runs in a pool thread).

The walk applies Sprocket's rules (symlinks followed, broken symlinks
skipped) and checks what Sprocket does not: a symlink that leads back to an
ancestor (a loop), a name that is not UTF-8, and FIFOs, sockets or devices
are errors naming the path, found before a single byte is hashed.

The tree also gets *stat keys*: a hash of every name, kind and file stat
below a directory. Equal stat keys mean nothing below changed (ctime cannot
be forged), so a warm cache answers a whole tree with one lookup.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from blake3 import blake3

from ..errors import DigestError
from .filehash import FileStat, describe_path, kind_of
from .layout import Digest, directory_digest, sort_key

__all__ = [
    "DirNode",
    "FileNode",
    "assign_statkeys",
    "combine",
    "iter_dirs",
    "iter_files",
    "pending_files",
    "scan",
    "stat_path",
]

_STAT = struct.Struct("<QQqqq")
_STATKEY_VERSION = b"tesengine statkey v1\x00"


@dataclass(slots=True, eq=False)
class FileNode:
    """A regular file found by the walk; ``digest`` is filled in later."""

    name: str
    path: str
    stat: FileStat
    digest: Digest | None = None
    cached: bool = False


@dataclass(slots=True, eq=False)
class DirNode:
    """A directory found by the walk, with its counted entries."""

    name: str
    path: str
    files: list[FileNode] = field(default_factory=list)
    dirs: list[DirNode] = field(default_factory=list)
    statkey: bytes = b""
    digest: Digest | None = None
    cached: bool = False


def stat_path(path: str) -> os.stat_result:
    """``os.stat`` (following symlinks) with errors that name the path."""
    try:
        return os.stat(path)
    except OSError as exc:
        raise _walk_error(path, exc) from exc


def scan(root: str) -> DirNode:
    """Walk the directory ``root`` and give every directory its stat key."""
    st = stat_path(root)
    if not stat.S_ISDIR(st.st_mode):
        raise DigestError(f"{describe_path(root)}: not a directory", path=root)
    try:
        node = _scan_dir(root, "", {(st.st_dev, st.st_ino)})
    except RecursionError:
        raise DigestError(f"{describe_path(root)}: directory tree too deep", path=root) from None
    assign_statkeys(node)
    return node


def _scan_dir(path: str, name: str, ancestors: set[tuple[int, int]]) -> DirNode:
    node = DirNode(name, path)
    try:
        with os.scandir(path) as entries:
            found = list(entries)
    except OSError as exc:
        raise _walk_error(path, exc) from exc
    for entry in found:
        _check_name(entry)
        st = _entry_stat(entry)
        if st is None:
            continue  # a broken symlink: skipped and not counted, as Sprocket does
        if stat.S_ISREG(st.st_mode):
            node.files.append(FileNode(entry.name, entry.path, FileStat.of(st)))
        elif stat.S_ISDIR(st.st_mode):
            node.dirs.append(_scan_child(entry, st, ancestors))
        else:
            raise DigestError(
                f"{describe_path(entry.path)}: cannot hash {kind_of(st.st_mode)};"
                " only regular files and directories can be inputs",
                path=entry.path,
            )
    return node


def _scan_child(
    entry: os.DirEntry[str], st: os.stat_result, ancestors: set[tuple[int, int]]
) -> DirNode:
    key = (st.st_dev, st.st_ino)
    if key in ancestors:
        raise DigestError(
            f"{describe_path(entry.path)}: symlink loop (leads back to a parent directory)",
            path=entry.path,
        )
    ancestors.add(key)
    try:
        return _scan_dir(entry.path, entry.name, ancestors)
    finally:
        ancestors.discard(key)


def _check_name(entry: os.DirEntry[str]) -> None:
    try:
        sort_key(entry.name)
    except UnicodeEncodeError:
        raise DigestError(
            f"{describe_path(entry.path)}: file name is not valid UTF-8", path=entry.path
        ) from None


def _entry_stat(entry: os.DirEntry[str]) -> os.stat_result | None:
    try:
        return entry.stat()
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR) and entry.is_symlink():
            return None
        raise _walk_error(entry.path, exc) from exc


def _walk_error(path: str, exc: OSError) -> DigestError:
    shown = describe_path(path)
    if exc.errno == errno.ELOOP:
        return DigestError(f"{shown}: symlink loop", path=path)
    if exc.errno == errno.ENOENT:
        return DigestError(f"{shown}: no such file or directory", path=path)
    return DigestError(f"{shown}: {exc.strerror or exc}", path=path)


def assign_statkeys(node: DirNode) -> bytes:
    """Give ``node`` and every directory below it its stat key; return the root's."""
    parts: list[tuple[bytes, bytes]] = []
    for f in node.files:
        s = f.stat
        record = _STAT.pack(s.dev, s.ino, s.size, s.mtime_ns, s.ctime_ns)
        parts.append((sort_key(f.name), b"\x00" + record))
    parts.extend((sort_key(d.name), b"\x01" + assign_statkeys(d)) for d in node.dirs)
    parts.sort()
    hasher = blake3(_STATKEY_VERSION)
    for name, record in parts:
        hasher.update(len(name).to_bytes(4, "little") + name + record)
    node.statkey = hasher.digest()
    return node.statkey


def combine(node: DirNode) -> Digest:
    """The directory digest of ``node``, once every file below has its digest."""
    if node.digest is None:
        entries = [(f.name, _known(f)) for f in node.files]
        entries += [(d.name, combine(d)) for d in node.dirs]
        node.digest = directory_digest(entries)
    return node.digest


def _known(node: FileNode) -> Digest:
    assert node.digest is not None, f"{node.path} was never hashed"
    return node.digest


def iter_dirs(node: DirNode, *, cached: bool = True) -> Iterator[DirNode]:
    """``node`` and every directory below it, parents first.

    With ``cached=False`` the walk does not enter a directory whose digest
    came from the cache (it still yields that directory).
    """
    yield node
    if cached or not node.cached:
        for d in node.dirs:
            yield from iter_dirs(d, cached=cached)


def pending_files(node: DirNode) -> Iterator[FileNode]:
    """Files without a digest, outside directories whose digest is known."""
    if node.digest is not None:
        return
    yield from (f for f in node.files if f.digest is None)
    for d in node.dirs:
        yield from pending_files(d)


def iter_files(node: DirNode, prefix: str = "") -> Iterator[tuple[str, FileNode]]:
    """Every file below ``node`` with its POSIX relative path."""
    for f in node.files:
        yield prefix + f.name, f
    for d in node.dirs:
        yield from iter_files(d, f"{prefix}{d.name}/")
