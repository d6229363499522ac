"""Pure URL logic: which store and key an object URL names, and derived URLs.

Nothing here does I/O. A URL is split into a :class:`Location` (provider,
bucket or container, key, query); the query string (an Azure SAS token, for
example) is carried along so every URL derived from a base keeps it.

Accepted forms::

    s3://bucket/key            s3a://bucket/key
    https://s3.<region>.amazonaws.com/bucket/key   https://bucket.s3.<region>.amazonaws.com/key
    gs://bucket/key            https://storage.googleapis.com/bucket/key
    az://container/key         azure://container/key
    abfs[s]://container@account.dfs.core.windows.net/key
    https://account.blob.core.windows.net/container/key?<sas>
    file:///absolute/path      memory://name/key
    http(s)://any.host/path    (read-only)

Keys of ``s3``/``gs``/``az``/``memory`` URLs are taken verbatim (as the cloud
CLIs do); keys of ``http(s)`` and ``file`` URLs are percent-decoded.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from ..errors import StorageError, redact_url
from ..redact import redact_query

__all__ = [
    "URL_SCHEMES",
    "WRITABLE_SCHEMES",
    "Location",
    "Provider",
    "is_url",
    "join_url",
    "parse_url",
]

Provider = Literal["s3", "gs", "az", "file", "memory", "http"]

#: Schemes that name a remote or local object rather than a local path.
URL_SCHEMES = frozenset(
    {"s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "file", "memory", "http", "https"}
)
#: Schemes an object can be written to (plain http(s) URLs are read-only; an
#: https URL of a known cloud host is mapped to its provider when parsed).
WRITABLE_SCHEMES = URL_SCHEMES - {"http", "https"}
_ENCODED = frozenset({"http", "https", "file"})
_AZURE_HOST = re.compile(r"^(?P<account>[a-z0-9]+)\.(?:blob|dfs)\.core\.windows\.net$")
_S3_PATH_HOST = re.compile(r"^s3(?:[.-](?P<region>[a-z0-9-]+))?\.amazonaws\.com$")
_S3_VHOST = re.compile(r"^(?P<bucket>.+)\.s3(?:[.-](?P<region>[a-z0-9-]+))?\.amazonaws\.com$")
_GCS_HOSTS = frozenset({"storage.googleapis.com", "storage.cloud.google.com"})


@dataclass(frozen=True, slots=True)
class Location:
    """Where one object (or prefix) lives.

    ``bucket`` is the S3/GCS bucket, the Azure container, the memory store's
    name, ``""`` for ``file`` (keys are absolute paths without the leading
    slash) and ``scheme://host`` for plain http(s). ``base`` is the URL up to
    the bucket, used to rebuild URLs for other keys in the same form.
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
        """This location as a URL, in the form it was given."""
        return self.url_for(self.key)

    def url_for(self, key: str) -> str:
        """The URL of ``key`` in the same bucket, with this location's query."""
        scheme = self.base.partition(":")[0]
        path = quote(key, safe="/~@!$&'()*+,;=:") if scheme in _ENCODED else key
        url = f"{self.base}/{path}" if path else self.base
        if self.provider == "file" and not path:
            url = self.base + "/"
        return f"{url}?{self.query}" if self.query else url

    @property
    def store_id(self) -> tuple[str, ...]:
        """What identifies the store this object is reached through (cache key)."""
        return (self.provider, self.account or "", self.bucket, self.query)


def is_url(value: str) -> bool:
    """True when ``value`` is a URL of a scheme tesengine passes through untouched."""
    scheme, sep, _ = value.partition("://")
    return bool(sep) and scheme.lower() in URL_SCHEMES


def parse_url(url: str) -> Location:
    """Split an object URL into a :class:`Location`; :class:`StorageError` if unsupported."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise StorageError(f"not a valid URL: {redact_url(url)}", url=redact_url(url)) from exc
    scheme = parts.scheme.lower()
    if scheme in ("s3", "s3a", "gs", "az", "azure", "memory"):
        return _bucket_url(url, scheme, parts.netloc, parts.path, parts.query)
    if scheme in ("abfs", "abfss"):
        container, _, host = parts.netloc.partition("@")
        match = _AZURE_HOST.match(host.lower())
        account = match["account"] if match else None
        base = f"{scheme}://{parts.netloc}"
        return Location("az", container, _key(parts.path), parts.query, base, account=account)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            shown = redact_url(url)
            raise StorageError(f"file URL with a remote host: {shown}", url=shown)
        return Location("file", "", _key(unquote(parts.path)), parts.query, "file://")
    if scheme in ("http", "https"):
        return _http_url(scheme, parts.netloc, unquote(parts.path), parts.query)
    raise StorageError(f"unsupported storage URL scheme: {redact_url(url)}", url=redact_url(url))


def join_url(base: str, *parts: str) -> str:
    """Append path ``parts`` to ``base``; the query string of ``base`` is kept.

    ``join_url("az://c/in?sv=1&sig=x", "file", hex)`` is ``az://c/in/file/<hex>?sv=1&sig=x``.
    Parts are plain names; they are percent-encoded only for http(s)/file URLs.
    """
    head, sep, query = base.partition("?")
    fragment_free = head.partition("#")[0]
    scheme = fragment_free.partition(":")[0].lower()
    segments = [p.strip("/") for p in parts if p.strip("/")]
    if scheme in _ENCODED:
        segments = [quote(s, safe="/~@!$&'()*+,;=:") for s in segments]
    joined = "/".join([fragment_free.rstrip("/"), *segments])
    return f"{joined}{sep}{query}"


def _bucket_url(url: str, scheme: str, netloc: str, path: str, query: str) -> Location:
    if not netloc:
        raise StorageError(f"no bucket in URL: {redact_url(url)}", url=redact_url(url))
    provider: Provider = {"s3a": "s3", "azure": "az"}.get(scheme, scheme)  # type: ignore[assignment]
    return Location(provider, netloc, _key(path), query, f"{scheme}://{netloc}")


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
