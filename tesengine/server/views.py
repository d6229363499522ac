"""Projection of a stored task (always FULL) onto the MINIMAL, BASIC or FULL view.

Pure functions over JSON-ready dicts. They copy only the containers they
change, so the stored record is never mutated by a response.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..tes.models import State, View

__all__ = ["matches", "project"]


def project(doc: Mapping[str, Any], view: View | str) -> dict[str, Any]:
    """``doc`` as the spec's ``view`` defines it.

    MINIMAL: id and state only. BASIC: everything except executor stdout and
    stderr, input content and system_logs. FULL: everything. ``view`` may be
    the wire string (the CLI's embedded task source holds one).
    """
    view = View(view)
    if view is View.MINIMAL:
        return {"id": doc["id"], "state": doc["state"]}
    if view is View.FULL:
        return dict(doc)
    out = dict(doc)
    if "inputs" in doc:
        out["inputs"] = [_without(item, ("content",)) for item in doc["inputs"]]
    if "logs" in doc:
        out["logs"] = [_basic_log(log) for log in doc["logs"]]
    return out


def _basic_log(log: Mapping[str, Any]) -> dict[str, Any]:
    out = _without(log, ("system_logs",))
    out["logs"] = [_without(item, ("stdout", "stderr")) for item in log.get("logs", ())]
    return out


def _without(item: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    drop = frozenset(keys)
    return {k: v for k, v in item.items() if k not in drop}


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
