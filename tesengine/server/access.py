"""What the server may touch on a task's behalf: host directories, URLs, addresses.

A task names URLs; the server reads and writes them with its own rights. So
every URL is checked against this policy, once when the task is created
(a 400 naming the field, before anything runs) and again when it is used
(the file system and DNS may have changed in between):

- ``file://`` (and bare ``/path``) URLs must lie inside the allowed
  directories, after resolving symlinks;
- outputs must not land in a protected namespace (by default the
  ``inputs/`` area of the server's own storage, where content-addressed
  inputs live and are trusted without download);
- http(s) inputs must not reach loopback, link-local, private or
  unspecified addresses (cloud metadata endpoints live there) unless the
  server was started with ``--allow-private-urls``.

Functions here return a problem (a string) or None; callers raise the error
that fits where they are (``InvalidTask`` at POST time, ``StagingError``
while running).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import InvalidTask, StorageError, redact_url
from ..storage.urls import parse_url
from .task_doc import TaskRequestDoc

__all__ = ["AllowedDirs", "address_problem", "check_task_access", "host_problem"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class AllowedDirs:
    """The server's access policy: host directories, protected URLs, private addresses.

    ``roots`` are the host directories ``file://`` inputs and outputs may
    touch; ``protected`` are URL prefixes no output may be written under;
    ``allow_private_urls`` lets http(s) inputs reach non-public addresses.
    """

    roots: tuple[Path, ...]
    protected: tuple[str, ...] = ()
    allow_private_urls: bool = False

    @classmethod
    def of(
        cls,
        dirs: Iterable[str | Path],
        *,
        protected: Iterable[str] = (),
        allow_private_urls: bool = False,
    ) -> AllowedDirs:
        """Resolve ``dirs`` once (symlinks and all)."""
        roots = tuple(Path(os.path.realpath(d)) for d in dirs)
        return cls(roots, tuple(protected), allow_private_urls)

    def describe(self) -> str:
        """The allowed roots, for error messages."""
        return ", ".join(root.as_uri() for root in self.roots) or "none"

    def contains(self, real: Path) -> bool:
        """True when the resolved path ``real`` lies in one of the roots."""
        return any(real == root or real.is_relative_to(root) for root in self.roots)

    def local_problem(self, url: str, *, for_write: bool = False) -> str | None:
        """Why the local ``url`` may not be used (None when it may, or is not local)."""
        raw = local_raw_path(url)
        if raw is None:
            return None
        # An output need not exist yet: its parent decides where it lands.
        real = _real(raw) if not for_write else _real(str(Path(raw).parent)) / Path(raw).name
        if not self.contains(real):
            return (
                f"{redact_url(url)} is outside the directories this server may access "
                f"(allowed: {self.describe()})"
            )
        return None

    def protected_problem(self, url: str) -> str | None:
        """Why an output may not be written at ``url`` (a protected namespace), or None."""
        target = _place(url)
        if target is None:
            return None
        for prefix in self.protected:
            base = _place(prefix)
            if base is not None and _under(target, base):
                return (
                    f"{redact_url(url)} lies under {redact_url(prefix)}, where this server keeps "
                    "content-addressed inputs; outputs may not be written there"
                )
        return None


def local_raw_path(url: str) -> str | None:
    """The (unresolved) host path of a ``file://`` or ``/path`` URL, else None."""
    if url.startswith("/"):
        return url
    if url.lower().startswith("file://"):
        return unquote(urlsplit(url).path)
    return None


def _real(raw: str) -> Path:
    return Path(os.path.realpath(raw))


# A place is (provider, account, bucket, key) with file keys resolved on the host.
_Place = tuple[str, str, str, str]


def _place(url: str) -> _Place | None:
    raw = local_raw_path(url)
    if raw is not None:
        real = _real(str(Path(raw).parent)) / Path(raw).name if raw != "/" else Path("/")
        return ("file", "", "", real.as_posix().lstrip("/"))
    try:
        loc = parse_url(url)
    except StorageError:
        return None
    return (loc.provider, loc.account or "", loc.bucket, loc.key)


def _under(target: _Place, base: _Place) -> bool:
    if target[:3] != base[:3]:
        return False
    prefix = base[3].rstrip("/")
    key = target[3]
    return not prefix or key == prefix or key.startswith(prefix + "/")


def address_problem(ip: IPAddress) -> str | None:
    """What kind of non-public address ``ip`` is (``"a loopback address"``), or None."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_global and not ip.is_multicast:
        return None
    for kind in ("loopback", "link_local", "unspecified", "private", "multicast", "reserved"):
        if getattr(ip, f"is_{kind}"):
            article = "an" if kind == "unspecified" else "a"
            return f"{article} {kind.replace('_', '-')} address"
    return "not a public address"


def host_problem(host: str) -> str | None:
    """The problem with a URL host that is an IP literal or ``localhost`` (names: None)."""
    bare = host.strip("[]").split("%", 1)[0]
    if bare.lower() in ("localhost", "localhost.localdomain") or bare.lower().endswith(
        ".localhost"
    ):
        return f"{host} is a loopback address"
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        return None
    kind = address_problem(ip)
    return f"{host} is {kind}" if kind else None


def url_host_problem(url: str) -> str | None:
    """:func:`host_problem` for the host of an http(s) ``url``."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return "not a valid URL"
    if not host:
        return "the URL names no host"
    return host_problem(host)


def _is_plain_http(url: str) -> bool:
    if url.split("://", 1)[0].lower() not in ("http", "https"):
        return False
    try:
        return parse_url(url).provider == "http"
    except StorageError:
        return True


def _private_http(url: str, allowed: AllowedDirs) -> bool:
    return not allowed.allow_private_urls and _is_plain_http(url)


def check_task_access(doc: TaskRequestDoc, allowed: AllowedDirs) -> None:
    """Refuse, at create time, a task naming a URL the server can never use.

    Raises :class:`InvalidTask` naming the field (``inputs[0].url``) and
    what is allowed. DNS is not consulted here (it is at fetch time).
    """
    for field, url, problem in _problems(doc, allowed):
        raise InvalidTask(f"{field}: {problem}" if problem else f"{field}: {redact_url(url)}")


def _problems(doc: TaskRequestDoc, allowed: AllowedDirs) -> Iterator[tuple[str, str, str]]:
    for i, item in enumerate(doc.get("inputs", ())):
        if item.get("content") or "url" not in item:
            continue  # a non-empty content wins; the url is ignored
        url = item["url"]
        if problem := allowed.local_problem(url):
            yield f"inputs[{i}].url", url, problem
        elif _private_http(url, allowed) and (problem := url_host_problem(url)):
            yield f"inputs[{i}].url", url, f"{redact_url(url)}: {problem} ({PRIVATE_HINT})"
    for i, output in enumerate(doc.get("outputs", ())):
        url = output["url"]
        problem = allowed.local_problem(url, for_write=True) or allowed.protected_problem(url)
        if problem:
            yield f"outputs[{i}].url", url, problem


#: What an operator does to let tasks fetch from private addresses.
PRIVATE_HINT = "this server fetches only public addresses; see tesengine serve --allow-private-urls"
