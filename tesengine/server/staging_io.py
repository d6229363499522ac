"""A task's files in and out: inputs fetched into its tree, outputs published from it.

The tree (``<work>/tasks/<id>/root``, mirroring the container paths) and its
mounts are planned in :mod:`.task_tree`. Inputs come from the project's
storage layer (``content`` inputs are written directly); outputs go back
through it, with wildcard outputs pruned by ``path_prefix`` and directories
flattened into one log entry per file.
Local ``file://`` (and bare ``/path``) URLs must lie inside the allowed
directories, and outputs must lie inside the task's root even through
symlinks, so a task can neither read nor publish the server's own files.
What may be touched is decided in :mod:`.access` (also checked at create
time); ``file://`` and plain http(s) inputs are read by :mod:`.fetch`,
which never follows a link out of the allowed roots and never connects to
a non-public address unless the server allows it. A declared output the
task did not produce (a missing file or directory) is :class:`MissingOutput`,
naming the output. A directory output the task left empty uploads nothing
and is noted in the system logs, as Funnel does (Sprocket declares every
task's work directory an output, and many tasks write nothing there).
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from ..errors import MissingOutput, StagingError, TesEngineError, redact_url
from ..storage import Storage
from ..storage.urls import join_url, parse_url
from .access import AllowedDirs, local_raw_path, url_host_problem
from .fetch import FetchRefused, copy_local_file, copy_local_tree, fetch_http, resolve_check
from .task_doc import InputDoc, OutputDoc, OutputFileLogDoc, TaskDoc
from .task_links import output_source, resolve_in_task, tree_files
from .task_request import has_wildcard
from .task_tree import host_path

_Getter = Callable[[str, Path], Awaitable[None]]

__all__ = ["AllowedDirs", "fetch_inputs", "push_outputs"]


log = logging.getLogger("tesengine.server")


def _write_text(dest: Path, text: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text, encoding="utf-8")


async def fetch_inputs(root: Path, doc: TaskDoc, io: Storage | None, allowed: AllowedDirs) -> None:
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
    item: InputDoc,
    dest: Path,
    io: Storage | None,
    allowed: AllowedDirs,
    *,
    field: str,
    doc: TaskDoc,
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


def _note(doc: TaskDoc, message: str) -> None:
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
    root: Path, doc: TaskDoc, io: Storage | None, allowed: AllowedDirs
) -> list[OutputFileLogDoc]:
    """Upload every output; return the output file logs (one per file)."""
    files, notes = await asyncio.to_thread(_collect_outputs, root, doc, allowed)
    for note in notes:
        _note(doc, note)
    logs: list[OutputFileLogDoc] = []
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


def _collect_outputs(
    root: Path, doc: TaskDoc, allowed: AllowedDirs
) -> tuple[list[_OutputFile], list[str]]:
    """Every file to upload, checked: inside the task's root, to an allowed place.

    Also the notes for the system logs (a directory output left empty).
    """
    real_root = Path(os.path.realpath(root))
    files: list[_OutputFile] = []
    notes: list[str] = []
    for i, output in enumerate(doc.get("outputs", ())):
        field = f"outputs[{i}] ({output['path']})"
        for container, url in _output_files(root, output, _output_label(output, i), notes):
            real = output_source(real_root, container, field)
            target = _output_target(url, allowed, field)
            files.append(_OutputFile(field, container, real, url, target, real.stat().st_size))
    return files, notes


def _output_files(
    root: Path, output: OutputDoc, field: str, notes: list[str]
) -> Iterator[tuple[str, str]]:
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
    # The server creates a DIRECTORY output's folder before the task runs, so
    # an empty one is not an error: the task may have had nothing to write.
    empty = notes if output.get("type") == "DIRECTORY" else None
    yield from _file_or_tree(root, path, url, field, empty)


def _output_label(output: OutputDoc, index: int) -> str:
    """``output 'NAME' (/out/x)``: how messages name an output."""
    return f"output {output.get('name') or f'outputs[{index}]'!r} ({output['path']})"


def _file_or_tree(
    root: Path, container: str, url: str, field: str = "", empty: list[str] | None = None
) -> Iterator[tuple[str, str]]:
    """The file, or every file of the tree; a tree with no file is noted in ``empty``."""
    source = resolve_in_task(root, container).host  # links read as the task sees them
    if not source.is_dir():
        yield container, url
        return
    rels, linked = tree_files(root, source, container)
    if not rels and empty is not None:
        why = linked and (
            f" ({linked} is a symbolic link to a directory,"
            " and links inside a directory output are not followed)"
        )
        empty.append(f"{field}: the directory holds no file, nothing was uploaded{why}")
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
