"""An in-process TES server on an ephemeral loopback port, for the embedded default.

::

    async with LocalTesServer(work_dir=tmp, runtime="local") as srv:
        client_url = srv.url      # http://127.0.0.1:<port>
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

from aiohttp import web

from .._closing import AsyncClosing
from ..config import is_loopback
from ..errors import ConfigError
from .app import ServerSettings, create_app
from .middleware import protocol_logger
from .runtime import Runtime

__all__ = ["LocalTesServer"]


class LocalTesServer(AsyncClosing):
    """A TES server running in the current event loop until closed."""

    def __init__(
        self,
        work_dir: str | Path,
        *,
        storage_url: str | None = None,
        runtime: str | Runtime = "local",
        host: str = "127.0.0.1",
        port: int = 0,
        max_tasks: int | None = None,
        noop_delay: float = 0.0,
        allow_dirs: tuple[str | Path, ...] = (),
        basic: tuple[str, str] | None = None,
        bearer: str | None = None,
        storage_config: Any = None,
        allow_remote_without_auth: bool = False,
        keep_work: bool = False,
        allow_private_urls: bool = False,
        inputs_namespace: str | None = None,
        db_busy_timeout: float = 5.0,
    ) -> None:
        open_access = basic is None and bearer is None
        if open_access and not is_loopback(host) and not allow_remote_without_auth:
            raise ConfigError(
                f"refusing to serve on non-loopback host {host} without --basic or --bearer "
                "(pass --allow-remote-without-auth to do it anyway)"
            )
        self.settings = ServerSettings(
            work_dir=Path(work_dir),
            storage_url=storage_url,
            runtime=runtime if isinstance(runtime, str) else runtime.name,
            max_tasks=max_tasks,
            noop_delay=noop_delay,
            allow_dirs=tuple(Path(d) for d in allow_dirs),
            basic=basic,
            bearer=bearer,
            storage_config=storage_config,
            keep_work=keep_work,
            allow_private_urls=allow_private_urls,
            inputs_namespace=inputs_namespace,
            db_busy_timeout=db_busy_timeout,
        )
        self._runtime = None if isinstance(runtime, str) else runtime
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        """Start serving; returns the base URL (also :attr:`url`)."""
        self.settings.work_dir.mkdir(parents=True, exist_ok=True)
        app = create_app(self.settings, runtime=self._runtime)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, logger=protocol_logger())
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port, reuse_address=True)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server  # aiohttp exposes bound sockets only here
        assert server is not None
        sockname = server.sockets[0].getsockname()  # type: ignore[attr-defined]
        host = f"[{sockname[0]}]" if ":" in sockname[0] else sockname[0]
        self.url = f"http://{host}:{sockname[1]}"
        return self.url

    async def aclose(self) -> None:
        """Stop serving, end running tasks and commit the task records."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    close = aclose

    async def __aenter__(self) -> Self:
        await self.start()
        return self
