"""Runtimes: local (bubblewrap sandbox), docker, noop."""

from __future__ import annotations

from .base import ExecRequest, Mount, Runtime, RuntimeUnavailable

__all__ = ["ExecRequest", "Mount", "Runtime", "RuntimeUnavailable", "make_runtime"]

RUNTIMES = ("local", "noop", "docker")


def make_runtime(name: str, *, noop_delay: float = 0.0) -> Runtime:
    """The runtime called ``name`` (one of :data:`RUNTIMES`)."""
    if name == "noop":
        from .noop import NoopRuntime

        return NoopRuntime(noop_delay)
    if name == "local":
        from .local import LocalRuntime

        return LocalRuntime()
    if name == "docker":
        from .docker import DockerRuntime

        return DockerRuntime()
    raise RuntimeUnavailable(f"unknown runtime {name!r} (choose one of {', '.join(RUNTIMES)})")
