"""Object URLs: :class:`Location` owns parsing, joining, relative keys, queries and redaction.

Nothing here does I/O. A URL is split into a :class:`Location` (provider,
bucket or container, key, query); the query string (an Azure SAS token, for
example) is carried along so every URL derived from a base keeps it. Code
that needs a key, a child URL or a path relative to a prefix asks the
location; nothing else slices URLs at ``?`` or ``/``.

Accepted forms (the registry :data:`SCHEMES` lists them)::

    s3://bucket/key            s3a://bucket/key
    https://s3.<region>.amazonaws.com/bucket/key   https://bucket.s3.<region>.amazonaws.com/key
    gs://bucket/key            https://storage.googleapis.com/bucket/key
    az://container/key         azure://container/key
    abfs[s]://container@account.dfs.core.windows.net/key
    https://account.blob.core.windows.net/container/key?<sas>
    file:///absolute/path      memory://name/key
    http(s)://any.host/path    (read-only)

How a key is written in a URL:

* ``http(s)`` and ``file``: percent-encoded, as URLs are.
* ``s3``, ``gs``, ``az``, ``memory``, ``abfs``: as the cloud CLIs write it
  (spaces and non-ASCII letters as they are), except that ``%``, ``?`` and
  ``#`` are written ``%25``, ``%3F`` and ``%23``, so that a key holding them
  survives a trip through a URL (a ``?`` would otherwise start the query).

Parsing decodes percent-escapes in every form; a ``%`` not followed by two
hex digits stays as it is (``s3://b/100%.txt`` is the key ``100%.txt``).

Relative paths (a directory's files, the objects under a prefix) never hold
a ``..`` segment: :func:`safe_relpath` refuses one with a
:class:`~tesengine.errors.StorageError` naming it, wherever it comes from.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from ..errors import StorageError, redact_url
from ..redact import redact_query

__all__ = [
    "SCHEMES",
    "URL_SCHEMES",
    "WRITABLE_SCHEMES",
    "Location",
    "Provider",
    "is_url",
    "join_url",
    "parse_url",
    "safe_relpath",
    "scheme_problem",
]

Provider = Literal["s3", "gs", "az", "file", "memory", "http"]

#: The registry: every URL scheme tesengine knows, and the store it names.
#: Config, task validation and staging all read it; there is no other list.
SCHEMES: Mapping[str, Provider] = MappingProxyType(
    {
        "s3": "s3",
        "s3a": "s3",
        "gs": "gs",
        "az": "az",
        "azure": "az",
        "abfs": "az",
        "abfss": "az",
        "file": "file",
        "memory": "memory",
        "http": "http",
        "https": "http",
    }
)
#: Schemes that name a remote or local object rather than a local path.
URL_SCHEMES = frozenset(SCHEMES)
#: Schemes an object can be written to (plain http(s) URLs are read-only; an
#: https URL of a known cloud host is mapped to its provider when parsed).
WRITABLE_SCHEMES = URL_SCHEMES - {"http", "https"}

_ENCODED = frozenset({"http", "https", "file"})
#: What stays unescaped in a percent-encoded path (RFC 3986 pchar, less '%').
_PATH_SAFE = "/~@!$&'()*+,;=:"
#: Bucket-style keys: only what would change the URL's meaning is escaped.
_BUCKET_ESCAPES = str.maketrans({"%": "%25", "?": "%3F", "#": "%23"})
_AZURE_HOST = re.compile(r"^(?P<account>[a-z0-9]+)\.(?:blob|dfs)\.core\.windows\.net$")
_S3_PATH_HOST = re.compile(r"^s3(?:[.-](?P<region>[a-z0-9-]+))?\.amazonaws\.com$")
_S3_VHOST = re.compile(r"^(?P<bucket>.+)\.s3(?:[.-](?P<region>[a-z0-9-]+))?\.amazonaws\.com$")
_GCS_HOSTS = frozenset({"storage.googleapis.com", "storage.cloud.google.com"})


@dataclass(frozen=True, slots=True)
class Location:
    """Where one object (or prefix) lives.

    ``bucket`` is the S3/GCS bucket, the Azure container, the memory store's
    name, ``""`` for ``file`` (keys are absolute paths without the leading
    slash) and ``scheme://host`` for plain http(s). ``key`` is decoded (the
    object's real name). ``base`` is the URL up to the bucket, used to
    rebuild URLs for other keys in the same form.
    """

    provider: Provider
    bucket: str
    key: str
    query: str
    base: str
    account: str | None = None
    region: str | None = None

    def __repr__(self) -> str:
        # The query is often a SAS token: shown with its signature hidden.
        shown = dataclasses.replace(self, query=redact_query(self.query))
        fields = ", ".join(f"{f.name}={getattr(shown, f.name)!r}" for f in dataclasses.fields(self))
        return f"Location({fields})"

    @property
    def url(self) -> str:
        """This location as a URL, in the form it was given (query kept)."""
        return self.url_for(self.key)

    @property
    def redacted(self) -> str:
        """The URL with its secrets hidden: what messages and logs show."""
        return redact_url(self.url)

    def url_for(self, key: str) -> str:
        """The URL of ``key`` in the same bucket, with this location's query."""
        scheme = self.base.partition(":")[0].lower()
        path = _encode_key(scheme, key)
        url = f"{self.base}/{path}" if path else self.base
        if self.provider == "file" and not path:
            url = self.base + "/"
        return f"{url}?{self.query}" if self.query else url

    def child(self, *parts: str) -> Location:
        """The location of ``parts`` (relative paths) below this one; same query.

        Each part may hold several segments (``"sub dir/a.txt"``); empty and
        ``.`` segments are dropped, a ``..`` segment is refused.
        """
        segments = [s for part in parts for s in part.split("/") if s not in ("", ".")]
        if not segments:
            return self
        rel = safe_relpath("/".join(segments))
        head = self.key.rstrip("/")
        return dataclasses.replace(self, key=f"{head}/{rel}" if head else rel)

    def as_prefix(self) -> Location:
        """This location as a directory prefix: its key ends with ``/`` (unless it is the root)."""
        key = self.key.rstrip("/")
        return dataclasses.replace(self, key=f"{key}/" if key else "")

    def same_store(self, other: Location) -> bool:
        """True when ``other`` is in the same bucket of the same provider and account."""
        mine = (self.provider, self.account, self.bucket)
        return mine == (other.provider, other.account, other.bucket)

    def relative_to(self, root: Location) -> str | None:
        """This key relative to ``root``'s key, or None if it is not strictly beneath it.

        Prefixes match whole segments (``in/ab`` is not under ``in/a``). An
        object key is never normalised: a ``.`` or ``..`` segment in it raises
        (a ``file://`` store would resolve them out of the prefix).
        """
        if not self.same_store(root):
            return None
        base = root.key.strip("/")
        key = self.key.rstrip("/")
        if any(s in (".", "..") for s in key.split("/")):
            raise StorageError(f"refusing unsafe relative path in key {key!r}")
        if base and not key.startswith(base + "/"):
            return None
        rel = key[len(base) :].lstrip("/")
        return safe_relpath(rel) if rel else None

    @property
    def name(self) -> str:
        """The last segment of the key (``""`` for a bucket's root)."""
        return self.key.rstrip("/").rpartition("/")[2]

    @property
    def store_id(self) -> tuple[str, ...]:
        """What identifies the store this object is reached through (cache key)."""
        return (self.provider, self.account or "", self.bucket, self.query)


def safe_relpath(relpath: str) -> str:
    """``relpath`` with empty and ``.`` segments dropped; refuses what could escape.

    A ``..`` segment (``/`` or ``\\`` separated), an absolute path or an empty
    one is a :class:`StorageError`: the one rule for a directory's entries,
    whether they come from a listing, a caller or a server.
    """
    if relpath.startswith("/") or any(s == ".." for s in re.split(r"[/\\]", relpath)):
        raise StorageError(f"refusing unsafe relative path {relpath!r}")
    normal = "/".join(s for s in relpath.split("/") if s not in ("", "."))
    if not normal:
        raise StorageError(f"refusing unsafe relative path {relpath!r}")
    return normal


def is_url(value: str) -> bool:
    """True when ``value`` is a URL of a scheme in :data:`SCHEMES`."""
    scheme, sep, _ = value.partition("://")
    return bool(sep) and scheme.lower() in URL_SCHEMES


def scheme_problem(url: str, *, writable: bool = False) -> str | None:
    """Why ``url``'s scheme is not one tesengine can use (None when it is).

    With ``writable``, read-only schemes (plain http) count as unusable. The
    message names the scheme and the accepted ones; callers wrap it in their
    own error (a config error, an invalid task).
    """
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    allowed = WRITABLE_SCHEMES if writable else URL_SCHEMES
    if scheme in allowed:
        return None
    wanted = ", ".join(sorted(allowed))
    return f"unsupported URL scheme {scheme or '(none)'!r} (use {wanted})"


def parse_url(url: str) -> Location:
    """Split an object URL into a :class:`Location`; :class:`StorageError` if unsupported."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise StorageError(f"not a valid URL: {redact_url(url)}", url=redact_url(url)) from exc
    scheme = parts.scheme.lower()
    provider = SCHEMES.get(scheme)
    path = unquote(parts.path)
    if scheme in ("abfs", "abfss"):
        container, _, host = parts.netloc.partition("@")
        match = _AZURE_HOST.match(host.lower())
        account = match["account"] if match else None
        base = f"{scheme}://{parts.netloc}"
        return Location("az", container, _key(path), parts.query, base, account=account)
    if provider in ("s3", "gs", "az", "memory"):
        if not parts.netloc:
            raise StorageError(f"no bucket in URL: {redact_url(url)}", url=redact_url(url))
        base = f"{scheme}://{parts.netloc}"
        return Location(provider, parts.netloc, _key(path), parts.query, base)
    if provider == "file":
        if parts.netloc not in ("", "localhost"):
            shown = redact_url(url)
            raise StorageError(f"file URL with a remote host: {shown}", url=shown)
        return Location("file", "", _key(path), parts.query, "file://")
    if provider == "http":
        return _http_url(scheme, parts.netloc, path, parts.query)
    raise StorageError(f"unsupported storage URL scheme: {redact_url(url)}", url=redact_url(url))


def join_url(base: str, *parts: str) -> str:
    """Append relative path ``parts`` to ``base``; the query string of ``base`` is kept.

    ``join_url("az://c/in?sv=1&sig=x", "file", hex)`` is ``az://c/in/file/<hex>?sv=1&sig=x``.
    Parts are plain names (decoded); they are escaped as the URL's form needs.
    """
    return parse_url(base).child(*parts).url


def _encode_key(scheme: str, key: str) -> str:
    if scheme in _ENCODED:
        return quote(key, safe=_PATH_SAFE)
    return key.translate(_BUCKET_ESCAPES)


def _http_url(scheme: str, netloc: str, path: str, query: str) -> Location:
    host = netloc.rpartition("@")[2].lower()
    hostname = host.partition(":")[0]
    bucket, _, rest = path.lstrip("/").partition("/")
    origin = f"{scheme}://{host}"
    if match := _AZURE_HOST.match(hostname):
        return Location("az", bucket, rest, query, f"{origin}/{bucket}", account=match["account"])
    if hostname in _GCS_HOSTS:
        return Location("gs", bucket, rest, query, f"{origin}/{bucket}")
    if match := _S3_PATH_HOST.match(hostname):
        return Location("s3", bucket, rest, query, f"{origin}/{bucket}", region=match["region"])
    if match := _S3_VHOST.match(hostname):
        return Location("s3", match["bucket"], _key(path), query, origin, region=match["region"])
    return Location("http", origin, _key(path), query, origin)


def _key(path: str) -> str:
    return path.lstrip("/")
