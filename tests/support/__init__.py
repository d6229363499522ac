"""Shared test support: real components on loopback, and the rules for skipping.

In CI (``CI=true``) a missing component is a failure; elsewhere the test is
skipped and the reason is printed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tesengine.config import Config

REPO = Path(__file__).resolve().parents[2]
#: ``python -m tesengine``: the command line from this source tree.
CLI_MODULE = (sys.executable, "-m", "tesengine")
#: The installed ``tesengine`` console script, as a user types it.
CLI_SCRIPT = (str(Path(sys.executable).parent / "tesengine"),)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(available: bool, what: str) -> None:
    """Fail in CI, skip (saying why) elsewhere, when ``what`` is not available."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but not available")
    print(f"SKIP: {what} is not available")
    pytest.skip(f"{what} is not available")


def free_port() -> int:
    """An ephemeral TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], bool], *, timeout: float = 30.0, what: str = "condition"
) -> None:
    """Poll ``check`` until it is true, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


async def await_until(
    check: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition"
) -> None:
    """Poll ``check`` (plain or async) on the event loop until it is true, or fail
    after ``timeout`` seconds. The one polling loop for async tests."""
    import asyncio
    import inspect

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate ``proc`` and wait; kill it if it does not stop in 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def user_env(cache_home: Path | None = None) -> dict[str, str]:
    """The environment of a fresh user's process: no ``TESENGINE_*`` settings,
    this interpreter's scripts first on PATH, the repository importable, and,
    when given, a private cache home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESENGINE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO)
    if cache_home is not None:
        env["XDG_CACHE_HOME"] = str(cache_home)
    return env


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    command: tuple[str, ...] = CLI_MODULE,
) -> subprocess.CompletedProcess[str]:
    """``tesengine ARGS`` in ``cwd``, as a fresh user runs it; a non-zero exit is returned.

    ``env`` defaults to :func:`user_env` with a private cache in ``cwd/cache``.
    """
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=env if env is not None else user_env(cwd / "cache"),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def installed_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """:func:`run_cli` through the installed console script (``CLI_SCRIPT``)."""
    return run_cli(*args, cwd=cwd, env=env, timeout=timeout, command=CLI_SCRIPT)


def tes_spec_path() -> Path:
    """The official TES OpenAPI file: ``$TES_OPENAPI_SPEC``, else the copy in tests/spec."""
    env = os.environ.get("TES_OPENAPI_SPEC")
    return Path(env) if env else REPO / "tests" / "spec" / "tes-1.1.openapi.yaml"


def file_config(url: str, storage: Path, cache: Path, **backend: Any) -> Config:
    """A backend on the TES server at ``url`` with ``file://`` storage under ``storage``:
    inputs and outputs as a local server's storage root lays them out, fast polling."""
    from tesengine.config import BackendConfig, Config

    settings = BackendConfig(
        type="tes",
        url=url,
        inputs=(storage / "inputs").as_uri(),
        outputs=(storage / "outputs").as_uri(),
        **{"interval": 0.05, "cache_dir": cache, **backend},
    )
    return Config(backend_name="test", backend=settings)


def config_file(
    tmp_path: Path, url: str, storage: Path, *, auth: str = "", mode: int = 0o600
) -> Path:
    """The same backend as a ``conf/sprocket.toml`` (``auth``: extra TOML appended)."""
    path = tmp_path / "conf" / "sprocket.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(
        "[run.backends.default]\n"
        f'type = "tes"\nurl = "{url}"\n'
        f'inputs = "{(storage / "inputs").as_uri()}"\n'
        f'outputs = "{(storage / "outputs").as_uri()}"\n'
        "interval = 0.05\n" + auth
    )
    path.chmod(mode)
    return path
