"""Fetching inputs the server reads on a task's behalf, without being turned against itself.

- :func:`fetch_http` downloads a plain http(s) URL with aiohttp, resolving
  every host through a resolver that refuses non-public addresses (so the
  address checked is the address connected to: no DNS rebinding between
  check and use) and following redirects itself, checking each hop.
- :func:`copy_local_file` and :func:`copy_local_tree` copy ``file://``
  inputs: nothing is followed out of the allowed directories (each file is
  opened without following a final symlink, then the kernel's name for the
  open file is checked), and only regular files are read (a FIFO cannot
  block the server).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from .access import AllowedDirs, address_problem, url_host_problem

__all__ = ["FetchRefused", "copy_local_file", "copy_local_tree", "fetch_http", "resolve_check"]

MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 1024 * 1024
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)


class FetchRefused(Exception):
    """A URL or file the server will not read for a task; the message says why."""


class _GuardedResolver(AbstractResolver):
    """The default resolver, refusing any name with a non-public address."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            kind = address_problem(ipaddress.ip_address(result["host"]))
            if kind:
                # errno + text: aiohttp shows strerror in its connection error.
                raise OSError(errno.EACCES, f"{host} resolves to {result['host']}, {kind}")
        return results

    async def close(self) -> None:
        await self._inner.close()


async def resolve_check(host: str) -> str | None:
    """The problem with ``host`` after DNS resolution (None when every address is public)."""
    resolver = _GuardedResolver()
    try:
        await resolver.resolve(host, 0, socket.AF_UNSPEC)
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        await resolver.close()
    return None


async def fetch_http(url: str, dest: Path, *, allow_private: bool) -> None:
    """Download ``url`` to ``dest``; :class:`FetchRefused` or ``OSError``/aiohttp errors."""
    connector = aiohttp.TCPConnector(
        resolver=None if allow_private else _GuardedResolver(), use_dns_cache=False
    )
    async with aiohttp.ClientSession(
        connector=connector, timeout=_TIMEOUT, trust_env=False
    ) as session:
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            _check_hop(current, allow_private)
            async with session.get(current, allow_redirects=False) as resp:
                if resp.status in _REDIRECTS and "Location" in resp.headers:
                    current = urljoin(current, resp.headers["Location"])
                    continue
                if resp.status >= 400:
                    raise FetchRefused(f"HTTP {resp.status} {resp.reason or ''}".rstrip())
                await _save(resp, dest)
                return
    raise FetchRefused(f"more than {MAX_REDIRECTS} redirects")


def _check_hop(url: str, allow_private: bool) -> None:
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise FetchRefused(f"redirected to a non-http URL ({url.split(':', 1)[0]}:)")
    if not allow_private and (problem := url_host_problem(url)):
        raise FetchRefused(f"{problem}; this server fetches only public addresses")


async def _save(resp: aiohttp.ClientResponse, dest: Path) -> None:
    out = await asyncio.to_thread(dest.open, "wb")
    try:
        async for chunk in resp.content.iter_chunked(_CHUNK):
            await asyncio.to_thread(out.write, chunk)
    finally:
        await asyncio.to_thread(out.close)


# -- local files ---------------------------------------------------------------


@dataclass(slots=True)
class TreeCopy:
    """What :func:`copy_local_tree` did: files copied, entries skipped (with why)."""

    allowed: AllowedDirs
    files: int = 0
    skipped: list[str] = field(default_factory=list)
    seen: set[Path] = field(default_factory=set)


def _open_checked(path: Path, allowed: AllowedDirs) -> int:
    """An fd for the regular file ``path``, which must really lie in ``allowed``."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FetchRefused(f"{path} is a symbolic link") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FetchRefused(f"{path} is not a regular file")
        # The kernel's name for what was opened: a component swapped for a
        # symlink after the check cannot take us out of the allowed roots.
        real = _fd_path(fd)
        if real is not None and not allowed.contains(real):
            raise FetchRefused(f"{path} is outside the directories this server may access")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _fd_path(fd: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None  # no /proc: the realpath check before the open stands


def copy_local_file(src: Path, dest: Path, allowed: AllowedDirs) -> None:
    """Copy the regular file ``src`` (resolved, inside ``allowed``) to ``dest``."""
    fd = _open_checked(src, allowed)
    with os.fdopen(fd, "rb") as f, dest.open("wb") as out:
        while chunk := f.read(_CHUNK):
            out.write(chunk)


def copy_local_tree(src: Path, dest: Path, allowed: AllowedDirs) -> TreeCopy:
    """Copy the directory ``src`` to ``dest``, never leaving ``allowed``.

    Symlinks are resolved: one that stays inside the allowed roots is copied
    as what it points to; one that leaves them (or a FIFO, socket, device)
    is skipped and reported in :attr:`TreeCopy.skipped`.
    """
    walk = TreeCopy(allowed)
    _copy_dir(walk, Path(os.path.realpath(src)), dest, "")
    return walk


def _copy_dir(walk: TreeCopy, real_dir: Path, dest: Path, rel: str) -> None:
    if real_dir in walk.seen:
        walk.skipped.append(f"{rel or '.'}: a directory already copied (a link loop?)")
        return
    walk.seen.add(real_dir)
    dest.mkdir(parents=True, exist_ok=True)
    with os.scandir(real_dir) as entries:
        names = sorted(entry.name for entry in entries)
    for name in names:
        _copy_entry(walk, real_dir / name, dest / name, f"{rel}/{name}" if rel else name)


def _copy_entry(walk: TreeCopy, path: Path, dest: Path, rel: str) -> None:
    real = Path(os.path.realpath(path))
    if not walk.allowed.contains(real):
        walk.skipped.append(f"{rel}: links outside the directories this server may access")
        return
    try:
        mode = os.stat(real, follow_symlinks=False).st_mode
    except OSError as exc:
        walk.skipped.append(f"{rel}: {exc.strerror}")
        return
    if stat.S_ISDIR(mode):
        _copy_dir(walk, real, dest, rel)
        return
    if not stat.S_ISREG(mode):
        walk.skipped.append(f"{rel}: not a regular file")
        return
    try:
        copy_local_file(real, dest, walk.allowed)
    except FetchRefused as exc:
        walk.skipped.append(f"{rel}: {exc}")
        return
    walk.files += 1
