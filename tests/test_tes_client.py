"""TesClient against an in-memory TES served through aioresponses (fault injection).

The fake below answers like a TES server and can be told to fail in the
ways real servers and networks do; every request body the client sends is
checked against the official spec.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses

from tesengine.config import load_config
from tesengine.errors import AuthError, ConfigError, TesApiError, TesUnavailable
from tesengine.tes import SUBMISSION_TAG, Executor, State, Task, TesClient, View
from tesengine.tes.client import _list_url
from tesengine.tes.retry import RetryPolicy, parse_retry_after, set_testing
from tests.fixtures.tes_spec import TesSpec

ROOT = "http://127.0.0.1:9"
BASE = f"{ROOT}/ga4gh/tes/v1"


@dataclass
class Fault:
    """Answer the next matching request with ``status`` or raise ``exc``."""

    method: str
    route: str  # "create", "list", "get", "cancel", "info"
    status: int = 0
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    exc: BaseException | None = None
    after: bool = False  # handle the request first (the server acted), then fail


@dataclass
class FakeTes:
    """A TES server in memory, reachable through aioresponses."""

    base: str = BASE
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    ignore_filters: bool = False
    page_size: int = 100
    in_flight: int = 0
    max_in_flight: int = 0

    def install(self, mock: aioresponses) -> None:
        base = re.escape(self.base)
        routes = [
            ("GET", rf"{base}/service-info$", "info"),
            ("POST", rf"{base}/tasks$", "create"),
            ("GET", rf"{base}/tasks(\?.*)?$", "list"),
            ("POST", rf"{base}/tasks/[^/?]+:cancel$", "cancel"),
            ("GET", rf"{base}/tasks/[^/?]+(\?.*)?$", "get"),
        ]
        for method, pattern, route in routes:
            mock.add(
                re.compile(pattern), method, callback=self._handler(method, route), repeat=True
            )

    def count(self, method: str, route: str) -> int:
        return sum(1 for m, r, _ in self.calls if (m, r) == (method, route))

    def _handler(self, method: str, route: str) -> Any:
        async def handle(url: Any, **kwargs: Any) -> CallbackResult:
            self.calls.append((method, route, kwargs))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                for _ in range(3):  # let other requests in, to measure concurrency
                    await asyncio.sleep(0)
                fault = next(
                    (f for f in self.faults if (f.method, f.route) == (method, route)), None
                )
                if fault is not None:
                    self.faults.remove(fault)
                    result = self._answer(route, url, kwargs) if fault.after else None
                    if fault.exc is not None:
                        raise fault.exc
                    if result is None or fault.status:
                        return _result(fault.status, fault.body, fault.headers)
                return self._answer(route, url, kwargs)
            finally:
                self.in_flight -= 1

        return handle

    def _answer(self, route: str, url: Any, kwargs: dict[str, Any]) -> CallbackResult:
        if route == "info":
            return _result(200, {"id": "fake", "name": "fake", "storage": []})
        if route == "create":
            task = json.loads(kwargs["data"])
            task_id = f"task-{len(self.tasks) + 1}"
            self.tasks[task_id] = {**task, "id": task_id, "state": "QUEUED"}
            return _result(200, {"id": task_id})
        task_id = url.path.rsplit("/", 1)[-1].removesuffix(":cancel")
        if route == "cancel":
            self.tasks[task_id]["state"] = "CANCELED"
            return _result(200, {})
        if route == "get":
            if task_id not in self.tasks:
                return _result(404, {"error": f"task {task_id} not found"})
            return _result(200, self.tasks[task_id])
        return self._list(dict(url.query), parse_qsl(url.query_string, keep_blank_values=True))

    def _list(self, query: dict[str, str], pairs: list[tuple[str, str]]) -> CallbackResult:
        keys = [v for k, v in pairs if k == "tag_key"]
        values = [v for k, v in pairs if k == "tag_value"]
        found = list(self.tasks.values())
        if not self.ignore_filters:
            for key, value in zip(keys, values, strict=True):
                found = [t for t in found if (t.get("tags") or {}).get(key) == value]
        start = int(query.get("page_token", "0"))
        page = found[start : start + self.page_size]
        doc: dict[str, Any] = {"tasks": page}
        if start + self.page_size < len(found):
            doc["next_page_token"] = str(start + self.page_size)
        return _result(200, doc)


def _result(status: int, body: Any, headers: dict[str, str] | None = None) -> CallbackResult:
    raw = body if isinstance(body, str | bytes) else json.dumps(body)
    return CallbackResult(status=status, body=raw, headers=headers or {})


class _Response(aiohttp.ClientResponse):
    """aiohttp 3.14 requires ``stream_writer``, which aioresponses 0.7.9 does not pass
    (pnuckowski/aioresponses#289); a finished upload of size 0 stands in for it."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


@pytest.fixture(autouse=True)
def _aioresponses_on_aiohttp_314(monkeypatch: pytest.MonkeyPatch) -> None:
    import aioresponses.core

    monkeypatch.setattr(aioresponses.core, "ClientResponse", _Response)


@pytest.fixture(autouse=True)
def _no_waiting() -> Iterator[None]:
    set_testing(True)
    yield
    set_testing(False)


@pytest.fixture
def fake() -> Iterator[FakeTes]:
    server = FakeTes()
    with aioresponses() as mock:
        server.install(mock)
        yield server


@pytest.fixture
async def client() -> AsyncIterator[TesClient]:
    async with TesClient(BASE, retries=3) as tes:
        yield tes


def hello(name: str = "hello") -> Task:
    return Task(name=name, executors=[Executor(image="alpine", command=["echo", "hi"])])


def _posted(fake: FakeTes) -> list[dict[str, Any]]:
    return [json.loads(kw["data"]) for m, r, kw in fake.calls if (m, r) == ("POST", "create")]


# --- the happy path ----------------------------------------------------------------------


async def test_create_get_list_cancel(fake: FakeTes, client: TesClient, tes_spec: TesSpec) -> None:
    task_id = await client.create_task(hello())
    [body] = _posted(fake)
    tes_spec.validate("tesTask", body)
    assert body["tags"][SUBMISSION_TAG]
    assert "id" not in body and "state" not in body

    task = await client.get_task(task_id, View.FULL)
    assert (task.id, task.state, task.name) == (task_id, State.QUEUED, "hello")
    get_kwargs = fake.calls[-1][2]
    assert get_kwargs["headers"]["Accept"] == "application/json"

    page = await client.list_tasks(tags={SUBMISSION_TAG: body["tags"][SUBMISSION_TAG]})
    assert [t.id for t in page.tasks] == [task_id]

    await client.cancel_task(task_id)
    assert (await client.get_task(task_id)).state is State.CANCELED


async def test_existing_submission_tag_is_kept(fake: FakeTes, client: TesClient) -> None:
    await client.create_task(
        hello().model_copy(update={"tags": {SUBMISSION_TAG: "mine", "a": "b"}})
    )
    assert _posted(fake)[0]["tags"] == {SUBMISSION_TAG: "mine", "a": "b"}


async def test_all_pages(fake: FakeTes, client: TesClient) -> None:
    fake.page_size = 2
    for i in range(5):
        await client.create_task(hello(f"t{i}").model_copy(update={"tags": {"run": "r1"}}))
    await client.create_task(hello("not in the run"))
    ids = [t.id async for t in client.iter_tasks(tags={"run": "r1"}, page_size=2)]
    assert ids == [f"task-{i}" for i in range(1, 6)]
    assert fake.count("GET", "list") == 3


async def test_list_states_reads_bare_pairs(fake: FakeTes, client: TesClient) -> None:
    fake.page_size = 2
    for i in range(3):
        await client.create_task(hello(f"t{i}").model_copy(update={"tags": {"run": "r1"}}))
    fake.tasks["task-2"]["state"] = "RUNNING"
    first = await client.list_states(tags={"run": "r1"}, page_size=2)
    assert first.states == (("task-1", State.QUEUED), ("task-2", State.RUNNING))
    assert first.next_page_token
    rest = await client.list_states(tags={"run": "r1"}, page_token=first.next_page_token)
    assert rest.states == (("task-3", State.QUEUED),)
    assert rest.next_page_token is None


async def test_list_states_cut_short_is_retried_then_reported(
    fake: FakeTes, client: TesClient
) -> None:
    fake.faults.extend([Fault("GET", "list", 200, '{"tasks": [{"id": "x", "st')] * 4)
    with pytest.raises(TesUnavailable, match=r"malformed ListTasksResponse from server"):
        await client.list_states()
    assert fake.count("GET", "list") == 4
    fake.faults.append(Fault("GET", "list", 200, {"tasks": [{"state": "RUNNING"}]}))
    with pytest.raises(TesApiError, match="malformed"):
        await client.list_states()


def test_list_query_keeps_tag_pairs_in_order() -> None:
    url = _list_url(
        BASE,
        name_prefix="t",
        state="running",
        tags={"a": "1", "b": ""},
        view=View.BASIC,
        page_size=7,
        page_token="p/2",
    )
    assert url == (
        f"{BASE}/tasks?view=BASIC&name_prefix=t&state=RUNNING"
        "&tag_key=a&tag_value=1&tag_key=b&tag_value=&page_size=7&page_token=p%2F2"
    )


async def test_repeated_page_token_ends_iteration(client: TesClient) -> None:
    with aioresponses() as mock:
        page = {"tasks": [{"id": "a", "state": "QUEUED"}], "next_page_token": "same"}
        mock.get(re.compile(rf"{re.escape(BASE)}/tasks\?.*"), payload=page, repeat=True)
        ids = [t.id async for t in client.iter_tasks()]
    assert ids == ["a", "a"]


# --- retries -----------------------------------------------------------------------------


async def test_503_then_200(fake: FakeTes, client: TesClient) -> None:
    task_id = await client.create_task(hello())
    fake.faults.append(Fault("GET", "get", 503, {"error": "busy"}))
    task = await client.get_task(task_id)
    assert task.id == task_id
    assert fake.count("GET", "get") == 2


async def test_read_timeout_is_retried(fake: FakeTes, client: TesClient) -> None:
    task_id = await client.create_task(hello())
    fake.faults.append(Fault("GET", "get", exc=TimeoutError()))
    assert (await client.get_task(task_id)).id == task_id


async def test_429_waits_retry_after_seconds(
    fake: FakeTes, client: TesClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_testing(False)  # real backoff decisions, on a fake clock
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float, result: Any = None) -> Any:
        if delay > 0:
            waits.append(delay)
        return await real_sleep(0, result)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    task_id = await client.create_task(hello())
    fake.faults.append(Fault("GET", "get", 429, {"error": "slow down"}, {"Retry-After": "2"}))
    assert (await client.get_task(task_id)).id == task_id
    assert waits == [2.0]


def test_retry_after_http_date_and_garbage() -> None:
    now = dt.datetime(2024, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("Mon, 01 Jan 2024 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Mon, 01 Jan 2024 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_backoff_is_full_jitter_and_capped() -> None:
    seen: list[tuple[float, float]] = []

    def rng(low: float, high: float) -> float:
        seen.append((low, high))
        return high

    policy = RetryPolicy(wait_initial=0.5, wait_max=4.0, retry_after_max=60, rng=rng)
    delays = [policy.delay(n, TimeoutError()) for n in range(1, 6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert all(low == 0.0 for low, _ in seen)
    from tesengine.tes.retry import RetryableStatus

    assert policy.delay(1, RetryableStatus(429, "", 3600)) == 60


async def test_retries_exhausted(fake: FakeTes, client: TesClient) -> None:
    task_id = await client.create_task(hello())
    fake.faults += [Fault("GET", "get", 503, {"error": "db down"}) for _ in range(10)]
    with pytest.raises(TesUnavailable, match=r"after 4 attempts: HTTP 503: db down"):
        await client.get_task(task_id)
    assert fake.count("GET", "get") == 4


# --- no duplicate tasks ------------------------------------------------------------------


async def test_reset_after_create_adopts_the_task(fake: FakeTes, client: TesClient) -> None:
    fake.faults.append(Fault("POST", "create", exc=aiohttp.ServerDisconnectedError(), after=True))
    task_id = await client.create_task(hello())
    assert list(fake.tasks) == [task_id]
    assert fake.count("POST", "create") == 1
    assert fake.count("GET", "list") == 1


async def test_adoption_checks_tags_when_the_server_ignores_the_filter(
    fake: FakeTes, client: TesClient
) -> None:
    fake.ignore_filters, fake.page_size = True, 2
    for i in range(5):
        await client.create_task(hello(f"other{i}"))
    fake.faults.append(Fault("POST", "create", exc=TimeoutError(), after=True))
    task_id = await client.create_task(hello())
    assert task_id == "task-6" and len(fake.tasks) == 6
    assert fake.count("GET", "list") == 3  # walked every page


async def test_listed_task_that_get_cannot_find_is_not_adopted(
    fake: FakeTes, client: TesClient
) -> None:
    # An old tesengine serve: 500 after a failed commit, yet the task is listed (not stored).
    fake.faults.append(Fault("POST", "create", 500, {"error": "internal"}, after=True))
    fake.faults.append(Fault("GET", "get", 404, {"error": "not found"}))
    task_id = await client.create_task(hello())
    assert task_id == "task-2"  # posted again instead of adopting the phantom task-1
    assert (fake.count("GET", "list"), fake.count("GET", "get")) == (1, 1)
    assert fake.count("POST", "create") == 2


async def test_5xx_without_creation_posts_again_once(fake: FakeTes, client: TesClient) -> None:
    fake.faults.append(Fault("POST", "create", 502, "bad gateway"))
    task_id = await client.create_task(hello())
    assert list(fake.tasks) == [task_id]
    assert fake.count("POST", "create") == 2
    assert fake.count("GET", "list") == 1
    first, second = _posted(fake)
    assert first == second  # the same submission tag both times


async def test_refused_connection_posts_again_without_lookup(
    fake: FakeTes, client: TesClient
) -> None:
    refused = aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 9, False, True, None, None, None),
        ConnectionRefusedError(111, "refused"),
    )
    fake.faults.append(Fault("POST", "create", exc=refused))
    await client.create_task(hello())
    assert (fake.count("POST", "create"), fake.count("GET", "list"), len(fake.tasks)) == (2, 0, 1)


# --- errors ------------------------------------------------------------------------------


async def test_400_fails_at_once_with_the_server_message(fake: FakeTes, client: TesClient) -> None:
    fake.faults.append(Fault("POST", "create", 400, {"error": "executor 0: image is required"}))
    with pytest.raises(TesApiError) as info:
        await client.create_task(hello())
    assert info.value.status == 400 and info.value.method == "POST"
    assert "executor 0: image is required" in str(info.value)
    assert info.value.url == f"{BASE}/tasks"
    assert fake.count("POST", "create") == 1


async def test_404_is_not_retried(fake: FakeTes, client: TesClient) -> None:
    with pytest.raises(TesApiError, match="task nope not found") as info:
        await client.get_task("nope")
    assert info.value.status == 404 and fake.count("GET", "get") == 1


async def test_malformed_json_fails_clearly(fake: FakeTes, client: TesClient) -> None:
    # JSON cut short in transit is retried like any transient fault, then reported
    fake.faults.extend([Fault("GET", "get", 200, '{"id": "x", "state": ')] * 4)
    with pytest.raises(TesUnavailable, match=r"malformed Task from server"):
        await client.get_task("x")
    assert fake.count("GET", "get") == 4


async def test_html_instead_of_json_fails_at_once(fake: FakeTes, client: TesClient) -> None:
    html = {"Content-Type": "text/html"}
    fake.faults.append(Fault("GET", "get", 200, "<html>login</html>", headers=html))
    with pytest.raises(TesApiError, match=r"malformed Task from server") as info:
        await client.get_task("x")
    assert info.value.status == 200 and fake.count("GET", "get") == 1


async def test_unknown_fields_and_states(fake: FakeTes, client: TesClient) -> None:
    fake.tasks["t"] = {"id": "t", "state": "WARMING_UP", "vendor": {"node": "n1"}}
    task = await client.get_task("t")
    assert task.state is State.UNKNOWN
    assert task.model_extra == {"vendor": {"node": "n1"}}


async def test_401_without_credentials_is_an_auth_error(fake: FakeTes, client: TesClient) -> None:
    fake.faults.append(Fault("GET", "get", 401, {"error": "login required"}))
    with pytest.raises(AuthError, match="no credentials are configured: login required"):
        await client.get_task("x")


# --- base path discovery -----------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/ga4gh/tes/v1", "/v1"])
async def test_discovers_each_prefix(prefix: str) -> None:
    with aioresponses() as mock:
        if prefix == "/v1":
            mock.get(f"{ROOT}/ga4gh/tes/v1/service-info", status=404)
        mock.get(f"{ROOT}{prefix}/service-info", payload={"name": "x"})
        mock.get(f"{ROOT}{prefix}/tasks/a?view=MINIMAL", payload={"id": "a"}, repeat=True)
        async with TesClient(ROOT + "/") as tes:
            await asyncio.gather(tes.get_task("a"), tes.get_task("a"))
            await tes.get_task("a")
            assert await tes.base_url() == ROOT + prefix
        info_calls = [k for k in mock.requests if str(k[1]).endswith("/service-info")]
    assert len(info_calls) == (2 if prefix == "/v1" else 1)  # discovered once, remembered


async def test_web_page_at_the_first_prefix_is_not_the_api() -> None:
    with aioresponses() as mock:
        mock.get(f"{ROOT}/ga4gh/tes/v1/service-info", body="<html>funnel ui</html>")
        mock.get(f"{ROOT}/v1/service-info", payload={"name": "funnel"})
        async with TesClient(ROOT) as tes:
            assert await tes.base_url() == f"{ROOT}/v1"


async def test_network_error_during_discovery_never_falls_through() -> None:
    with aioresponses() as mock:
        mock.get(f"{ROOT}/ga4gh/tes/v1/service-info", exception=TimeoutError(), repeat=True)
        mock.get(f"{ROOT}/v1/service-info", payload={"name": "wrong"})
        async with TesClient(ROOT, retries=2) as tes:
            with pytest.raises(TesUnavailable):
                await tes.base_url()
        assert not any(str(k[1]) == f"{ROOT}/v1/service-info" for k in mock.requests)


async def test_no_api_anywhere() -> None:
    with aioresponses() as mock:
        mock.get(f"{ROOT}/ga4gh/tes/v1/service-info", status=404)
        mock.get(f"{ROOT}/v1/service-info", status=404)
        async with TesClient(ROOT) as tes:
            with pytest.raises(TesApiError, match="give the full API base URL"):
                await tes.service_info()


@pytest.mark.parametrize("url", [f"{ROOT}/v1", f"{ROOT}/api/ga4gh/tes/v1/"])
async def test_given_base_is_used_as_is(url: str) -> None:
    with aioresponses() as mock:
        mock.get(f"{url.rstrip('/')}/tasks/a?view=BASIC", payload={"id": "a"})
        async with TesClient(url) as tes:
            assert (await tes.get_task("a", View.BASIC)).id == "a"
        assert len(mock.requests) == 1


# --- limits and construction -------------------------------------------------------------


async def test_concurrency_is_bounded(fake: FakeTes) -> None:
    fake.tasks["t"] = {"id": "t", "state": "RUNNING"}
    async with TesClient(BASE, max_concurrency=4) as tes:
        tasks = await asyncio.gather(*(tes.get_task("t") for _ in range(40)))
    assert len(tasks) == 40
    assert fake.max_in_flight == 4


def test_from_config(tmp_path: Any) -> None:
    path = tmp_path / "sprocket.toml"
    path.write_text(
        "[run.backends.default]\n"
        'type = "tes"\nurl = "https://tes.example.org/"\n'
        'inputs = "s3://b/in"\noutputs = "s3://b/out"\nmax_concurrency = 7\nretries = 2\n'
        '[run.backends.default.auth]\ntype = "bearer"\ntoken = "s3cr3t"\n'
    )
    path.chmod(0o600)
    tes = TesClient.from_config(load_config(path))
    assert tes.url == "https://tes.example.org"
    assert tes._transport.policy.retries == 2
    assert "s3cr3t" not in repr(tes)


def test_credentials_over_plain_http_are_refused() -> None:
    from tesengine.auth import BearerToken

    with pytest.raises(ConfigError, match=r"plain http to tes\.example\.org"):
        TesClient("http://tes.example.org", auth=BearerToken("t"))
    TesClient("http://tes.example.org", auth=BearerToken("t"), insecure=True)
    TesClient("http://localhost:8000", auth=BearerToken("t"))
