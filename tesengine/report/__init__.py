"""Run reports: one self-contained HTML file showing what a run did.

:class:`RunRecorder` subscribes to a :class:`~tesengine.TesBackend`'s events
and transfer progress and writes the report when the run ends, however it
ends (``tesengine run --report FILE`` uses it)::

    recorder = RunRecorder("run.html")
    async with recorder, TesBackend(config, events=recorder, progress=recorder) as backend:
        ...

The page has a summary (tasks by state, wall/queued/running times, bytes
hashed, uploaded and already present, TES requests and retries when a
counter is given), a timeline with one row per task, and a sortable,
filterable task table. It needs no network: CSS, script and data are inline.
"""

from __future__ import annotations

from ..errors import ReportError
from .html import render
from .model import RunSnapshot, TaskRow, Transfers
from .recorder import Counts, RunRecorder, request_counts

__all__ = [
    "Counts",
    "ReportError",
    "RunRecorder",
    "RunSnapshot",
    "TaskRow",
    "Transfers",
    "render",
    "request_counts",
]
