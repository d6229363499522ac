"""TesClient against the in-memory TES of tesengine.testing (fault injection).

:class:`~tesengine.testing.FakeTes` answers like a TES server through a
:class:`~tesengine.testing.MockTransport` and can be told to fail in the
ways real servers and networks do; every request body the client sends is
checked against the official spec.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tesengine.config import load_config
from tesengine.errors import (
    AuthError,
    ConfigError,
    ConnectError,
    ConnectionLost,
    ExchangeTimeout,
    TesApiError,
    TesUnavailable,
)
from tesengine.tes import SUBMISSION_TAG, Executor, State, TesClient, TesTask, View
from tesengine.tes.client import _list_url
from tesengine.tes.query import TaskQuery
from tesengine.tes.retry import set_testing
from tesengine.tes.transport import RequestCounts
from tesengine.testing import FakeTes, Fault, MockTransport, Request, Response
from tests.fixtures.tes_spec import TesSpec

ROOT = "http://tes.test"
BASE = f"{ROOT}/ga4gh/tes/v1"


@pytest.fixture(autouse=True)
def _no_waiting() -> Iterator[None]:
    set_testing(True)
    yield
    set_testing(False)


@pytest.fixture
def fake() -> FakeTes:
    return FakeTes(base=BASE)


@pytest.fixture
async def client(fake: FakeTes) -> AsyncIterator[TesClient]:
    async with TesClient(BASE, retries=3, transport=MockTransport(fake)) as tes:
        yield tes


def hello(name: str = "hello") -> TesTask:
    return TesTask(name=name, executors=[Executor(image="alpine", command=["echo", "hi"])])


# --- the happy path ----------------------------------------------------------------------


async def test_create_get_list_cancel(fake: FakeTes, client: TesClient, tes_spec: TesSpec) -> None:
    task_id = await client.create_task(hello())
    [body] = fake.posted()
    tes_spec.validate("tesTask", body)
    assert body["tags"][SUBMISSION_TAG]
    assert "id" not in body and "state" not in body

    task = await client.get_task(task_id, View.FULL)
    assert (task.id, task.state, task.name) == (task_id, State.QUEUED, "hello")
    _, get = fake.requests[-1]
    assert get.headers["Accept"] == "application/json"

    page = await client.list_tasks(tags={SUBMISSION_TAG: body["tags"][SUBMISSION_TAG]})
    assert [t.id for t in page.tasks] == [task_id]

    await client.cancel_task(task_id)
    assert (await client.get_task(task_id)).state is State.CANCELED


async def test_existing_submission_tag_is_kept(fake: FakeTes, client: TesClient) -> None:
    await client.create_task(
        hello().model_copy(update={"tags": {SUBMISSION_TAG: "mine", "a": "b"}})
    )
    assert fake.posted()[0]["tags"] == {SUBMISSION_TAG: "mine", "a": "b"}


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
    query = TaskQuery.of(
        name_prefix="t",
        state="running",
        tags={"a": "1", "b": ""},
        view=View.BASIC,
        page_size=7,
        page_token="p/2",
    )
    assert query.tags == (("a", "1"), ("b", "")) and query.state is State.RUNNING
    assert _list_url(BASE, query) == (
        f"{BASE}/tasks?view=BASIC&name_prefix=t&state=RUNNING"
        "&tag_key=a&tag_value=1&tag_key=b&tag_value=&page_size=7&page_token=p%2F2"
    )
    assert TaskQuery.of(query, name_prefix="", page_token=None).params()[:2] == [
        ("view", "BASIC"),
        ("state", "RUNNING"),
    ]
    assert query.page("3").page_token == "3" and query.page_token == "p/2"  # frozen
    with pytest.raises(dataclasses.FrozenInstanceError):
        query.view = View.FULL  # type: ignore[misc]


async def test_a_query_value_and_keywords_ask_the_same(fake: FakeTes, client: TesClient) -> None:
    for i in range(3):
        await client.create_task(hello(f"t{i}").model_copy(update={"tags": {"run": "r1"}}))
    query = TaskQuery.of(tags={"run": "r1"}, view=View.BASIC, page_size=2)
    by_value = [t.name async for t in client.iter_tasks(query)]
    by_keywords = [t.name async for t in client.iter_tasks(tags={"run": "r1"}, view=View.BASIC)]
    assert by_value == by_keywords == ["t0", "t1", "t2"]
    page = await client.list_tasks(query, page_size=1)  # keywords change the value
    assert [t.name for t in page.tasks] == ["t0"] and page.next_page_token == "1"
    _, last = fake.requests[-1]
    assert dict(last.query)["page_size"] == "1"
    states = await client.list_states(query)  # always MINIMAL
    assert dict(fake.requests[-1][1].query)["view"] == "MINIMAL"
    assert [state for _, state in states.states] == [State.QUEUED, State.QUEUED]


async def test_repeated_page_token_ends_iteration() -> None:
    page = {"tasks": [{"id": "a", "state": "QUEUED"}], "next_page_token": "same"}
    async with TesClient(BASE, transport=MockTransport(lambda _: Response.of_json(page))) as tes:
        ids = [t.id async for t in tes.iter_tasks()]
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
    fake.faults.append(Fault("GET", "get", exc=ExchangeTimeout("timed out")))
    assert (await client.get_task(task_id)).id == task_id


async def test_retries_exhausted(fake: FakeTes, client: TesClient) -> None:
    task_id = await client.create_task(hello())
    fake.faults += [Fault("GET", "get", 503, {"error": "db down"}) for _ in range(10)]
    with pytest.raises(TesUnavailable, match=r"after 4 attempts: HTTP 503: db down"):
        await client.get_task(task_id)
    assert fake.count("GET", "get") == 4


# --- no duplicate tasks ------------------------------------------------------------------


async def test_reset_after_create_adopts_the_task(fake: FakeTes, client: TesClient) -> None:
    lost = ConnectionLost("the server closed the connection")
    fake.faults.append(Fault("POST", "create", exc=lost, after=True))
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
    fake.faults.append(Fault("POST", "create", exc=ExchangeTimeout("timed out"), after=True))
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
    first, second = fake.posted()
    assert first == second  # the same submission tag both times


async def test_refused_connection_posts_again_without_lookup(
    fake: FakeTes, client: TesClient
) -> None:
    refused = ConnectError("connection refused", unreachable=True)
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
    with pytest.raises(TesUnavailable, match=r"malformed TesTask from server"):
        await client.get_task("x")
    assert fake.count("GET", "get") == 4


async def test_html_instead_of_json_fails_at_once(fake: FakeTes, client: TesClient) -> None:
    html = {"Content-Type": "text/html"}
    fake.faults.append(Fault("GET", "get", 200, "<html>login</html>", headers=html))
    with pytest.raises(TesApiError, match=r"malformed TesTask from server") as info:
        await client.get_task("x")
    assert info.value.status == 200 and fake.count("GET", "get") == 1


async def test_unknown_fields_and_states(fake: FakeTes, client: TesClient) -> None:
    fake.tasks["t"] = {"id": "t", "state": "WARMING_UP", "vendor": {"node": "n1"}}
    task = await client.get_task("t", View.FULL)
    assert task.state is State.UNKNOWN
    assert task.model_extra == {"vendor": {"node": "n1"}}


async def test_401_without_credentials_is_an_auth_error(fake: FakeTes, client: TesClient) -> None:
    fake.faults.append(Fault("GET", "get", 401, {"error": "login required"}))
    with pytest.raises(AuthError, match="no credentials are configured: login required"):
        await client.get_task("x")


# --- limits and construction -------------------------------------------------------------


async def test_concurrency_is_bounded(fake: FakeTes) -> None:
    fake.tasks["t"] = {"id": "t", "state": "RUNNING"}
    async with TesClient(BASE, max_concurrency=4, transport=MockTransport(fake)) as tes:
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
    assert tes._channel.policy.retries == 2
    assert "s3cr3t" not in repr(tes)


def test_credentials_over_plain_http_are_refused() -> None:
    from tesengine.auth import BearerToken

    with pytest.raises(ConfigError, match=r"plain http to tes\.example\.org"):
        TesClient("http://tes.example.org", auth=BearerToken("t"))
    TesClient("http://tes.example.org", auth=BearerToken("t"), insecure=True)
    TesClient("http://localhost:8000", auth=BearerToken("t"))


# --- request counts ----------------------------------------------------------------------


async def test_counts_requests_sent_and_retries(fake: FakeTes, client: TesClient) -> None:
    assert client.counts == RequestCounts(0, 0)
    task_id = await client.create_task(hello())
    await client.get_task(task_id)
    assert client.counts == RequestCounts(requests=2, retries=0)
    fake.faults += [Fault("GET", "get", 503, "busy"), Fault("GET", "get", 502, "bad")]
    await client.get_task(task_id)
    assert client.counts == RequestCounts(requests=5, retries=2)
    requests, retries = client.counts  # what the run report's counter unpacks
    assert (requests, retries) == tuple(client.counts) == (5, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        client.counts.requests = 0  # type: ignore[misc]


async def test_counts_leave_out_connections_never_made_and_count_redirect_hops() -> None:
    def refuse(_request: Request) -> Response:
        raise ConnectError("connection refused", unreachable=True)

    async with TesClient(BASE, transport=MockTransport(refuse)) as tes:
        with pytest.raises(TesUnavailable):
            await tes.get_task("a")
        assert tes.counts == RequestCounts(requests=0, retries=2)  # first_contact_retries

    def moved(request: Request) -> Response:
        if request.path.endswith("/old"):
            return Response(308, {"Location": f"{BASE}/tasks/new"})
        return Response.of_json({"id": "new"})

    async with TesClient(BASE, transport=MockTransport(moved)) as tes:
        await tes.get_task("old")
        assert tes.counts == RequestCounts(requests=2, retries=0)
