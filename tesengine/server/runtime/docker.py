"""The docker runtime: each executor is ``docker run`` of its image (or podman).

UNTESTED against a real daemon: no images or daemon are available where
tesengine is tested (the argv it builds is tested with a fake ``docker``).
The task's container paths are bound from its work directory exactly as for
the local runtime; cancelling kills the container by name.

Every value a task supplies reaches the CLI as the value of a ``--flag=value``
argument or after the ``--`` that ends docker's options, and
:meth:`DockerRuntime.preflight` refuses an image reference that is not one,
and mount paths that could split a mount spec (``:`` ``,`` ``"``) or read as
an option (a leading ``-``), so a task cannot add options to ``docker run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil

from .base import ExecRequest, ExecSpec, ExecutorRefused, RuntimeUnavailable
from .limits import check_exec
from .process import run_process

__all__ = ["DockerRuntime"]

# A docker image reference: [host[:port]/]name[:tag][@digest]; never starts with '-'.
_IMAGE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._/-]*"  # name, with path components
    r"(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?"  # tag
    r"(@[a-z0-9]+:[0-9a-fA-F]{32,})?"  # digest
)
_IMAGE_WITH_PORT = re.compile(r"[A-Za-z0-9.-]+:[0-9]+/" + _IMAGE.pattern)
_MOUNT_BAD = frozenset(':,"\n\r')


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

    def preflight(self, spec: ExecSpec) -> None:
        """Refuse what could be read as a docker option or split a mount spec."""
        field = f"executors[{spec.index}]"
        image = spec.image
        if not (_IMAGE.fullmatch(image) or _IMAGE_WITH_PORT.fullmatch(image)):
            raise ExecutorRefused(f"{field}.image: {image[:100]!r} is not a docker image reference")
        for mount in spec.mounts:
            for what, path in (("container path", mount.container), ("host path", str(mount.host))):
                if path.startswith("-") or _MOUNT_BAD.intersection(path):
                    raise ExecutorRefused(
                        f"{field}: {what} {path[:200]!r} cannot be bound by docker "
                        "(no ':', ',', '\"' or leading '-')"
                    )
        if spec.workdir is not None and not spec.workdir.startswith("/"):
            raise ExecutorRefused(f"{field}.workdir: must be an absolute path")
        check_exec(field, self._argv(spec, interactive=True), dict(os.environ))

    async def run(self, request: ExecRequest) -> int:
        """``docker run`` the executor; cancelling kills the container."""
        if not self._cli:
            raise RuntimeUnavailable("the docker runtime needs docker or podman on PATH")
        spec = request.spec
        self.preflight(spec)
        argv = self._argv(spec, interactive=True)
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
                    self._name(spec),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                await asyncio.shield(killer.wait())
            raise

    @staticmethod
    def _name(spec: ExecSpec) -> str:
        return f"tes-{spec.task_id}-{spec.index}"

    def _argv(self, spec: ExecSpec, *, interactive: bool) -> list[str]:
        argv = [self._cli or "docker", "run", "--rm", f"--name={self._name(spec)}"]
        argv.append("--network=none")
        if interactive:
            argv.append("--interactive")
        for mount in spec.mounts:
            ro = ",readonly" if mount.read_only else ""
            argv.append(f"--mount=type=bind,source={mount.host},target={mount.container}{ro}")
        if spec.workdir:
            argv.append(f"--workdir={spec.workdir}")
        for key, value in spec.env.items():
            argv.append(f"--env={key}={value}")
        return [*argv, "--", spec.image, *spec.command]
