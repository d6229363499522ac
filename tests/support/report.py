"""Reading a run report back: the JSON document its page draws from."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_DATA = re.compile(r'<script id="report-data" type="application/json">(.*?)</script>', re.S)


def report_data(path: Path) -> dict[str, Any]:
    """The data embedded in the report at ``path`` (fails if the page has none)."""
    match = _DATA.search(path.read_text(encoding="utf-8"))
    assert match is not None, f"{path} holds no report data"
    doc: dict[str, Any] = json.loads(match[1])
    return doc


def tasks_by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The report's task rows keyed by task name."""
    return {row["n"]: row for row in doc["tasks"]}
