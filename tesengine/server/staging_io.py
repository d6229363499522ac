"""A task's files on the host: its root directory, inputs in, outputs out.

Each task gets ``<work>/tasks/<id>/root``, which mirrors its container paths:
the container path ``/data/in.txt`` is the host file ``root/data/in.txt``.
Every top-level directory the task names is bound writable into the
sandbox, with the inputs bound read-only on top (see :func:`plan_mounts`).

Inputs come from the project's storage layer (``content`` inputs are
written directly); outputs go back through it, with wildcard outputs pruned
by ``path_prefix`` and directories flattened into one log entry per file.
Local ``file://`` (and bare ``/path``) URLs must lie inside the allowed
directories, and outputs must lie inside the task's root even through
symlinks, so a task can neither read nor publish the server's own files.
What may be touched is decided in :mod:`.access` (also checked at create
time); ``file://`` and plain http(s) inputs are read by :mod:`.fetch`,
which never follows a link out of the allowed roots and never connects to
a non-public address unless the server allows it. A declared output the
task did not produce (a missing file, a directory with no file in it) is
:class:`MissingOutput`, naming the output.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ..errors import TesEngineError, redact_url
from ..storage import Storage
from ..storage.urls import join_url, parse_url
from .access import AllowedDirs, local_raw_path, url_host_problem
from .fetch import FetchRefused, copy_local_file, copy_local_tree, fetch_http, resolve_check
from .runtime.base import Mount
from .task_links import output_source, resolve_in_task, tree_files
from .validate import has_wildcard

_Getter = Callable[[str, Path], Awaitable[None]]

__all__ = [
    "AllowedDirs",
    "MissingOutput",
    "StagingError",
    "fetch_inputs",
    "host_path",
    "plan_mounts",
    "prepare_dirs",
    "push_outputs",
]


log = logging.getLogger("tesengine.server")


class StagingError(TesEngineError):
    """An input could not be fetched or an output could not be published."""


class MissingOutput(StagingError):
    """A declared output that the task did not produce."""


def host_path(root: Path, container: str) -> Path:
    """The host path of ``container`` (absolute, validated) under ``root``."""
    return root / "/".join(_segments(container))


def _segments(container: str) -> list[str]:
    """The names in ``container``; '.', '..' and empty names are refused, never rewritten."""
    parts = container.strip("/").split("/") if container.strip("/") else []
    if any(p in ("", ".", "..") for p in parts):
        raise StagingError(f"container path {container!r} is ambiguous ('.', '..' or '//')")
    return parts


def _top(container: str) -> str:
    parts = _segments(container)
    return parts[0] if parts else ""


#: Read-only binds beyond which inputs are grouped by directory (bubblewrap takes 9000
#: arguments in all, three per bind; docker's argv grows too).
MAX_INPUT_BINDS = 256


def plan_mounts(root: Path, doc: dict[str, Any], reserved: frozenset[str]) -> tuple[Mount, ...]:
    """Writable binds of each top-level directory the task names, then read-only inputs.

    ``/tmp`` is always bound (from the task's root, not the host). A path
    under a ``reserved`` directory (the sandbox's system dirs) is refused.
    Each input is bound read-only on its own while there are few; past
    :data:`MAX_INPUT_BINDS`, inputs are bound by the highest directory that
    holds nothing the task must write, and inputs that still cannot be
    grouped stay writable copies in the task's tree (never one argument each).
    """
    tops = {"tmp"}
    for container in _container_paths(doc):
        top = _top(container)
        if top in reserved:
            raise StagingError(
                f"container path {container} is under /{top}, which the runtime keeps read-only"
            )
        tops.add(top)
    mounts = [Mount(root / top, f"/{top}", read_only=False) for top in sorted(tops)]
    mounts += [Mount(host_path(root, p), p, read_only=True) for p in _input_binds(doc)]
    return tuple(mounts)


def _input_binds(doc: dict[str, Any]) -> list[str]:
    """Container paths to bind read-only (outermost first) so that every input is covered."""
    paths = sorted({"/" + "/".join(_segments(i["path"])) for i in doc.get("inputs", ())})
    if len(paths) > MAX_INPUT_BINDS:
        writable = _writable_dirs(doc)
        paths = sorted({_group(p, writable) for p in paths})
    binds: list[str] = []
    for path in sorted(paths, key=lambda p: (p.count("/"), p)):
        if not any(path.startswith(b + "/") for b in binds):
            binds.append(path)
    return binds[:MAX_INPUT_BINDS]


def _group(path: str, writable: frozenset[str]) -> str:
    """The highest ancestor of ``path`` (or itself) with nothing writable at or under it."""
    parts = path.strip("/").split("/")
    for depth in range(1, len(parts) + 1):
        candidate = "/" + "/".join(parts[:depth])
        if not any(w == candidate or w.startswith(candidate + "/") for w in writable):
            return candidate
    return path


def _writable_dirs(doc: dict[str, Any]) -> frozenset[str]:
    """Container directories the task must be able to write in."""
    dirs = {"/tmp", *doc.get("volumes", ())}  # noqa: S108 - the task's own /tmp
    for output in doc.get("outputs", ()):
        path = output["path"]
        if has_wildcard(path):
            path = path[: min(path.find(c) for c in "*?[" if c in path)]
            dirs.add(path.rsplit("/", 1)[0] or "/")
        elif output.get("type") == "DIRECTORY":
            dirs.add(path)
        else:
            dirs.add(path.rsplit("/", 1)[0] or "/")
    for executor in doc["executors"]:
        if executor.get("workdir"):
            dirs.add(executor["workdir"])
        for key in ("stdout", "stderr"):
            if executor.get(key):
                dirs.add(executor[key].rsplit("/", 1)[0] or "/")
    # The sandbox's own root is not the task's to write: "/" blocks nothing.
    return frozenset(d.rstrip("/") for d in dirs if d.rstrip("/"))


def _container_paths(doc: dict[str, Any]) -> Iterator[str]:
    for item in doc.get("inputs", ()):
        yield item["path"]
    for item in doc.get("outputs", ()):
        yield item["path"]
    yield from doc.get("volumes", ())
    for executor in doc["executors"]:
        for key in ("workdir", "stdin", "stdout", "stderr"):
            if executor.get(key) and executor[key] != "/":
                yield executor[key]


def _write_text(dest: Path, text: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text, encoding="utf-8")


def prepare_dirs(root: Path, doc: dict[str, Any]) -> None:
    """Create the directories executors expect: volumes, workdirs, output parents."""
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    for volume in doc.get("volumes", ()):
        host_path(root, volume).mkdir(parents=True, exist_ok=True)
    for output in doc.get("outputs", ()):
        path = output["path"]
        if has_wildcard(path):
            static = path[: min(path.find(c) for c in "*?[" if c in path)]
            target = host_path(root, static.rsplit("/", 1)[0] or "/")
        elif output.get("type") == "DIRECTORY":
            target = host_path(root, path)
        else:
            target = host_path(root, path).parent
        target.mkdir(parents=True, exist_ok=True)
    for executor in doc["executors"]:
        if executor.get("workdir"):
            host_path(root, executor["workdir"]).mkdir(parents=True, exist_ok=True)
        for key in ("stdout", "stderr"):
            if executor.get(key):
                host_path(root, executor[key]).parent.mkdir(parents=True, exist_ok=True)
    for top in {_top(p) for p in _container_paths(doc)}:
        (root / top).mkdir(parents=True, exist_ok=True)


async def fetch_inputs(
    root: Path, doc: dict[str, Any], io: Storage | None, allowed: AllowedDirs
) -> None:
    """Write ``content`` inputs and download URL inputs into ``root``."""
    for i, item in enumerate(doc.get("inputs", ())):
        dest = host_path(root, item["path"])
        field = f"inputs[{i}] ({item['path']})"
        if item.get("content") or "url" not in item:  # a non-empty content wins over url
            try:
                await asyncio.to_thread(_write_text, dest, item.get("content", ""))
            except OSError as exc:
                why = exc.strerror or type(exc).__name__
                raise StagingError(
                    f"inputs[{i}].path: cannot write {item['path']}: {why}"
                ) from None
            continue
        try:
            await _fetch_one(item, dest, io, allowed, field=field, doc=doc)
        except StagingError:
            raise
        except FetchRefused as exc:
            url = redact_url(item["url"])
            raise StagingError(f"{field}: refused to fetch {url}: {exc}") from None
        except (TimeoutError, TesEngineError, aiohttp.ClientError) as exc:
            url = redact_url(item["url"])
            raise StagingError(f"{field}: cannot fetch {url}: {exc}") from exc
        except OSError as exc:
            raise StagingError(f"{field}: cannot write {item['path']}: {exc}") from exc


async def _fetch_one(
    item: dict[str, Any],
    dest: Path,
    io: Storage | None,
    allowed: AllowedDirs,
    *,
    field: str,
    doc: dict[str, Any],
) -> None:
    url, directory = item["url"], item.get("type") == "DIRECTORY"
    await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
    local = _local_path(url, allowed, field)
    if local is not None:
        if directory:
            copied = await asyncio.to_thread(copy_local_tree, local, dest, allowed)
            for skipped in copied.skipped:
                _note(doc, f"{field}: skipped {skipped}")
        else:
            await asyncio.to_thread(copy_local_file, local, dest, allowed)
        return
    if _plain_http(url):
        await _fetch_http_input(url, dest, directory, _need(io, field), allowed)
        return
    storage = _need(io, field)
    if directory:
        await _download_tree(storage, url, dest)
    else:
        await storage.download(url, dest)


async def _fetch_http_input(
    url: str, dest: Path, directory: bool, io: Storage, allowed: AllowedDirs
) -> None:
    private = allowed.allow_private_urls
    if not directory:
        await fetch_http(url, dest, allow_private=private)
        return
    # A listing goes through obstore (WebDAV): check its host first; every
    # file of it is then fetched through the guarded client.
    if not private:
        host = urlsplit(url).hostname or ""
        problem = url_host_problem(url) or await resolve_check(host)
        if problem:
            raise FetchRefused(f"{problem}; this server fetches only public addresses")

    async def get(file_url: str, target: Path) -> None:
        await fetch_http(file_url, target, allow_private=private)

    await _download_tree(io, url, dest, get=get)


def _plain_http(url: str) -> bool:
    if url.split("://", 1)[0].lower() not in ("http", "https"):
        return False
    # Cloud URLs in https form (s3.amazonaws.com, blob.core.windows.net)
    # go to their stores, whose endpoints are fixed.
    return parse_url(url).provider == "http"


def _note(doc: dict[str, Any], message: str) -> None:
    """A line in the task's system logs (and the server's log)."""
    log.warning("task %s: %s", doc.get("id"), message)
    logs = doc.setdefault("logs", [])
    if not logs:
        logs.append({"logs": [], "outputs": []})
    logs[-1].setdefault("system_logs", []).append(message)


async def _download_tree(io: Storage, url: str, dest: Path, *, get: _Getter | None = None) -> None:
    await asyncio.to_thread(dest.mkdir, parents=True, exist_ok=True)
    # Storage.walk decodes names and refuses a '..' entry (StorageError), as the engine does.
    async for rel, info in io.walk(url):
        target = dest / rel
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        if get is not None:
            await get(info.url, target)
        else:
            await io.download(info.url, target)


async def push_outputs(
    root: Path, doc: dict[str, Any], io: Storage | None, allowed: AllowedDirs
) -> list[dict[str, Any]]:
    """Upload every output; return the output file logs (one per file)."""
    files = await asyncio.to_thread(_collect_outputs, root, doc, allowed)
    logs: list[dict[str, Any]] = []
    for item in files:
        try:
            await _need(io, item.field).put_file(item.target, item.source)
        except (TesEngineError, OSError, ValueError) as exc:  # ValueError: a key it refused
            where = redact_url(item.url)
            raise StagingError(f"{item.field}: cannot upload to {where}: {exc}") from exc
        logs.append({"url": item.url, "path": item.container, "size_bytes": str(item.size)})
    return logs


@dataclass(frozen=True, slots=True)
class _OutputFile:
    field: str
    container: str
    source: Path
    url: str
    target: str
    size: int


def _collect_outputs(root: Path, doc: dict[str, Any], allowed: AllowedDirs) -> list[_OutputFile]:
    """Every file to upload, checked: inside the task's root, to an allowed place."""
    real_root = Path(os.path.realpath(root))
    files = []
    for i, output in enumerate(doc.get("outputs", ())):
        field = f"outputs[{i}] ({output['path']})"
        for container, url in _output_files(root, output, _output_label(output, i)):
            try:
                real = output_source(real_root, container, field)
            except TesEngineError as exc:
                raise StagingError(str(exc)) from None
            target = _output_target(url, allowed, field)
            files.append(_OutputFile(field, container, real, url, target, real.stat().st_size))
    return files


def _output_files(root: Path, output: dict[str, Any], field: str) -> Iterator[tuple[str, str]]:
    """(container path, URL) of each file an output stands for."""
    path, url = output["path"], output["url"]
    if has_wildcard(path):
        prefix = output["path_prefix"]
        # root_dir keeps pattern characters in the server's own path literal.
        for match in sorted(glob.glob(path.lstrip("/"), root_dir=root)):
            container = "/" + match
            yield from _file_or_tree(root, container, join_url(url, container[len(prefix) :]))
        return
    if not os.path.lexists(host_path(root, path)):
        raise MissingOutput(f"{field}: the task did not produce it")
    # The server creates a DIRECTORY output's folder before the task runs,
    # so "produced" means the task put at least one file in it.
    yield from _file_or_tree(root, path, url, field if output.get("type") == "DIRECTORY" else "")


def _output_label(output: dict[str, Any], index: int) -> str:
    """``output 'NAME' (/out/x)``: how messages name an output."""
    return f"output {output.get('name') or f'outputs[{index}]'!r} ({output['path']})"


def _file_or_tree(
    root: Path, container: str, url: str, must_hold: str = ""
) -> Iterator[tuple[str, str]]:
    """The file, or every file of the tree; ``must_hold``: the output that needs one."""
    source = resolve_in_task(root, container).host  # links read as the task sees them
    if not source.is_dir():
        yield container, url
        return
    rels, linked = tree_files(root, source, container)
    if not rels and must_hold:
        note = linked and (
            f" (it holds no file: {linked} is a symbolic link to a directory,"
            " and links inside a directory output are not followed)"
        )
        raise MissingOutput(f"{must_hold}: the task did not produce it{note}")
    for rel in rels:
        yield f"{container.rstrip('/')}/{rel}", join_url(url, rel)


def _local_path(url: str, allowed: AllowedDirs, field: str) -> Path | None:
    """The resolved host path of a local input URL (checked), else None."""
    raw = local_raw_path(url)
    if raw is None:
        return None
    if problem := allowed.local_problem(url):
        raise StagingError(f"{field}: {problem}")
    return Path(os.path.realpath(raw))


def _output_target(url: str, allowed: AllowedDirs, field: str) -> str:
    """``url`` as the storage layer takes it, checked again at upload time."""
    problem = allowed.local_problem(url, for_write=True) or allowed.protected_problem(url)
    if problem:
        raise StagingError(f"{field}: {problem}")
    raw = local_raw_path(url)
    if raw is None:
        return url
    return (Path(os.path.realpath(Path(raw).parent)) / Path(raw).name).as_uri()


def _need(io: Storage | None, field: str) -> Storage:
    if io is None:
        raise StagingError(f"{field}: this server has no storage configured")
    return io
