"""The shape of a stored task document: ``TypedDict``s over the TES 1.1 wire names.

The server holds each task as the plain JSON-ready dict it stores in SQLite
and sends on the wire (up to 100,000 of them: a model object per task would
cost memory). These types cost nothing at run time; they let mypy check
every key the server reads or writes. Keys are the spec's ``tesTask``,
``tesExecutor``... property names; a key the spec requires, or one the
server sets on every task (``id``, ``state``), is ``Required``; any other may
be absent. Unset values are left out, never ``null`` (the validated request
is dumped without them).

Documents come in at two boundaries, each cast once: a validated CreateTask
body (:mod:`.task_request`) and a row read back from SQLite (:mod:`.taskdb`).
"""

# No ``from __future__ import annotations``: Python 3.11 does not see ``Required`` in a
# string annotation, and ``__required_keys__`` (read by the tests) would then be empty.
from typing import Literal, Required, TypedDict

__all__ = [
    "ExecutorDoc",
    "ExecutorLogDoc",
    "FileTypeName",
    "InputDoc",
    "OutputDoc",
    "OutputFileLogDoc",
    "ResourcesDoc",
    "StateName",
    "TaskDoc",
    "TaskLogDoc",
    "TaskRequestDoc",
]

#: ``tesState`` values (:class:`~tesengine.tes.models.State`). A row read back from
#: SQLite is only checked to hold a string: :meth:`State.parse` reads any other as UNKNOWN.
StateName = Literal[
    "UNKNOWN",
    "QUEUED",
    "INITIALIZING",
    "RUNNING",
    "PAUSED",
    "COMPLETE",
    "EXECUTOR_ERROR",
    "SYSTEM_ERROR",
    "CANCELED",
    "PREEMPTED",
    "CANCELING",
]

#: ``tesFileType`` values; a validated request carries one (FILE by default).
FileTypeName = Literal["FILE", "DIRECTORY"]


class ExecutorDoc(TypedDict, total=False):
    """``tesExecutor``."""

    image: Required[str]
    command: Required[list[str]]
    workdir: str
    stdin: str
    stdout: str
    stderr: str
    env: dict[str, str]
    ignore_error: bool


class InputDoc(TypedDict, total=False):
    """``tesInput``: a ``url`` or inline ``content`` (a non-empty content wins)."""

    path: Required[str]
    name: str
    description: str
    type: FileTypeName
    url: str
    content: str
    streamable: bool


class OutputDoc(TypedDict, total=False):
    """``tesOutput``; ``path_prefix`` is set when ``path`` holds a wildcard."""

    path: Required[str]
    url: Required[str]
    name: str
    description: str
    type: FileTypeName
    path_prefix: str


class ResourcesDoc(TypedDict, total=False):
    """``tesResources``."""

    cpu_cores: int
    preemptible: bool
    ram_gb: float
    disk_gb: float
    zones: list[str]
    backend_parameters: dict[str, str]
    backend_parameters_strict: bool


class ExecutorLogDoc(TypedDict, total=False):
    """``tesExecutorLog``: ``stdout`` and ``stderr`` are tails, only when files are staged."""

    start_time: str
    end_time: str
    stdout: str
    stderr: str
    exit_code: Required[int]


class OutputFileLogDoc(TypedDict):
    """``tesOutputFileLog``: one uploaded file; the size is a decimal string, as in the spec."""

    url: str
    path: str
    size_bytes: str


class TaskLogDoc(TypedDict, total=False):
    """``tesTaskLog``: the server keeps one per task."""

    logs: Required[list[ExecutorLogDoc]]
    outputs: Required[list[OutputFileLogDoc]]
    metadata: dict[str, str]
    start_time: str
    end_time: str
    system_logs: list[str]


class TaskRequestDoc(TypedDict, total=False):
    """``tesTask`` as a validated CreateTask body: without the fields the server sets."""

    name: str
    description: str
    inputs: list[InputDoc]
    outputs: list[OutputDoc]
    resources: ResourcesDoc
    executors: Required[list[ExecutorDoc]]
    volumes: list[str]
    tags: dict[str, str]


class TaskDoc(TaskRequestDoc, total=False):
    """``tesTask`` as stored: the request plus ``id``, ``state``, ``creation_time``, ``logs``.

    A record's BASIC-view summary (:mod:`.record`) is a ``TaskDoc`` too, less
    the FULL-only keys (input ``content``, executor tails, system logs).
    """

    id: Required[str]
    state: Required[StateName]
    creation_time: str
    logs: list[TaskLogDoc]
