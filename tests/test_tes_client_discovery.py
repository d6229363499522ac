"""TesClient finds the API base path: given, or discovered from service-info."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tesengine.errors import ExchangeTimeout, TesApiError, TesUnavailable
from tesengine.tes import TesClient, View
from tesengine.testing import MockTransport, Request, Response, testing

ROOT = "http://tes.test"


@pytest.fixture(autouse=True)
def _no_waiting() -> Iterator[None]:
    with testing():
        yield


Routes = dict[str, Response | Exception]


def routed(routes: Routes, seen: list[str]) -> MockTransport:
    """A transport answering each URL from ``routes`` (404 for others), noting every URL."""

    def handle(request: Request) -> Response:
        seen.append(request.url)
        answer = routes.get(request.url, Response(404))
        if isinstance(answer, Exception):
            raise answer
        return answer

    return MockTransport(handle)


@pytest.mark.parametrize("prefix", ["/ga4gh/tes/v1", "/v1"])
async def test_discovers_each_prefix(prefix: str) -> None:
    seen: list[str] = []
    routes: Routes = {
        f"{ROOT}{prefix}/service-info": Response.of_json({"name": "x"}),
        f"{ROOT}{prefix}/tasks/a?view=MINIMAL": Response.of_json({"id": "a"}),
    }
    async with TesClient(ROOT + "/", transport=routed(routes, seen)) as tes:
        await asyncio.gather(tes.get_task("a"), tes.get_task("a"))
        await tes.get_task("a")
        assert await tes.base_url() == ROOT + prefix
    info_calls = [url for url in seen if url.endswith("/service-info")]
    assert len(info_calls) == (2 if prefix == "/v1" else 1)  # discovered once, remembered


async def test_web_page_at_the_first_prefix_is_not_the_api() -> None:
    routes: Routes = {
        f"{ROOT}/ga4gh/tes/v1/service-info": Response(200, {}, b"<html>funnel ui</html>"),
        f"{ROOT}/v1/service-info": Response.of_json({"name": "funnel"}),
    }
    async with TesClient(ROOT, transport=routed(routes, [])) as tes:
        assert await tes.base_url() == f"{ROOT}/v1"


async def test_network_error_during_discovery_never_falls_through() -> None:
    seen: list[str] = []
    routes: Routes = {
        f"{ROOT}/ga4gh/tes/v1/service-info": ExchangeTimeout("timed out"),
        f"{ROOT}/v1/service-info": Response.of_json({"name": "wrong"}),
    }
    async with TesClient(ROOT, retries=2, transport=routed(routes, seen)) as tes:
        with pytest.raises(TesUnavailable, match="after 3 attempts: timed out"):
            await tes.base_url()
    assert f"{ROOT}/v1/service-info" not in seen


async def test_no_api_anywhere() -> None:
    async with TesClient(ROOT, transport=routed({}, [])) as tes:
        with pytest.raises(TesApiError, match="give the full API base URL"):
            await tes.service_info()


@pytest.mark.parametrize("url", [f"{ROOT}/v1", f"{ROOT}/api/ga4gh/tes/v1/"])
async def test_given_base_is_used_as_is(url: str) -> None:
    seen: list[str] = []
    routes: Routes = {f"{url.rstrip('/')}/tasks/a?view=BASIC": Response.of_json({"id": "a"})}
    async with TesClient(url, transport=routed(routes, seen)) as tes:
        assert (await tes.get_task("a", View.BASIC)).id == "a"
    assert len(seen) == 1
