"""Security checks: secrets stay secret, credentials go only where they belong, paths stay put."""

from __future__ import annotations

import json
import logging
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tesengine import Executor, Task, TesBackend
from tesengine.auth import auth_from_config
from tesengine.config import BackendConfig, BearerAuthConfig, Config
from tesengine.errors import AuthError, ConfigError, TesApiError, TesEngineError
from tesengine.server import LocalTesServer
from tesengine.tes import Executor as WireExecutor
from tesengine.tes import TesClient, View
from tesengine.tes.models import Input as WireInput
from tesengine.tes.models import Output as WireOutput
from tesengine.tes.models import TesTask
from tests.faults.procs import PYTHON, clean_env
from tests.fixtures.tes_server import ServedTes
from tests.support import file_config

TOKEN = "tok-3f9c1a7e-never-show-me"
WRONG = "tok-wrong-2b8d-never-show-me"
PASSWORD = "pw-8e1f77-never-show-me"
S3_SECRET = "s3-secret-41c2-never-show-me"
SECRETS = (TOKEN, WRONG, PASSWORD, S3_SECRET)


def _clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


class Recorder:
    """A tiny HTTP server that records request headers; can redirect elsewhere."""

    def __init__(self, redirect_to: str | None = None) -> None:
        self.headers: list[dict[str, str]] = []
        self.redirect_to = redirect_to
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(dict(request.headers))
        if self.redirect_to is not None:
            raise web.HTTPTemporaryRedirect(self.redirect_to + request.path_qs)
        if request.path.endswith("/service-info"):
            return web.json_response(
                {
                    "id": "x",
                    "name": "x",
                    "type": {"group": "org.ga4gh", "artifact": "tes", "version": "1.1.0"},
                    "organization": {"name": "x", "url": "http://x"},
                    "version": "1",
                }
            )
        return web.Response(body=b"object bytes")


@pytest.fixture
async def serve() -> AsyncIterator[object]:
    runners: list[web.AppRunner] = []

    async def start(recorder: Recorder) -> Recorder:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", recorder.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        recorder.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return recorder

    yield start
    for runner in runners:
        await runner.cleanup()


def _bearer(token: str) -> BearerAuthConfig:
    return BearerAuthConfig(type="bearer", token=token)  # type: ignore[arg-type]


async def test_secrets_stay_out_of_logs_errors_and_requests(
    tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    storage = tmp_path / "storage"
    async with LocalTesServer(
        tmp_path / "srv", storage_url=storage.as_uri(), runtime="noop", bearer=TOKEN
    ) as server:
        config = file_config(server.url, storage, tmp_path / "cache", auth=_bearer(TOKEN))
        (tmp_path / "in.txt").write_text("data")
        async with TesBackend(config) as backend:
            run = await backend.submit(
                Task("sec", [Executor("alpine", ["true"])], inputs={"/in/x": tmp_path / "in.txt"})
            )
            await run
            full = await backend.client.get_task(run.id, View.FULL)
        _clean(full.to_json().decode())  # the TES request as the server stored it
        _clean(repr(config) + str(config) + json.dumps(config.redacted(), default=str))
        _clean(repr(backend.client) + repr(run))
        wrong = BackendConfig(**{**config.backend.model_dump(), "auth": _bearer(WRONG)})
        async with TesClient(server.url, auth=auth_from_config(wrong.auth)) as client:
            with pytest.raises(AuthError) as info:
                await client.get_task(run.id)
        _clean(str(info.value) + repr(info.value))
    assert any(r.levelno == logging.DEBUG for r in debug_logs.records)
    _clean(debug_logs.text)


def test_config_show_redacts_every_secret(tmp_path: Path) -> None:
    config = tmp_path / "sprocket.toml"
    config.write_text(
        "[run.backends.default]\n"
        'type = "tes"\nurl = "https://tes.example.org"\n'
        'inputs = "s3://b/in"\noutputs = "s3://b/out"\n'
        f'[run.backends.default.auth]\ntype = "basic"\nusername = "u"\npassword = "{PASSWORD}"\n'
        "[run.storage.s3.auth]\n"
        f'access_key_id = "AKIA"\nsecret_access_key = "{S3_SECRET}"\n'
    )
    config.chmod(0o600)
    result = subprocess.run(
        [PYTHON, "-m", "tesengine", "-vv", "config", "show", str(config)],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("<redacted>") == 2
    _clean(result.stdout + result.stderr)


async def test_authorization_never_follows_a_cross_origin_redirect(serve: object) -> None:
    target = await serve(Recorder())  # type: ignore[operator]
    redirector = await serve(Recorder(redirect_to=target.url))  # type: ignore[operator]
    auth = auth_from_config(_bearer(TOKEN))
    async with TesClient(f"{redirector.url}/ga4gh/tes/v1", auth=auth) as client:
        await client.service_info()
    assert redirector.headers[0]["Authorization"] == f"Bearer {TOKEN}"  # its own origin: yes
    assert target.headers
    assert all("Authorization" not in h for h in target.headers)


async def test_authorization_is_never_sent_to_storage(
    serve: object, inproc_tes: LocalTesServer, tmp_path: Path
) -> None:
    store = await serve(Recorder())  # type: ignore[operator]
    backend_cfg = BackendConfig(
        type="tes",
        url=inproc_tes.url,
        inputs=f"{store.url}/in",
        outputs=f"{store.url}/out",
        cache_dir=tmp_path / "cache",
        auth=_bearer(TOKEN),
    )
    async with TesBackend(Config(backend_name="s", backend=backend_cfg)) as backend:
        assert await backend.remote_file(f"{store.url}/out/x.txt").read_bytes() == b"object bytes"
    assert store.headers
    assert all("Authorization" not in h for h in store.headers)


@pytest.mark.parametrize("host", ["tes.example.org", "10.0.0.8"])
def test_credentials_over_plain_http_need_insecure(host: str) -> None:
    base = {"type": "tes", "url": f"http://{host}", "inputs": "s3://b/i", "outputs": "s3://b/o"}
    with pytest.raises(ValueError, match="refusing to send credentials over plain http"):
        BackendConfig(**base, auth=_bearer(TOKEN))
    assert BackendConfig(**base, auth=_bearer(TOKEN), insecure=True).insecure
    with pytest.raises(ConfigError, match="plain http"):
        TesClient(f"http://{host}", auth=auth_from_config(_bearer(TOKEN)))
    TesClient(f"http://{host}", auth=auth_from_config(_bearer(TOKEN)), insecure=True)


@pytest.mark.parametrize("relpath", ["../escape.txt", "a/../../escape.txt", "/etc/passwd", ".."])
async def test_output_paths_cannot_escape(tmp_path: Path, relpath: str) -> None:
    backend_cfg = BackendConfig(
        type="tes",
        url="http://127.0.0.1:1",
        inputs=(tmp_path / "s" / "in").as_uri(),
        outputs=(tmp_path / "s" / "out").as_uri(),
        cache_dir=tmp_path / "cache",
    )
    async with TesBackend(Config(backend_name="p", backend=backend_cfg)) as backend:
        directory = backend.remote_directory((tmp_path / "s" / "out" / "d").as_uri())
        with pytest.raises(TesEngineError, match="unsafe relative path"):
            directory.file(relpath)
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.parametrize(
    ("field", "where"),
    [
        ("inputs", "/etc/passwd"),
        ("inputs", "{storage}/../../../etc/passwd"),
        ("outputs", "/tmp/tesengine-outside-{n}"),
        ("outputs", "{storage}/../outside-{n}"),
    ],
)
async def test_local_server_refuses_paths_outside_its_dirs(
    local_tes: ServedTes, field: str, where: str
) -> None:
    n = uuid.uuid4().hex
    path = where.format(storage=local_tes.storage_dir, n=n)
    io = {field: [WireInput(url=f"file://{path}", path="/data/x")]}
    if field == "outputs":
        io = {field: [WireOutput(url=f"file://{path}", path="/data/x")]}
    task = TesTask(name="escape", executors=[WireExecutor(image="a", command=["true"])], **io)
    async with TesClient(local_tes.url) as client:
        with pytest.raises(TesApiError) as info:  # refused at create: nothing runs
            await client.create_task(task)
    assert info.value.status == 400
    assert info.value.body.startswith(f"{field}[0].url: ")
    assert "outside the directories this server may access" in info.value.body
    assert not Path(path).exists() or field == "inputs"
    assert not list(Path("/tmp").glob(f"*outside-{n}*"))
    assert not list(local_tes.storage_dir.parent.glob(f"outside-{n}"))
