"""Object operations on any storage URL, with obstore's errors translated.

:class:`Storage` is the one entry point: it parses URLs, reuses one store
per bucket, bounds the number of requests in flight, and turns obstore's
errors into :class:`~tesengine.errors.StorageError` (``ObjectNotFound`` when
the object is absent). Every write is atomic: obstore's single ``PUT`` and
multipart uploads only make an object visible once it is complete, and a
local folder is written to a temporary file that is then renamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import aiofiles
import aiofiles.tempfile
import anyio
import obstore
from obstore import exceptions as obx

from .._closing import AsyncClosing
from ..config import StorageConfig
from ..errors import ObjectNotFound, StorageError, redact_url
from ..redact import redact_repr
from .stores import ObjectStore, StoreCache
from .urls import Location, parse_url

if TYPE_CHECKING:
    from aiofiles.threadpool.binary import AsyncBufferedIOBase
    from obstore import ObjectMeta, PutMode

__all__ = ["MULTIPART_THRESHOLD", "ObjectInfo", "Page", "Storage"]

#: One listing request's ``(name relative to the prefix, size)`` pairs, in key order.
Page = list[tuple[str, int]]

#: Larger bodies go up as multipart uploads (bounded memory); smaller as one PUT.
MULTIPART_THRESHOLD = 8 * 1024 * 1024
PART_SIZE = 8 * 1024 * 1024
PART_CONCURRENCY = 4
_READ_CHUNK = 1024 * 1024
_PAGE = 1000  # keys a listing request returns
_ORDERED = frozenset({"s3", "gs", "az", "memory"})
_URL_IN_TEXT = re.compile(r"https?://[^\s\"'<>]+")
# How obstore's error text (its debug source) names a request that got no
# HTTP answer: it timed out, its connection failed or was cut.
_NO_ANSWER = re.compile(r"HttpError \{\s*kind: (?:Timeout|Interrupted|Connect)\b")
# How obstore quotes the answer to a refused request: "... - Server returned
# non-2xx status code: 403 Forbidden: <the reply's body>", then its debug source.
_REPLY = re.compile(r"\s*-?\s*Server returned (?P<status>non-2xx status code: \d{3}[^:\n]*):?"
                    r"(?P<body>.*?)(?=\n\nDebug source:|\Z)", re.S)  # fmt: skip
_S3_CODE = re.compile(r"<Code>([A-Za-z]{1,64})</Code>")
#: Create-only PUTs sent again after no answer came, waiting 0.2, 0.6, 1.8 and 5.4 s.
_CREATE_RETRIES = 4
_CREATE_BACKOFF = 0.2


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a ``HEAD`` or a listing says about one object."""

    url: str
    size: int
    etag: str | None
    last_modified: datetime | None

    def __repr__(self) -> str:
        return redact_repr(self)  # the URL may carry a SAS or a signature


class Storage(AsyncClosing):
    """Object storage for every URL scheme tesengine knows, on obstore.

    One instance per configuration; it caches a store per bucket and is safe
    for thousands of concurrent calls (at most ``max_concurrency`` requests
    are in flight per event loop; the rest wait their turn).

    With ``ambient_credentials=False`` (a server acting for its clients) a
    cloud store with no credentials configured sends unsigned requests
    instead of asking the instance metadata endpoint for credentials.
    ``async with Storage() as storage:`` closes it on exit.
    """

    def __init__(
        self,
        config: StorageConfig | None = None,
        *,
        max_concurrency: int = 128,
        ambient_credentials: bool = True,
    ) -> None:
        self._stores = StoreCache(config, ambient_credentials=ambient_credentials)
        self._max = max_concurrency
        self._limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._limits = weakref.WeakKeyDictionary()
        self._no_create_mode: set[tuple[str, ...]] = set()
        self.requests = 0  # requests sent, for diagnostics and benchmarks

    def locate(self, url: str) -> tuple[Location, ObjectStore]:
        """The parsed location of ``url`` and the store that serves it."""
        loc = parse_url(url)
        return loc, self._stores.store_for(loc)

    async def exists(self, url: str) -> bool:
        """True when an object exists at ``url`` (one HEAD, no metadata kept)."""
        loc, store = self.locate(url)
        async with self._slot():
            try:
                await obstore.head_async(store, loc.key)
            except FileNotFoundError:
                return False
            except BaseException:
                with translate("HEAD", loc):
                    raise
        return True

    async def head(self, url: str) -> ObjectInfo:
        """Metadata of the object at ``url``; :class:`ObjectNotFound` if absent."""
        loc, store = self.locate(url)
        async with self._slot():
            with translate("HEAD", loc):
                meta = await obstore.head_async(store, loc.key)
        return _info(loc, meta)

    async def put_bytes(self, url: str, data: bytes, *, create_only: bool = False) -> bool:
        """Write ``data`` at ``url`` in one atomic PUT.

        With ``create_only`` an existing object is left alone (no overwrite,
        where the store supports conditional puts). Returns False when the
        object already existed, True when this call wrote it. A create-only
        PUT that got no answer (it timed out, its connection was cut) is sent
        again, up to 4 times: ``create_only`` is for content-addressed keys,
        whose bytes are the same whoever writes them.
        """
        loc, store = self.locate(url)
        if create_only and loc.store_id not in self._no_create_mode:
            try:
                return await self._put(loc, store, data, mode="create")
            except _CreateModeUnsupported:
                self._no_create_mode.add(loc.store_id)
        if create_only and await self.exists(url):
            return False
        return await self._put(loc, store, data, mode="overwrite")

    async def put_stream(
        self, url: str, chunks: AsyncIterable[bytes], *, create_only: bool = False
    ) -> bool:
        """Stream ``chunks`` to ``url`` as one multipart upload, atomically.

        Memory stays bounded (a few parts). If ``chunks`` raises, the upload
        is aborted and nothing appears at ``url``; the error propagates as is.
        With ``create_only``, an object already there is kept (checked first:
        stores do not offer create-only multipart uploads, and two uploads of
        one content address carry the same bytes). Returns True when written.
        """
        loc, store = self.locate(url)
        if create_only and await self.exists(url):
            return False
        async with self._slot():
            with translate("PUT", loc):
                await obstore.put_async(
                    store,
                    loc.key,
                    chunks,
                    use_multipart=True,
                    chunk_size=PART_SIZE,
                    max_concurrency=PART_CONCURRENCY,
                )
        return True

    async def put_file(self, url: str, path: Path, *, create_only: bool = False) -> bool:
        """Upload the local file ``path`` to ``url`` (streamed; multipart when large)."""
        size = (await anyio.Path(path).stat()).st_size
        if size <= MULTIPART_THRESHOLD:
            async with aiofiles.open(path, "rb") as fh:
                data = await fh.read()
            return await self.put_bytes(url, data, create_only=create_only)
        return await self.put_stream(url, read_chunks(Path(path)), create_only=create_only)

    async def read_bytes(self, url: str) -> bytes:
        """The whole content of the object at ``url``."""
        loc, store = self.locate(url)
        async with self._slot():
            with translate("GET", loc):
                result = await obstore.get_async(store, loc.key)
                data = await result.bytes_async()
        return bytes(data)

    async def download(self, url: str, dest: Path) -> Path:
        """Save the object at ``url`` as ``dest``: a temporary file, then a rename.

        The body is streamed to disk with aiofiles (bounded memory).
        """
        loc, store = self.locate(url)
        dest = Path(dest)
        await anyio.Path(dest.parent).mkdir(parents=True, exist_ok=True)
        part = aiofiles.tempfile.NamedTemporaryFile(
            "wb", dir=dest.parent, prefix=f".{dest.name}.", suffix=".part", delete=False
        )
        async with part as fh:
            tmp = Path(str(fh.name))
            try:
                await self._stream_to(fh, loc, store)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)  # a cheap local call on the error path
                raise
        await anyio.Path(tmp).replace(dest)
        return dest

    async def _stream_to(self, fh: AsyncBufferedIOBase, loc: Location, store: ObjectStore) -> None:
        async with self._slot():
            with translate("GET", loc):
                result = await obstore.get_async(store, loc.key)
                async for chunk in result.stream(min_chunk_size=_READ_CHUNK):
                    await fh.write(chunk)

    async def list(self, prefix_url: str) -> AsyncIterator[ObjectInfo]:
        """Every object under ``prefix_url``, recursively (prefixes match whole segments).

        A listing that holds a key with a ``..`` segment fails with
        :class:`StorageError` (obstore refuses to parse it).
        """
        loc, store = self.locate(prefix_url)
        with translate("LIST", loc):
            stream = obstore.list(store, loc.key.rstrip("/") or None, chunk_size=1000)
            async for batch in stream:
                self.requests += 1
                for meta in batch:
                    yield _info(loc, meta)

    def lists_in_order(self, prefix_url: str) -> bool:
        """True when listings under ``prefix_url`` come in key order and honour an offset.

        Object stores (S3, GCS, Azure) list in lexical key order; a local
        folder walks its directories in no particular order.
        """
        return parse_url(prefix_url).provider in _ORDERED

    async def list_pages(
        self, prefix_url: str, *, start_after: str | None = None
    ) -> AsyncIterator[Page]:
        """Pages of ``(name, size)`` under the folder ``prefix_url``, in key order.

        ``name`` is the key relative to the prefix; with ``start_after`` (a
        name) the listing starts past it, on the server (S3 ``start-after``,
        Azure ``startFrom``). Each page is one listing request (S3 and GCS
        return 1,000 keys a request; Azure's requests of 5,000 are split).
        Stopping iteration stops the requests. A store that ignores the
        offset returns names at or before it: the caller checks. A listed
        key outside the folder fails the listing with :class:`StorageError`
        (cut to the prefix's length, ``inputs/fil3/<hex>`` would pass for
        ``<hex>``); the folder's own placeholder key is skipped.
        """
        loc, store = self.locate(prefix_url)
        root = loc.key.rstrip("/")
        offset = f"{root}/{start_after}" if root and start_after else start_after
        with translate("LIST", loc):
            stream = obstore.list(store, root or None, offset=offset, chunk_size=_PAGE)
            async for batch in stream:
                self.requests += 1
                yield _names_under(batch, root, loc)

    async def walk(self, prefix_url: str) -> AsyncIterator[tuple[str, ObjectInfo]]:
        """Every object of the directory ``prefix_url``, with its decoded relative path.

        Folder placeholders (keys ending in ``/``) are skipped. A path that
        could escape the directory is refused as everywhere (see
        :func:`~tesengine.storage.urls.safe_relpath`).
        """
        root = parse_url(prefix_url).as_prefix()
        async for info in self.list(root.url):
            found = parse_url(info.url)
            if found.key.endswith("/"):
                continue
            rel = found.relative_to(root)
            if rel is not None:
                yield rel, info

    async def delete(self, url: str) -> None:
        """Remove the object at ``url`` (absent is fine)."""
        loc, store = self.locate(url)
        async with self._slot():
            with translate("DELETE", loc), contextlib.suppress(FileNotFoundError):
                await obstore.delete_async(store, loc.key)

    async def aclose(self) -> None:
        """Forget the stores this instance built (and their connection pools).

        obstore holds no other resource that needs closing. The instance
        stays usable: a later call builds its store again.
        """
        self._stores = StoreCache(self._stores.config)
        self._limits.clear()

    async def _put(self, loc: Location, store: ObjectStore, data: bytes, *, mode: PutMode) -> bool:
        # obstore retries an overwriting PUT whose request timed out or was
        # cut, but never a create-only one (not idempotent to it). Every
        # create here writes a content address, so sending it again is safe:
        # "already exists" after a lost answer is most likely our own write.
        retries = _CREATE_RETRIES if mode == "create" else 0
        for attempt in range(retries + 1):
            try:
                return await self._put_once(loc, store, data, mode=mode) or attempt > 0
            except _Interrupted:
                if attempt == retries:
                    raise
            await asyncio.sleep(_CREATE_BACKOFF * 3**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _put_once(
        self, loc: Location, store: ObjectStore, data: bytes, *, mode: PutMode
    ) -> bool:
        async with self._slot():
            try:
                with translate("PUT", loc):
                    await obstore.put_async(store, loc.key, data, mode=mode, use_multipart=False)
            except _AlreadyExists:
                return False
        return True

    def _slot(self) -> asyncio.Semaphore:
        """This loop's request limit; counts the request it is about to admit.

        A plain semaphore, not a generator-based context manager: this sits on
        the per-object hot path of staging thousands of present inputs.
        """
        self.requests += 1
        loop = asyncio.get_running_loop()
        limit = self._limits.get(loop)
        if limit is None:
            limit = self._limits[loop] = asyncio.Semaphore(self._max)
        return limit


async def read_chunks(path: Path, size: int = _READ_CHUNK) -> AsyncIterator[bytes]:
    """The bytes of ``path`` in chunks, streamed with aiofiles."""
    async with aiofiles.open(path, "rb") as fh:
        while chunk := await fh.read(size):
            yield chunk


class _AlreadyExists(StorageError):
    """A create-only put found an object in place (success for content addresses)."""


class _CreateModeUnsupported(StorageError):
    """The store cannot do create-only puts."""


class _Interrupted(StorageError):
    """A request that timed out or lost its connection (no HTTP answer came)."""


@contextlib.contextmanager
def translate(op: str, loc: Location) -> Iterator[None]:
    """Turn obstore's errors in the block into tesengine's, naming the URL."""
    try:
        yield
    except FileNotFoundError as exc:
        _raise(ObjectNotFound, f"no object at {loc.redacted}", loc, exc)
    except (obx.AlreadyExistsError, obx.PreconditionError) as exc:
        _raise(_AlreadyExists, f"object exists at {loc.redacted}", loc, exc)
    except obx.NotSupportedError as exc:
        if op == "PUT":
            _raise(_CreateModeUnsupported, f"create-only PUT unsupported: {loc.redacted}", loc, exc)
        _raise(StorageError, f"{op} {loc.redacted}: not supported", loc, exc)
    except (obx.BaseError, OSError, ValueError, RuntimeError) as exc:
        kind = _Interrupted if _NO_ANSWER.search(str(exc)) else StorageError
        _raise(kind, f"{op} {loc.redacted} failed: {_describe(exc)}", loc, exc)


def _names_under(batch: Sequence[ObjectMeta], root: str, loc: Location) -> Page:
    """A listing page's ``(name, size)`` pairs under the folder ``root``; refuses strays."""
    under = f"{root}/" if root else ""
    cut = len(under)
    page: Page = []
    for meta in batch:
        key = meta["path"]
        if key.startswith(under) and len(key) > cut:
            page.append((key[cut:], int(meta["size"])))
        elif key not in (root, under):  # the folder's placeholder is no name: skipped
            shown = key if len(key) <= 200 else key[:200] + "..."
            raise StorageError(
                f"LIST {loc.redacted}: the store listed the key {shown!r}, which is not "
                f"under the prefix {under!r}; refusing the listing",
                url=loc.redacted,
            )
    return page


def _raise(kind: type[StorageError], message: str, loc: Location, exc: BaseException) -> NoReturn:
    # obstore's message may quote a request URL with a SAS signature in it,
    # or the reply's body: keep it out of the chain when it does.
    quoted = loc.query or _reply_body(str(exc))
    raise kind(message, url=loc.redacted) from (None if quoted else exc)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    status = ""
    reply = _REPLY.search(text)
    if reply is not None:
        # The body is the server's text, which may quote the request back (AWS's
        # SignatureDoesNotMatch quotes the canonical request, session token and
        # all): only the status and an S3 error code are kept, the status kept
        # past the truncation below.
        code = _S3_CODE.search(reply["body"])
        status = f" - {reply['status'][:80]}" + (f" ({code[1]})" if code else "")
        text = text[: reply.start()]
    first = text.splitlines()[0] if text else ""
    first = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), first)
    return f"{type(exc).__name__}: {first[:300]}{status}"


def _reply_body(text: str) -> bool:
    """True when obstore's error ``text`` quotes a non-empty reply body."""
    reply = _REPLY.search(text)
    return reply is not None and bool(reply["body"].strip())


def _info(loc: Location, meta: ObjectMeta | Any) -> ObjectInfo:
    return ObjectInfo(
        url=loc.url_for(meta["path"]),
        size=int(meta["size"]),
        etag=meta.get("e_tag"),
        last_modified=meta.get("last_modified"),
    )
