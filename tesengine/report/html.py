"""The report file: one HTML page with its CSS, script and data inline (works offline)."""

from __future__ import annotations

import json
import re
from html import escape
from importlib import resources

from .model import RunSnapshot, to_json

__all__ = ["render"]

_SLOT = re.compile(r"\{\{(title|css|data|js)\}\}")


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def _script_json(doc: object) -> str:
    """JSON safe inside ``<script>``: no ``</script>``, ``<!--`` or U+2028 can end it early."""
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def render(snapshot: RunSnapshot) -> str:
    """The whole report page for ``snapshot``."""
    parts = {
        "title": escape(snapshot.title),
        "css": _asset("report.css"),
        "data": _script_json(to_json(snapshot)),
        "js": _asset("report.js"),
    }
    # One pass: a task name that reads "{{js}}" stays text.
    return _SLOT.sub(lambda m: parts[m[1]], _asset("report.html"))
