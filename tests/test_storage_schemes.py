"""One registry of URL schemes: what storage reads, config and task validation accept."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tesengine import Executor, InvalidTask, RemoteFile, Task
from tesengine.config import BackendConfig
from tesengine.engine.validate import validate
from tesengine.storage import Storage, parse_url
from tesengine.storage.urls import SCHEMES, URL_SCHEMES, WRITABLE_SCHEMES, scheme_problem
from tests.test_engine import Env, local_env

__all__ = ["local_env"]  # the fixture, shared with test_engine

INPUTS = {
    "memory": "memory://m/in/a.txt",
    "s3a": "s3a://bkt/in/a.txt",
    "abfss": "abfss://cont@acct.dfs.core.windows.net/in/a.txt",
    "abfs": "abfs://cont@acct.dfs.core.windows.net/in/a.txt",
    "azure": "azure://cont/in/a.txt",
}


def _task(inputs: dict[str, object]) -> Task:
    sh = Executor(image="debian:stable-slim", command=["true"])
    return Task(name="t", executors=[sh], inputs=inputs)  # type: ignore[arg-type]


def test_every_registered_scheme_parses_to_its_provider() -> None:
    for scheme, provider in SCHEMES.items():
        rest = {"http": "example.org/k", "file": "/tmp/k"}.get(provider, "b/k")
        if scheme.startswith("abfs"):
            rest = "cont@acct.dfs.core.windows.net/k"
        assert parse_url(f"{scheme}://{rest}").provider == provider
    assert {"http", "https"} == URL_SCHEMES - WRITABLE_SCHEMES


@pytest.mark.parametrize("scheme", sorted(INPUTS))
def test_storage_schemes_are_accepted_as_task_inputs(scheme: str) -> None:
    plan = validate(_task({"/in/a.txt": INPUTS[scheme]}))
    assert [(i.url, i.directory) for i in plan.remote] == [(INPUTS[scheme], False)]


def test_unknown_scheme_names_every_accepted_one() -> None:
    wanted = r"unsupported URL scheme 'ftp' \(use abfs, abfss"
    with pytest.raises(InvalidTask, match=wanted) as info:
        validate(_task({"/in/x": "ftp://h/x"}))
    assert all(scheme in str(info.value) for scheme in URL_SCHEMES)
    assert scheme_problem("memory://m/k") is None
    assert scheme_problem("https://h/x", writable=True) is not None


@pytest.mark.parametrize("url", ["s3a://bkt/in", "abfss://c@acct.dfs.core.windows.net/in"])
def test_config_accepts_the_registry(url: str) -> None:
    config = BackendConfig(type="tes", url="https://tes.example", inputs=url, outputs=url)
    assert (config.inputs, config.outputs) == (url, url)


async def test_memory_input_reaches_a_task_on_the_local_server(
    local_env: Env, tmp_path: Path
) -> None:
    """memory:// is process-wide, so the in-process server reads what the test wrote."""
    url = f"memory://{uuid.uuid4().hex[:12]}/in/a b.txt"
    async with Storage() as storage:
        await storage.put_bytes(url, b"from memory\n")
    sh = Executor(image="debian:stable-slim", command=["sh", "-c", "cat '/in/a b.txt' > /out/x"])
    task = Task(name="mem", executors=[sh], inputs={"/in/a b.txt": url}, outputs={"x": "/out/x"})
    async with local_env.backend() as backend:
        result = await (await backend.submit(task))
        output = result.outputs["x"]
        assert isinstance(output, RemoteFile)
        assert await output.read_text() == "from memory\n"
