"""Walking a directory into a tree (blocking; runs in a pool thread).

The walk applies Sprocket's rules (symlinks followed, broken symlinks
skipped) and checks what Sprocket does not: a symlink that leads back to an
ancestor (a loop), a name that is not UTF-8, and FIFOs, sockets or devices
are errors naming the path, found before a single byte is hashed.

Regular files are recognised by the directory entry's type, without a stat
call: their stat is taken later, in parallel, by the worker that hashes or
looks them up, which is where most of the time of a large tree goes.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import compress, filterfalse
from operator import attrgetter, methodcaller

from ..errors import DigestError
from .filehash import FileStat, describe_path, file_stats, kind_of
from .layout import Digest, DigestKind, directory_digest_of

__all__ = [
    "DirNode",
    "FileNode",
    "combine",
    "fill_stats",
    "iter_dirs",
    "iter_files",
    "reuse_digests",
    "scan",
    "stat_path",
]


@dataclass(slots=True, eq=False)
class FileNode:
    """A regular file found by the walk; ``stat`` and ``hex`` are filled in later.

    The digest is kept as its hex, not a :class:`Digest`: a tree has one
    node per file, and the object is only needed for the few handed out.
    """

    name: str
    path: str
    stat: FileStat | None = None
    hex: str | None = None
    cached: bool = False


@dataclass(slots=True, eq=False)
class DirNode:
    """A directory found by the walk, with its counted entries."""

    name: str
    path: str
    files: list[FileNode] = field(default_factory=list)
    dirs: list[DirNode] = field(default_factory=list)
    digest: Digest | None = None
    #: (device, inode) of the directory: where the cache keeps its files' digests.
    key: tuple[int, int] = (0, 0)
    #: The cache's row for this directory matched every file.
    current: bool = False
    #: The directory digest in that row, if its subdirectories' names matched too.
    cached_hex: str | None = None
    #: The files' stats when the row matched: their :class:`FileStat` is built on demand.
    raw_stats: list[os.stat_result] | None = None


def fill_stats(node: DirNode) -> None:
    """Give each file of ``node`` its :class:`FileStat`, if the cache lookup left it raw."""
    if node.raw_stats is not None:
        for f, s in zip(node.files, file_stats(node.raw_stats), strict=True):
            f.stat = s
        node.raw_stats = None


_NAME = attrgetter("name")
_PATH = attrgetter("path")
_IS_FILE = methodcaller("is_file", follow_symlinks=False)


def stat_path(path: str) -> os.stat_result:
    """``os.stat`` (following symlinks) with errors that name the path."""
    try:
        return os.stat(path)
    except OSError as exc:
        raise _walk_error(path, exc) from exc


def scan(root: str) -> DirNode:
    """Walk the directory ``root``."""
    st = stat_path(root)
    if not stat.S_ISDIR(st.st_mode):
        raise DigestError(f"{describe_path(root)}: not a directory", path=root)
    try:
        key = (st.st_dev, st.st_ino)
        node = _scan_dir(root, "", key, {key})
    except RecursionError:
        raise DigestError(f"{describe_path(root)}: directory tree too deep", path=root) from None
    return node


def _scan_dir(
    path: str, name: str, key: tuple[int, int], ancestors: set[tuple[int, int]]
) -> DirNode:
    node = DirNode(name, path, key=key)
    try:
        with os.scandir(path) as entries:
            found = list(entries)
    except OSError as exc:
        raise _walk_error(path, exc) from exc
    try:
        "".join(map(_NAME, found)).encode("utf-8")  # what sort_key() does, once per directory
    except UnicodeEncodeError:
        raise _bad_name(next(e for e in found if not _utf8(e.name))) from None
    regular = list(map(_IS_FILE, found))  # from the entry's type: no stat call
    # The usual directory: C-level passes, no Python step per file.
    node.files = list(
        map(FileNode, map(_NAME, compress(found, regular)), map(_PATH, compress(found, regular)))
    )
    if all(regular):
        return node
    for entry in filterfalse(_IS_FILE, found):
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


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
        return _scan_dir(entry.path, entry.name, key, ancestors)
    finally:
        ancestors.discard(key)


def _bad_name(entry: os.DirEntry[str]) -> DigestError:
    shown = describe_path(entry.path)
    return DigestError(f"{shown}: file name is not valid UTF-8", path=entry.path)


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


def reuse_digests(node: DirNode) -> bool:
    """Take each directory's cached digest where it still holds; whether ``node``'s did.

    It holds when the directory's files all matched its cache row, its
    subdirectories have the names they had, and each of their digests holds.
    """
    held = [reuse_digests(d) for d in node.dirs]  # every one, not up to the first miss
    if all(held) and node.current and node.cached_hex is not None:
        node.digest = Digest("directory", node.cached_hex)
        return True
    return False


def combine(node: DirNode) -> Digest:
    """The directory digest of ``node``, once every file below has its digest."""
    if node.digest is None:
        entries: list[tuple[str, DigestKind, str]]
        entries = [(f.name, "file", _known(f)) for f in node.files]
        entries += [(d.name, "directory", combine(d).hex) for d in node.dirs]
        node.digest = directory_digest_of(entries)
    return node.digest


def _known(node: FileNode) -> str:
    assert node.hex is not None, f"{node.path} was never hashed"
    return node.hex


def iter_files(node: DirNode, prefix: str = "") -> Iterator[tuple[str, FileNode]]:
    """Every file below ``node`` with its POSIX relative path."""
    for f in node.files:
        yield prefix + f.name, f
    for d in node.dirs:
        yield from iter_files(d, f"{prefix}{d.name}/")


def iter_dirs(node: DirNode) -> Iterator[DirNode]:
    """``node`` and every directory below it."""
    yield node
    for d in node.dirs:
        yield from iter_dirs(d)
