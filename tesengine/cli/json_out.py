"""The one JSON shape of ``tesengine run --json`` and ``tesengine status --json``.

A document is ``{"ok": <every task COMPLETE>, "tasks": [<record>, ...]}`` and
every record has the same keys, whichever command wrote it::

    {"name": "count", "id": "abc", "state": "EXECUTOR_ERROR",
     "exit_codes": [3], "outputs": {"counts": "s3://..."},
     "error": "task 'count' (id abc) EXECUTOR_ERROR: executor 0 exited 3",
     "stderr_tail": "...", "downloads": {}, "stdout": null, "stderr": null}

``error`` is null for a task that has not failed; ``state`` is ``NOT_RUN``
for a task that was never submitted. ``stdout`` and ``stderr`` carry the
command's whole output where the command has it (``run`` of one task given by
flags), else null. URLs are redacted (no userinfo, no
signature values). Kept free of heavy imports: only the standard library.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import redact_url

if TYPE_CHECKING:
    from ..tes import models as wire

__all__ = ["KEYS", "document", "dumps", "from_wire", "record"]

#: Every record has exactly these keys, in this order.
KEYS = (
    "name",
    "id",
    "state",
    "exit_codes",
    "outputs",
    "error",
    "stderr_tail",
    "downloads",
    "stdout",
    "stderr",
)


def record(
    *,
    name: str,
    id: str | None,
    state: str,
    exit_codes: Sequence[int | None] = (),
    outputs: Mapping[str, str] | None = None,
    error: str | None = None,
    stderr_tail: str = "",
    downloads: Mapping[str, str] | None = None,
    stdout: str | None = None,
    stderr: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One task's record; the only place the shape is defined.

    ``extra`` keys (a command's own additions) follow the common ones.
    """
    return {
        "name": name,
        "id": id,
        "state": state,
        "exit_codes": list(exit_codes),
        "outputs": {k: redact_url(v) for k, v in (outputs or {}).items()},
        "error": error,
        "stderr_tail": stderr_tail,
        "downloads": dict(downloads or {}),
        "stdout": stdout,
        "stderr": stderr,
        **(extra or {}),
    }


def from_wire(task: wire.TesTask) -> dict[str, Any]:
    """The record of a task as the server reports it (BASIC or FULL view)."""
    from ..engine.request import LOG_DIR
    from ..engine.result import describe, executor_results, system_logs

    state = task.current_state
    executors = executor_results(task)
    error = None
    if state.is_failure or state.value == "PREEMPTED":
        detail = describe(state, executors, system_logs(task))
        error = f"task {task.name or ''!r} (id {task.id}) {state.value}: {detail}"
    failed = next((e for e in executors if e.exit_code not in (0, None)), None)
    # The engine's own captured-logs output is plumbing, not one of the user's outputs.
    shown = [o for o in task.outputs or [] if not (o.path == LOG_DIR and not o.name)]
    outputs = {(o.name or o.path): o.url for o in shown}
    return record(
        name=task.name or "",
        id=task.id,
        state=state.value,
        exit_codes=[e.exit_code for e in executors],
        outputs=outputs,
        error=error,
        stderr_tail=_tail(failed.stderr) if failed else "",
    )


def document(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The whole document: ``ok`` is true when every task is COMPLETE."""
    return {"ok": all(r["state"] == "COMPLETE" for r in records), "tasks": list(records)}


def dumps(records: Sequence[Mapping[str, Any]]) -> str:
    """The document as indented JSON text."""
    return json.dumps(document(records), indent=2)


def _tail(text: str, lines: int = 20) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])
