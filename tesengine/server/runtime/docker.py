"""The docker runtime: each executor is ``docker run`` of its image (or podman).

UNTESTED: no images or daemon are available where tesengine is tested. The
task's container paths are bound from its work directory exactly as for the
local runtime; cancelling kills the container by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil

from .base import ExecRequest, RuntimeUnavailable
from .process import run_process

__all__ = ["DockerRuntime"]


class DockerRuntime:
    """Runs executors with ``docker run --rm`` (or ``podman``)."""

    name = "docker"
    stages_files = True
    reserved = frozenset({"proc", "dev", "sys"})

    def __init__(self, cli: str | None = None) -> None:
        self._cli = cli or shutil.which("docker") or shutil.which("podman")

    def describe(self) -> str:
        """One line for service-info."""
        return f"docker runtime ({self._cli or 'no docker/podman found'}); untested"

    async def check(self) -> None:
        """Ask the daemon for its version; raise when it does not answer."""
        if not self._cli:
            raise RuntimeUnavailable("the docker runtime needs docker or podman on PATH")
        proc = await asyncio.create_subprocess_exec(
            self._cli, "version", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _out, err = await proc.communicate()
        if proc.returncode != 0:
            detail = err.decode(errors="replace").strip()[:300]
            raise RuntimeUnavailable(f"{self._cli} is not usable: {detail}")

    async def run(self, request: ExecRequest) -> int:
        """``docker run`` the executor; cancelling kills the container."""
        if not self._cli:
            raise RuntimeUnavailable("the docker runtime needs docker or podman on PATH")
        name = f"tes-{request.task_id}-{request.index}"
        argv = [self._cli, "run", "--rm", "--name", name, "--network", "none"]
        if request.stdin is not None:
            argv.append("-i")
        for mount in request.mounts:
            suffix = ":ro" if mount.read_only else ""
            argv += ["-v", f"{mount.host}:{mount.container}{suffix}"]
        if request.workdir:
            argv += ["-w", request.workdir]
        for key, value in request.env.items():
            argv += ["-e", f"{key}={value}"]
        argv += [request.image, *request.command]
        try:
            return await run_process(
                argv,
                env=dict(os.environ),
                stdin=request.stdin,
                stdout=request.stdout,
                stderr=request.stderr,
            )
        except asyncio.CancelledError:
            with contextlib.suppress(OSError):
                killer = await asyncio.create_subprocess_exec(
                    self._cli,
                    "kill",
                    name,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                await asyncio.shield(killer.wait())
            raise
