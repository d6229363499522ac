"""Projection of a stored task (always FULL) onto the MINIMAL, BASIC or FULL view.

Pure functions over JSON-ready dicts. They copy only the containers they
change, so the stored record is never mutated by a response.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from ..tes.models import State, View
from .task_doc import ExecutorLogDoc, InputDoc, TaskDoc, TaskLogDoc

__all__ = ["basic_view", "matches", "project"]


def project(doc: Mapping[str, Any], view: View | str) -> Mapping[str, Any]:
    """``doc`` as the spec's ``view`` defines it.

    MINIMAL: id and state only. BASIC: everything except executor stdout and
    stderr, input content and system_logs. FULL: everything. ``view`` may be
    the wire string (the CLI's embedded task source holds one, and passes
    the documents it reads from a run's database itself).
    """
    view = View(view)
    if view is View.MINIMAL:
        return {"id": doc["id"], "state": doc["state"]}
    if view is View.FULL:
        return dict(doc)
    # A stored document: the server's own, or one the CLI read from a run's database.
    return basic_view(cast(TaskDoc, doc))


def basic_view(doc: TaskDoc) -> TaskDoc:
    """``doc`` without what only the FULL view shows (copies of the changed containers)."""
    out: TaskDoc = {**doc}
    if "inputs" in doc:
        out["inputs"] = [_no_content(item) for item in doc["inputs"]]
    if "logs" in doc:
        out["logs"] = [_basic_log(log) for log in doc["logs"]]
    return out


def _no_content(item: InputDoc) -> InputDoc:
    out: InputDoc = {**item}
    out.pop("content", None)
    return out


def _basic_log(log: TaskLogDoc) -> TaskLogDoc:
    out: TaskLogDoc = {**log}
    out.pop("system_logs", None)
    out["logs"] = [_no_tails(item) for item in log.get("logs", ())]
    return out


def _no_tails(item: ExecutorLogDoc) -> ExecutorLogDoc:
    out: ExecutorLogDoc = {**item}
    out.pop("stdout", None)
    out.pop("stderr", None)
    return out


def matches(
    doc: Mapping[str, Any],
    *,
    name_prefix: str | None,
    state: State | str | None,
    tags: Iterable[tuple[str, str]],
) -> bool:
    """True when ``doc`` passes the ListTasks filters.

    Tag filters are ANDed; an empty filter value matches any value of the key.
    """
    if state is not None and doc["state"] != state:
        return False
    if name_prefix and not str(doc.get("name", "")).startswith(name_prefix):
        return False
    task_tags: Mapping[str, str] = doc.get("tags") or {}
    for key, value in tags:
        if key not in task_tags or (value and task_tags[key] != value):
            return False
    return True
