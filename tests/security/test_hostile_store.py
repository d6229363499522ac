"""The storage boundary against a hostile S3 endpoint (:mod:`tests.security.raw_store`).

Staging trusts an object at a content address without reading it, so what
the store says decides what is uploaded. Whatever the store does, these
must hold: a file that is not at its address is never reported present
(it is uploaded), errors name the URL and quote no credential, nothing
hangs (each test runs under a deadline), the process does not crash.

The store gets explicit fake credentials (so nothing asks a cloud metadata
endpoint), with a session token: it goes out in a header, the one secret
a reflecting server can send back. Retries and the request timeout are
shortened (:func:`quick_clock`) so a failing store fails in seconds rather
than the five minutes staging rides out in production.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from tesengine.config import S3Auth, S3Storage, StorageConfig
from tesengine.digest import Digester
from tesengine.errors import ContentMismatch, StorageError
from tesengine.storage import Stager, Storage, stores
from tests.security.raw_store import REGION, HostileS3
from tests.test_existence_stores import _files, digester

__all__ = ["digester"]

BUCKET = "hostile"
ACCESS_KEY = "AKIAHOSTILETEST"
SECRET_KEY = "hostile-secret-key-3b9f"
SESSION_TOKEN = "hostile-session-token-7e21"
BATCH = 100  # listed: at least MIN_BATCH (64)
DEADLINE = 60  # seconds; every staging here finishes in a few
FILE_URL = re.compile(rf"s3://{BUCKET}/inputs/file/[0-9a-f]{{64}}")


@pytest.fixture(autouse=True)
def quick_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """obstore's retries and request timeout, shortened (the logic is the real one)."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    retry = {
        "max_retries": 4,
        "retry_timeout": timedelta(seconds=3),
        "backoff": {"init_backoff": timedelta(milliseconds=20),
                    "max_backoff": timedelta(milliseconds=200), "base": 2.0},
    }  # fmt: skip
    monkeypatch.setattr(stores, "STORE_RETRY", retry)
    real = stores.s3_options

    def s3_options(config: StorageConfig, loc: Any) -> dict[str, Any]:
        options = real(config, loc)
        options["client_options"] = {**options["client_options"], "timeout": "2s"}
        return options

    monkeypatch.setattr(stores, "s3_options", s3_options)


@pytest.fixture
def s3() -> Iterator[HostileS3]:
    with HostileS3(BUCKET) as server:
        yield server


@pytest.fixture
async def storage(s3: HostileS3) -> AsyncIterator[Storage]:
    auth = S3Auth(
        access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY, session_token=SESSION_TOKEN
    )
    config = S3Storage(region=REGION, endpoint=s3.endpoint, allow_http=True, auth=auth)
    async with Storage(StorageConfig(s3=config)) as storage:
        yield storage


def _stager(s3: HostileS3, storage: Storage, digester: Digester, **kw: Any) -> Stager:
    return Stager(storage, digester, s3.url("inputs"), **kw)


def _listing_stager(s3: HostileS3, storage: Storage, digester: Digester) -> Stager:
    """A stager that lists every large batch (no HEADs race the listing: deterministic)."""
    return _stager(s3, storage, digester, list_margin=math.inf)


def _key(path: Path) -> str:
    return f"inputs/file/{blake3(path.read_bytes()).hexdigest()}"


def _half_present(s3: HostileS3, paths: list[Path]) -> list[Path]:
    """Put the even files at their addresses; the odd ones (returned) are missing."""
    for path in paths[::2]:
        s3.objects[_key(path)] = path.read_bytes()
    return paths[1::2]


async def _stage(stager: Stager, paths: list[Path]) -> list[bool]:
    async with asyncio.timeout(DEADLINE):
        return [r.uploaded for r in await stager.stage_many(paths)]


def _assert_all_stored(s3: HostileS3, paths: list[Path], missing: list[Path]) -> None:
    """Every file is at its address, whole; each missing one was PUT."""
    for path in paths:
        assert s3.objects.get(_key(path)) == path.read_bytes(), path
    for path in missing:
        assert s3.seen("PUT", _key(path)), f"{path} was never uploaded"


def _chain(exc: BaseException) -> str:
    """Everything an error shows: its text and repr, and those of its causes."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:  # the chain a traceback prints
        parts += [str(seen), repr(seen)]
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return "\n".join(parts)


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET_KEY not in text and SESSION_TOKEN not in text, text[:2000]


# -- listings -----------------------------------------------------------------------


@pytest.mark.parametrize("stray", ["inputs/fil3/{h}", "inputs/filex/{h}", "inputs/file{h}"])
async def test_list_pages_refuses_a_key_outside_the_prefix(
    s3: HostileS3, storage: Storage, stray: str
) -> None:
    name = "ab" * 32
    s3.objects[f"inputs/file/{'cd' * 32}"] = b"kept"
    key = stray.format(h=name)
    s3.script.listed_extra = {key: 4}
    with pytest.raises(StorageError) as caught:
        async with asyncio.timeout(DEADLINE):
            _ = [page async for page in storage.list_pages(s3.url("inputs/file"))]
    assert key in str(caught.value) and "inputs/file/" in str(caught.value)
    assert caught.value.url == s3.url("inputs/file")


async def test_a_lookalike_key_outside_the_prefix_never_makes_a_missing_file_present(
    s3: HostileS3, storage: Storage, digester: Digester, tmp_path: Path
) -> None:
    paths = _files(tmp_path / "in", BATCH)
    missing = _half_present(s3, paths)
    # inputs/fil3/<hex> trimmed by the prefix's length reads as <hex>: present
    s3.script.listed_extra = {
        _key(p).replace("/file/", "/fil3/"): p.stat().st_size for p in missing
    }
    stager = _listing_stager(s3, storage, digester)
    assert await _stage(stager, paths) == [i % 2 == 1 for i in range(BATCH)]
    _assert_all_stored(s3, paths, missing)
    assert "listing stopped" in stager.stats.last_plan
    assert "inputs/fil3/" in stager.stats.last_plan  # the reason names the stray key


async def test_a_dot_dot_key_in_a_listing_falls_back_to_heads(
    s3: HostileS3, storage: Storage, digester: Digester, tmp_path: Path
) -> None:
    paths = _files(tmp_path / "in", BATCH)
    missing = _half_present(s3, paths)
    s3.script.listed_extra = {f"inputs/file/../file/{_key(p)[12:]}": 1 for p in missing}
    stager = _listing_stager(s3, storage, digester)
    assert await _stage(stager, paths) == [i % 2 == 1 for i in range(BATCH)]
    _assert_all_stored(s3, paths, missing)
    assert stager.stats.heads == BATCH  # the listing decided nothing


async def test_an_out_of_order_listing_proves_no_absence(
    s3: HostileS3, storage: Storage, digester: Digester, tmp_path: Path
) -> None:
    paths = _files(tmp_path / "in", BATCH)
    missing = _half_present(s3, paths)
    s3.script.reverse = True
    stager = _listing_stager(s3, storage, digester)
    assert await _stage(stager, paths) == [i % 2 == 1 for i in range(BATCH)]
    _assert_all_stored(s3, paths, missing)
    assert stager.stats.heads > 0  # what the pages could not prove absent was HEADed


_BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
    + b"".join(b'<!ENTITY %c "%s">' % (c, (b"&%c;" % (c - 1)) * 10) for c in b"bcdefgh")
    + b"]><ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>inputs/file/&h;"
    b"</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified><Size>1</Size></Contents>"
    b"</ListBucketResult>"
)
_BODIES = {
    "truncated": b"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>inputs/",
    "not-xml": b"\x00\xff" * 1000,
    "entity-bomb": _BOMB,
    "deep": b"<ListBucketResult>" + b"<a>" * 200_000 + b"</a>" * 200_000 + b"</ListBucketResult>",
    "huge": b"<ListBucketResult><Name>" + b"x" * (32 << 20) + b"</Name></ListBucketResult>",
}


@pytest.mark.parametrize("body", list(_BODIES))
async def test_a_broken_listing_body_never_skips_a_missing_file(
    s3: HostileS3, storage: Storage, digester: Digester, tmp_path: Path, body: str
) -> None:
    paths = _files(tmp_path / "in", BATCH)
    missing = _half_present(s3, paths)
    s3.script.list_body = _BODIES[body]
    stager = _listing_stager(s3, storage, digester)
    uploaded = await _stage(stager, paths)
    assert all(uploaded[1::2])  # a listing that shows nothing may re-send a present file
    _assert_all_stored(s3, paths, missing)


async def test_never_ending_listing_is_cut_off(
    s3: HostileS3, storage: Storage, digester: Digester, tmp_path: Path
) -> None:
    paths = _files(tmp_path / "in", BATCH)
    missing = _half_present(s3, paths)
    s3.script.endless = True  # full pages of new keys, IsTruncated=true, forever
    stager = _listing_stager(s3, storage, digester)
    async with asyncio.timeout(30):  # a page cap ends the listing: it must not hang
        results = await stager.stage_many(paths)
    assert [r.uploaded for r in results] == [i % 2 == 1 for i in range(BATCH)]
    _assert_all_stored(s3, paths, missing)
    assert len(s3.seen("LIST")) < 1000


# -- HEAD, GET and errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "error"),
    [("99999999999", ContentMismatch), ("abc", StorageError), ("-5", StorageError)],
)
async def test_a_head_that_lies_about_the_size_is_refused(
    s3: HostileS3, storage: Storage, digester: Digester, tmp_path: Path,
    length: str, error: type[StorageError],
) -> None:  # fmt: skip
    paths = _files(tmp_path / "in", 3)
    for path in paths:
        s3.objects[_key(path)] = path.read_bytes()
    s3.script.head_length = length
    with pytest.raises(error) as caught:
        await _stage(_stager(s3, storage, digester), paths)
    assert FILE_URL.search(str(caught.value)), caught.value
    assert not s3.seen("PUT")  # nothing was overwritten on the store's word
    _assert_no_secret(_chain(caught.value))


@pytest.mark.parametrize("method", ["HEAD", "PUT"])
async def test_a_request_that_hangs_fails_in_bounded_time_naming_the_url(
    s3: HostileS3, storage: Storage, digester: Digester, tmp_path: Path, method: str
) -> None:
    s3.script.hang = frozenset({method})
    with pytest.raises(StorageError) as caught:
        await _stage(_stager(s3, storage, digester), _files(tmp_path / "in", 3))
    assert FILE_URL.search(str(caught.value)), caught.value
    _assert_no_secret(_chain(caught.value))


async def test_a_5xx_storm_fails_naming_the_url_and_a_burst_is_ridden_out(
    s3: HostileS3, storage: Storage, digester: Digester, tmp_path: Path
) -> None:
    s3.script.fail = frozenset({"HEAD", "PUT", "GET", "LIST"})
    paths = _files(tmp_path / "in", 5)
    with pytest.raises(StorageError, match="503") as caught:
        await _stage(_stager(s3, storage, digester), paths)
    assert FILE_URL.search(str(caught.value)), caught.value
    s3.script.fail_times = 6  # a burst: every request fails once or twice, then it passes
    assert await _stage(_stager(s3, storage, digester), paths) == [True] * 5
    _assert_all_stored(s3, paths, paths)


async def test_a_reply_quoting_the_credentials_does_not_leak_them(
    s3: HostileS3, storage: Storage, digester: Digester, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    # AWS's SignatureDoesNotMatch quotes the canonical request, session token
    # included; this server quotes every header of the request it refuses.
    caplog.set_level("DEBUG", logger="tesengine")
    s3.script.fail = frozenset({"LIST", "PUT"})
    s3.script.fail_status = 403
    s3.script.echo_headers = True
    stager = _stager(s3, storage, digester)
    with pytest.raises(StorageError) as caught:
        await _stage(stager, _files(tmp_path / "in", BATCH))
    assert any(SESSION_TOKEN in r.headers.get("x-amz-security-token", "") for r in s3.requests)
    assert FILE_URL.search(str(caught.value)), caught.value
    assert "403" in str(caught.value) and "probe listing failed" in stager.stats.last_plan
    _assert_no_secret(_chain(caught.value), caplog.text, stager.stats.last_plan)


async def test_redirects_carry_no_signature_to_another_host_and_loops_end(
    s3: HostileS3, storage: Storage, digester: Digester, tmp_path: Path
) -> None:
    with HostileS3(BUCKET) as other:
        s3.script.redirect_to = other.endpoint
        # obstore follows the HEADs' redirects (the other host says absent) but
        # not the PUT's, whose body is gone: staging fails, naming the file.
        with pytest.raises(StorageError, match="307") as caught:
            await _stage(_stager(s3, storage, digester), _files(tmp_path / "in", 3))
    assert FILE_URL.search(str(caught.value)), caught.value
    assert other.seen("HEAD") and not other.objects and not s3.objects
    # The signature stays with its host (the session token goes along, but
    # the redirecting server had it already).
    for request in other.requests:
        assert "authorization" not in request.headers
        assert SECRET_KEY not in repr(request.headers)
    s3.script.redirect_to = s3.endpoint  # to itself, forever
    with pytest.raises(StorageError, match="redirect") as caught:
        await _stage(_stager(s3, storage, digester), _files(tmp_path / "more", 3))
    assert FILE_URL.search(str(caught.value)), caught.value


async def test_a_truncated_download_leaves_no_file(
    s3: HostileS3, storage: Storage, tmp_path: Path
) -> None:
    s3.objects["outputs/result.txt"] = b"the whole result\n" * 100
    s3.script.short_body = 1000  # claims more bytes than it sends, then hangs up
    dest = tmp_path / "out" / "result.txt"
    with pytest.raises(StorageError) as caught:
        async with asyncio.timeout(DEADLINE):
            await storage.download(s3.url("outputs/result.txt"), dest)
    assert s3.url("outputs/result.txt") in str(caught.value)
    assert list(dest.parent.iterdir()) == []  # no partial file, no leftover .part
