"""tesengine.testing as an embedder uses it: MockTransport and FakeTes, no server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tesengine import Executor, Task, TaskFailed, TesBackend
from tesengine.config import BackendConfig, Config
from tesengine.errors import ConfigError, ConnectError, ProtocolError, TesApiError, TesUnavailable
from tesengine.tes import State, TesClient, View
from tesengine.tes import models as wire
from tesengine.tes.transport import Transport
from tesengine.testing import FakeTes, Fault, MockTransport, Request, Response, set_testing

BASE = "http://tes.test/ga4gh/tes/v1"


@pytest.fixture(autouse=True)
def _test_mode() -> Iterator[None]:
    set_testing(True)
    yield
    set_testing(False)


async def test_handler_may_be_plain_or_async() -> None:
    seen: list[Request] = []

    def plain(request: Request) -> Response:
        seen.append(request)
        return Response.of_json({"id": "a", "state": "RUNNING"})

    async def coroutine(request: Request) -> Response:
        return plain(request)

    for handler in (plain, coroutine):
        transport = MockTransport(handler)
        assert isinstance(transport, Transport)
        async with TesClient(BASE, transport=transport) as tes:
            assert (await tes.get_task("a")).state is State.RUNNING
    assert [(r.method, r.path, r.query) for r in seen] == [
        ("GET", "/ga4gh/tes/v1/tasks/a", [("view", "MINIMAL")])
    ] * 2


async def test_a_handler_that_raises_a_transport_error_is_retried_like_the_network() -> None:
    calls = 0

    def refuse(_request: Request) -> Response:
        nonlocal calls
        calls += 1
        raise ConnectError("connection refused", unreachable=True)

    async with TesClient(BASE, transport=MockTransport(refuse), retries=8) as tes:
        with pytest.raises(TesUnavailable, match=r"cannot reach the TES server \(connection"):
            await tes.get_task("a")
    assert calls == 3  # a server never reached: first_contact_retries (2), not all 8


async def test_redirects_and_headers_go_through_the_client_not_the_transport() -> None:
    def handle(request: Request) -> Response:
        if request.path.endswith("/old"):
            return Response(307, {"location": "/ga4gh/tes/v1/tasks/new?view=MINIMAL"})
        return Response.of_json({"id": request.path.rsplit("/", 1)[-1]})

    async with TesClient(BASE, transport=MockTransport(handle)) as tes:
        assert (await tes.get_task("old")).id == "new"  # Location read whatever its case

    async with TesClient(BASE, transport=MockTransport(lambda _: Response(302, {}))) as tes:
        with pytest.raises(TesApiError, match="HTTP 302"):  # no Location: an error status
            await tes.get_task("x")

    bad = MockTransport(lambda _: Response(302, {"Location": "http://[bad"}))
    async with TesClient(BASE, transport=bad) as tes:
        with pytest.raises(ProtocolError, match="invalid Location"):
            await tes.get_task("x")


async def test_an_injected_transport_is_left_open() -> None:
    closed: list[bool] = []

    class Tracked(MockTransport):
        async def aclose(self) -> None:
            closed.append(True)

    async with TesClient(BASE, transport=Tracked(FakeTes(base=BASE))):
        pass
    assert closed == []  # whoever creates a resource closes it


def test_a_session_and_a_transport_together_are_refused() -> None:
    import aiohttp

    with pytest.raises(ConfigError, match="a session or a transport, not both"):
        TesClient(BASE, transport=MockTransport(FakeTes()), session=object())  # type: ignore[arg-type]
    assert aiohttp  # the session type is aiohttp's; any object shows the check


async def test_fake_tes_views_lifecycle_and_cancel() -> None:
    fake = FakeTes(lifecycle=(State.RUNNING, State.COMPLETE))
    async with TesClient(fake.base, transport=MockTransport(fake)) as tes:
        task = wire.TesTask(
            name="t",
            inputs=[wire.Input(path="/in/a", content="hello")],
            executors=[wire.Executor(image="alpine", command=["true"])],
        )
        task_id = await tes.create_task(task)
        assert (await tes.get_task(task_id)).state is State.RUNNING
        full = await tes.get_task(task_id, View.FULL)
        assert full.state is State.COMPLETE
        assert full.logs and full.logs[0].logs[0].exit_code == 0
        assert full.inputs and full.inputs[0].content == "hello"
        basic = (await tes.list_tasks(view=View.BASIC)).tasks[0]
        assert basic.inputs and basic.inputs[0].content is None  # BASIC omits content
        minimal = (await tes.list_tasks()).tasks[0]
        assert (minimal.name, minimal.state) == (None, State.COMPLETE)

        other = await tes.create_task(task)
        await tes.cancel_task(other)
        assert (await tes.get_task(other)).state is State.CANCELED
        assert [t.id async for t in tes.iter_tasks(state=State.CANCELED)] == [other]
        assert [t.id async for t in tes.iter_tasks(name_prefix="nope")] == []
    assert fake.count("POST", "create") == 2


async def test_fake_tes_answers_an_unknown_route_with_404() -> None:
    fake = FakeTes()
    response = await MockTransport(fake).send(Request("GET", f"{fake.base}/nowhere"))
    assert response.status == 404
    response = await MockTransport(fake).send(Request("GET", "http://elsewhere/x"))
    assert response.status == 404


def _config(tmp_path: Path, url: str) -> Config:
    backend = BackendConfig(
        type="tes",
        url=url,
        inputs=(tmp_path / "in").as_uri(),
        outputs=(tmp_path / "out").as_uri(),
        cache_dir=tmp_path / "cache",
        interval=0.01,
    )
    return Config(backend_name="fake", backend=backend)


async def test_an_embedder_runs_tasks_on_the_fake_without_a_server(tmp_path: Path) -> None:
    fake = FakeTes(lifecycle=(State.RUNNING, State.COMPLETE))
    client = TesClient(fake.base, transport=MockTransport(fake))
    async with client, TesBackend(_config(tmp_path, fake.base), client=client) as backend:
        run = await backend.submit(Task(name="ok", executors=[Executor(image="a", command=["x"])]))
        result = await run
        assert result.state is State.COMPLETE
        assert result.exit_codes == (0,)

        fake.lifecycle = (State.RUNNING, State.EXECUTOR_ERROR)
        failing = await backend.submit(
            Task(name="bad", executors=[Executor(image="a", command=["x"])])
        )
        with pytest.raises(TaskFailed, match="EXECUTOR_ERROR"):
            await failing
    [first, _] = fake.posted()
    assert first["name"] == "ok" and "tesengine-run" in first["tags"]


async def test_faults_fail_the_next_matching_request_only() -> None:
    fake = FakeTes()
    fake.faults.append(Fault("GET", "info", 400, {"error": "nope"}))
    async with TesClient(fake.base, transport=MockTransport(fake)) as tes:
        with pytest.raises(Exception, match="HTTP 400: nope"):
            await tes.service_info()
        assert (await tes.service_info()).name == "fake"
