"""Bad input, through the API and the CLI: each a clear error, nothing uploaded or submitted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tesengine import Executor, Task, TesBackend
from tesengine.config import load_config
from tesengine.errors import ConfigError, DigestError, InvalidTask, TesApiError, TesEngineError
from tesengine.server import LocalTesServer
from tests.faults.conftest import full_only, make_config
from tests.faults.procs import clean_env, write_sprocket_toml
from tests.support import require, run_cli


@dataclass
class World:
    server: LocalTesServer
    storage: Path
    root: Path

    def backend(self) -> TesBackend:
        return TesBackend(make_config(self.server.url, self.storage, self.root / "cache"))

    def uploaded(self) -> list[Path]:
        inputs = self.storage / "inputs"
        return [p for p in inputs.rglob("*") if p.is_file()] if inputs.exists() else []


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    storage = tmp_path / "storage"
    storage.mkdir()
    async with LocalTesServer(tmp_path / "srv", storage_url=storage.as_uri(), runtime="noop") as s:
        yield World(s, storage, tmp_path)


def _loop(base: Path) -> Path:
    d = base / "loop"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "up").symlink_to(d)
    return d


def _fifo(base: Path) -> Path:
    os.mkfifo(base / "pipe")
    return base / "pipe"


def _fifo_in_dir(base: Path) -> Path:
    (base / "withfifo").mkdir()
    (base / "withfifo" / "ok.txt").write_text("ok")
    os.mkfifo(base / "withfifo" / "pipe")
    return base / "withfifo"


def _non_utf8(base: Path) -> Path:
    d = base / "names"
    d.mkdir()
    with open(os.fsencode(d) + b"/bad-\xff.txt", "wb") as fh:
        fh.write(b"x")
    return d


def _task(**kw: Any) -> Task:
    return Task(kw.pop("name", "bad"), kw.pop("executors", [Executor("alpine", ["true"])]), **kw)


# name -> (make the task from a tmp dir, expected error, a word the message must hold)
CASES: dict[str, tuple[Callable[[Path], Task], type[Exception], str]] = {
    "missing file": (
        lambda b: _task(inputs={"/in/x": b / "missing.txt"}),
        InvalidTask,
        "missing.txt",
    ),
    "symlink loop": (lambda b: _task(inputs={"/in/d": _loop(b)}), DigestError, "loop"),
    "fifo": (lambda b: _task(inputs={"/in/p": _fifo(b)}), TesEngineError, "pipe"),
    "fifo in directory": (
        lambda b: _task(inputs={"/in/d": _fifo_in_dir(b)}),
        DigestError,
        "pipe",
    ),
    "non-utf8 name": (lambda b: _task(inputs={"/in/d": _non_utf8(b)}), DigestError, "UTF-8"),
    "unknown scheme": (lambda b: _task(inputs={"/in/x": "ftp://host/x"}), InvalidTask, "ftp"),
    "relative input path": (
        lambda b: _task(inputs={"in/x": "s3://bucket/x"}),
        InvalidTask,
        "in/x",
    ),
    "relative output path": (lambda b: _task(outputs={"o": "out/x"}), InvalidTask, "out/x"),
    "no executors": (lambda b: _task(executors=[]), InvalidTask, "executor"),
    "empty command": (
        lambda b: _task(executors=[Executor("alpine", [])]),
        InvalidTask,
        "command",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_bad_task_is_refused_before_anything_is_sent(
    world: World, tmp_path: Path, case: str
) -> None:
    make, error, word = CASES[case]
    task = make(tmp_path)
    async with world.backend() as backend:
        with pytest.raises(error) as info:
            await backend.submit(task)
    assert word.lower() in str(info.value).lower()
    assert "Traceback" not in str(info.value)
    assert world.uploaded() == []
    assert [t async for t in _tasks(world)] == []


async def _tasks(world: World) -> AsyncIterator[Any]:
    from tesengine.tes import TesClient

    async with TesClient(world.server.url) as client:
        async for task in client.iter_tasks():
            yield task


@pytest.mark.parametrize(
    ("kind", "entries"),
    [
        ("empty file", 0),
        ("empty directory", 0),
        ("many entries", 2_000),
        pytest.param("many entries", 10_000, marks=full_only),
        ("long command", 0),
    ],
)
async def test_unusual_but_valid_inputs_run(
    world: World, tmp_path: Path, kind: str, entries: int
) -> None:
    inputs: dict[str, Any] = {}
    command = ["true"]
    if kind == "empty file":
        (tmp_path / "empty").write_bytes(b"")
        inputs["/in/empty"] = tmp_path / "empty"
    elif kind == "empty directory":
        (tmp_path / "nothing").mkdir()
        inputs["/in/nothing"] = tmp_path / "nothing"
    elif kind == "many entries":
        many = tmp_path / "many"
        many.mkdir()
        for i in range(entries):
            (many / f"f{i:05d}").write_text(str(i))
        inputs["/in/many"] = many
    else:
        command = ["echo", "x" * 200_000]  # a 200 kB argument
    async with world.backend() as backend:
        result = await (
            await backend.submit(_task(inputs=inputs, executors=[Executor("a", command)]))
        )
    assert result.state.value == "COMPLETE"
    if kind == "many entries":
        assert len(world.uploaded()) == entries + 1  # every file, and the marker


async def test_html_instead_of_json_is_a_clear_error(tmp_path: Path, fast_retries: None) -> None:
    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<html><body>Sign in</body></html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        config = make_config(f"http://127.0.0.1:{port}/ga4gh/tes/v1", tmp_path, tmp_path / "c")
        async with TesBackend(config) as backend:
            with pytest.raises(TesApiError, match=r"malformed CreateTaskResponse.*<html>"):
                await backend.submit(_task())
    finally:
        await runner.cleanup()


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=tmp_path, env=clean_env(tmp_path), timeout=60)


@pytest.mark.parametrize(
    ("args", "status", "word"),
    [
        (["--input", "missing.txt=/in/x", "--", "true"], 2, "missing.txt"),
        (["--input", "ftp://h/x=/in/x", "--", "true"], 2, "ftp"),
        (["--output", "o=rel/x", "--", "true"], 2, "rel/x"),
        (["--input", "loop=/in/d", "--", "true"], 2, "loop"),  # unreadable: a bad task
        (["--input", "pipe=/in/p", "--", "true"], 2, "pipe"),
    ],
)
def test_cli_bad_input_one_line_no_traceback(
    noop_tes: Any, tmp_path: Path, args: list[str], status: int, word: str
) -> None:
    config = write_sprocket_toml(tmp_path / "sprocket.toml", noop_tes.url, tmp_path / "storage")
    _loop(tmp_path)
    _fifo(tmp_path)
    result = _cli(tmp_path, "run", "--config", str(config), *args)
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    assert word in result.stderr
    assert not (tmp_path / "storage" / "inputs").exists()


def test_cli_config_typo_names_the_key(tmp_path: Path) -> None:
    config = write_sprocket_toml(tmp_path / "sprocket.toml", "http://127.0.0.1:1", tmp_path)
    config.write_text(config.read_text().replace("interval =", "intervall ="))
    result = _cli(tmp_path, "run", "--config", str(config), "--", "true")
    assert result.returncode == 2
    assert "run.backends.default.intervall: unknown key" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(ConfigError, match="intervall"):
        load_config(config)


UNREADABLE = """
import asyncio, sys
from tesengine import Digester, DigestError, Executor, InvalidTask, Task
from tesengine.engine.validate import validate
try:
    validate(Task("t", [Executor("alpine", ["true"])], inputs={"/in/x": sys.argv[1]}))
except InvalidTask as exc:
    print("validate:", exc)
async def digest():
    async with Digester(cache=False) as digester:
        await digester.digest(sys.argv[1])
try:
    asyncio.run(digest())
except DigestError as exc:
    print("digest:", exc)
"""


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    """chmod 000: refused at validation and by the digester, naming the file.

    Root reads any file through its DAC capabilities, so as root the check runs
    in a child whose bounding set drops them (util-linux ``setpriv``).
    """
    secret = tmp_path / "secret.txt"
    secret.write_text("x")
    secret.chmod(0)
    argv = [sys.executable, "-c", UNREADABLE, str(secret)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        require(setpriv is not None, "setpriv (util-linux) to drop root's file capabilities")
        assert setpriv is not None
        argv = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", *argv]
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"validate: task 't': inputs['/in/x']: permission denied: {secret}"
    assert lines[1].startswith("digest: ")
    assert "secret.txt" in lines[1]
