"""A create-only PUT that got no HTTP answer is recognised as such (and only then resent).

obstore's error text is the one place that says a request timed out; this
checks the reading of it against obstore's real error for a store that
never answers, so an obstore upgrade that changes the text fails here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import obstore
import pytest
from obstore.store import S3Store

from tesengine.errors import StorageError
from tesengine.storage.ops import _Interrupted, translate
from tesengine.storage.urls import parse_url


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A port on 127.0.0.1 that accepts connections, reads, and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


def _store(port: int) -> S3Store:
    return S3Store(
        "bucket",
        endpoint=f"http://127.0.0.1:{port}",
        region="us-east-1",
        access_key_id="FAKEKEY",
        secret_access_key="FAKESECRET",
        client_options={"timeout": "300ms", "allow_http": True},
        retry_config={"max_retries": 0, "retry_timeout": timedelta(seconds=5)},
    )


async def test_a_timed_out_put_is_read_as_interrupted(silent_port: int) -> None:
    loc = parse_url("s3://bucket/inputs/file/ab")
    store = _store(silent_port)
    with pytest.raises(_Interrupted, match="PUT s3://bucket/inputs/file/ab"), translate("PUT", loc):
        await obstore.put_async(store, loc.key, b"x", mode="create")


async def test_an_error_with_an_answer_is_not_read_as_interrupted() -> None:
    loc = parse_url("s3://bucket/inputs/file/ab")
    with pytest.raises(StorageError) as caught, translate("PUT", loc):
        raise obstore.exceptions.GenericError("Generic S3 error: HTTP status 400 Bad Request")
    assert not isinstance(caught.value, _Interrupted)
