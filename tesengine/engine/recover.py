"""What a task created earlier left on the server: its outputs and logs, checked.

A task's tags and output URLs are the server's word: each is rebuilt on the
configured ``outputs`` URL, and refused unless it lies under it.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import StorageError, UnsafeReply, redact_url
from ..storage import join_url
from ..storage.urls import parse_url
from ..tes import models as wire
from .request import LOG_OUTPUT, PREFIX_TAG, OutputTarget, logs_url
from .run import Submission


def recover(task: wire.TesTask, names: Mapping[str, str] | None, outputs: str) -> Submission:
    """Where an earlier submission of ``task`` put its outputs, from its tags and outputs.

    ``names`` (name -> container path) selects and names the outputs instead.
    """
    task_id = task.id or ""
    tagged = (task.tags or {}).get(PREFIX_TAG, "")
    prefix = under_outputs(tagged, outputs, task_id, "output prefix") if tagged else ""
    root = parse_url(prefix) if prefix else None
    targets: list[OutputTarget] = []
    for output in task.outputs or []:
        directory = output.type is wire.FileType.DIRECTORY
        if names is not None:
            name = next((n for n, p in names.items() if p.rstrip("/") == output.path), None)
            if not name:
                continue
        url = under_outputs(output.url, outputs, task_id, f"output {output.path}")
        if names is None:
            fallback = output.path.rsplit("/", 1)[-1]
            name = parse_url(url).relative_to(root) if root is not None else fallback
        if name and name != LOG_OUTPUT:
            targets.append(OutputTarget(name, url, directory))
    return Submission(task_id, prefix, tuple(targets), logs_url(prefix) if prefix else "")


def captured_logs_url(task: wire.TesTask, outputs: str) -> str | None:
    """The directory of ``task``'s captured executor logs, from its prefix tag.

    None when the task has no prefix tag; :class:`UnsafeReply` when the tag
    does not lie under ``outputs``.
    """
    tagged = (task.tags or {}).get(PREFIX_TAG)
    if not tagged:
        return None
    return logs_url(under_outputs(tagged, outputs, task.id or "", "output prefix"))


def under_outputs(url: str, outputs: str, task_id: str, what: str) -> str:
    """``url`` rebuilt on the configured ``outputs`` URL; UnsafeReply unless it lies under it.

    Rebuilt, not passed on: the host form and query string (credentials,
    a SAS) of what is read come from the configuration, never from the server.
    """
    try:
        rel = parse_url(url).relative_to(parse_url(outputs))
    except StorageError:
        rel = None
    if rel is None:
        raise UnsafeReply(
            f"task {task_id}: {what} {redact_url(url)} is not under this backend's"
            f" outputs {redact_url(outputs)}: refused"
        )
    return join_url(outputs, rel)
