"""Pure construction of the TES request for a validated, staged task.

Each execution writes under its own prefix
``<outputs>/<task name>-<UTC timestamp>-<random>/``: one TES output per
declared output at ``<prefix><name>``, plus the executors' stdout and stderr
captured as files under ``<prefix>_logs/`` so full logs stay retrievable when
the server truncates its log tails. Tags record the prefix and the engine run,
so a later process can :meth:`~tesengine.TesBackend.attach` to the task.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from ..redact import redact_repr
from ..storage.urls import Location, parse_url
from ..tes import models as wire
from .spec import Executor, Task
from .validate import OutputDecl, Plan

#: Container folder where executor stdout/stderr are captured.
LOG_DIR = "/tesengine-logs"
#: Output name (under the prefix) of the captured logs; user names cannot clash.
LOG_OUTPUT = "_logs"
PREFIX_TAG = "tesengine-prefix"
RUN_TAG = "tesengine-run"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class OutputTarget:
    """Where one declared output lands."""

    name: str
    url: str
    directory: bool

    def __repr__(self) -> str:
        return redact_repr(self)  # the URL carries the outputs URL's query


@dataclass(frozen=True, slots=True)
class Layout:
    """Every URL of one execution, each built once: its prefix, outputs and logs."""

    prefix: str
    targets: tuple[OutputTarget, ...]
    logs_url: str

    def __repr__(self) -> str:
        return redact_repr(self)  # the URLs carry the outputs URL's query


def layout(
    outputs_url: str, outputs: tuple[OutputDecl, ...], name: str, now: datetime | None = None
) -> Layout:
    """A fresh :class:`Layout` for one execution of task ``name`` (see :func:`output_prefix`)."""
    base = _parsed(outputs_url)
    head = base.key.rstrip("/")
    segment = _segment(name, now)
    key = f"{head}/{segment}" if head else segment
    # Every URL from the one parsed outputs URL: the prefix, then one segment below it.
    targets = tuple(OutputTarget(o.name, _below(base, key, o.name), o.directory) for o in outputs)
    return Layout(base.url_for(key), targets, _below(base, key, LOG_OUTPUT))


def output_prefix(outputs_url: str, name: str, now: datetime | None = None) -> str:
    """A unique prefix for one execution of task ``name`` (its outputs go under it)."""
    return _prefix_location(outputs_url, name, now).url


def output_targets(outputs: tuple[OutputDecl, ...], prefix: str) -> tuple[OutputTarget, ...]:
    """The URL of every declared output under ``prefix``."""
    return _targets(parse_url(prefix), outputs)


def logs_url(prefix: str) -> str:
    """The directory URL of the captured executor logs."""
    return _child_url(parse_url(prefix), LOG_OUTPUT)


def _prefix_location(outputs_url: str, name: str, now: datetime | None) -> Location:
    return _parsed(outputs_url).child(_segment(name, now))


def _segment(name: str, now: datetime | None) -> str:
    """The unique last segment of an execution's prefix."""
    safe = _UNSAFE.sub("-", name).strip("-.") or "task"
    return f"{safe[:64]}-{_stamp(now)}-{secrets.token_hex(4)}"


_last_stamp: tuple[int, str] = (-1, "")


def _stamp(now: datetime | None) -> str:
    global _last_stamp  # noqa: PLW0603 - a one-entry cache: strftime once per second
    if now is not None:
        return now.strftime("%Y%m%dT%H%M%SZ")
    second = int(time.time())
    if _last_stamp[0] != second:
        _last_stamp = (second, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second)))
    return _last_stamp[1]


def _below(base: Location, key: str, name: str) -> str:
    """``join_url`` of ``name`` under the prefix whose key (in ``base``'s store) is ``key``."""
    if not _plain(name):
        return _child_url(parse_url(base.url_for(key)), name)
    return base.url_for(f"{key}/{name}")


def _layout_under(prefix: Location, outputs: tuple[OutputDecl, ...]) -> Layout:
    return Layout(prefix.url, _targets(prefix, outputs), _child_url(prefix, LOG_OUTPUT))


def _targets(prefix: Location, outputs: tuple[OutputDecl, ...]) -> tuple[OutputTarget, ...]:
    return tuple(OutputTarget(o.name, _child_url(prefix, o.name), o.directory) for o in outputs)


@lru_cache(maxsize=16)
def _parsed(url: str) -> Location:
    # A backend's outputs URL, parsed once rather than once per task (Location is frozen).
    return parse_url(url)


def _plain(name: str) -> bool:
    # One segment that Location.child would take as it is (no escape to check).
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name


def _child_url(parent: Location, name: str) -> str:
    """``join_url(parent.url, name)``, without its per-call parse and copy.

    Names here are one plain segment (a prefix, an output name, ``_logs``);
    anything else takes :meth:`Location.child`, which refuses what could escape.
    """
    if not _plain(name):
        return parent.child(name).url
    head = parent.key.rstrip("/")
    return parent.url_for(f"{head}/{name}" if head else name)


def build_task(
    plan: Plan, staged: Mapping[str, str], where: str | Layout, tags: Mapping[str, str]
) -> wire.TesTask:
    """The TES task for ``plan`` once its local inputs are staged.

    ``staged`` maps each local input's container path to its uploaded URL;
    ``where`` is the execution's :class:`Layout`, or its prefix alone.
    """
    if isinstance(where, str):
        where = _layout_under(parse_url(where), plan.outputs)
    task = plan.task
    inputs = [
        wire.Input(url=staged[i.container_path], path=i.container_path, type=_kind(i.directory))
        for i in plan.local
    ] + [wire.Input(url=i.url, path=i.container_path, type=_kind(i.directory)) for i in plan.remote]
    outputs = [
        wire.Output(name=t.name, url=t.url, path=_strip(d.container_path), type=_kind(t.directory))
        for t, d in zip(where.targets, plan.outputs, strict=True)
    ]
    outputs.append(wire.Output(url=where.logs_url, path=LOG_DIR, type=wire.FileType.DIRECTORY))
    return wire.TesTask(
        name=task.name,
        description=task.description,
        inputs=inputs,
        outputs=outputs,
        executors=[_executor(e, i) for i, e in enumerate(task.executors)],
        resources=_resources(task),
        volumes=[*task.volumes, LOG_DIR],
        tags={**task.tags, **tags, PREFIX_TAG: where.prefix},
    )


def _kind(directory: bool) -> wire.FileType:
    return wire.FileType.DIRECTORY if directory else wire.FileType.FILE


def _strip(path: str) -> str:
    return path.rstrip("/") or "/"


def _executor(executor: Executor, index: int) -> wire.Executor:
    return wire.Executor(
        image=executor.image,
        command=list(executor.command),
        workdir=executor.workdir,
        stdin=executor.stdin,
        stdout=f"{LOG_DIR}/{index}.stdout",
        stderr=f"{LOG_DIR}/{index}.stderr",
        env=dict(executor.env) or None,
        ignore_error=executor.ignore_error or None,
    )


def _resources(task: Task) -> wire.Resources | None:
    res = task.resources
    if res is None:
        return None
    return wire.Resources(
        cpu_cores=res.cpu_cores,
        ram_gb=res.ram_gb,
        disk_gb=res.disk_gb,
        preemptible=res.preemptible,
        zones=list(res.zones) or None,
        backend_parameters=dict(res.backend_parameters) or None,
        backend_parameters_strict=res.backend_parameters_strict,
    )
