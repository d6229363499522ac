"""Wire models for every schema of GA4GH TES v1.1 (pydantic v2).

Sending is strict and clean: :meth:`WireModel.to_wire` and
:meth:`WireModel.to_json` leave out every unset field (no ``null``), and use
the spec's own key names (snake_case, plus service-info's camelCase keys).

Parsing is tolerant, because real servers differ from the spec:

- unknown fields are kept (``model.model_extra``) and sent back unchanged;
- camelCase keys of older servers (``exitCode``, ``nextPageToken``...) are
  accepted next to the spec's snake_case keys;
- optional fields may be missing, and ``exit_code`` may be ``null`` or absent;
- ``null`` items in lists (``"system_logs": [null]``) are dropped;
- an unknown state string becomes :attr:`State.UNKNOWN`, with one warning per
  distinct value;
- ``size_bytes`` may arrive as a number; it is kept as the spec's string.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import (
    AliasChoices,
    AliasGenerator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)
from pydantic.alias_generators import to_camel

from ..redact import redact_repr

__all__ = [
    "API_PREFIXES",
    "MAX_PAGE_SIZE",
    "READ_ONLY_TASK_FIELDS",
    "SUBMISSION_TAG",
    "CancelTaskResponse",
    "CreateTaskResponse",
    "Executor",
    "ExecutorLog",
    "FileType",
    "Input",
    "ListTasksResponse",
    "Organization",
    "Output",
    "OutputFileLog",
    "Resources",
    "ServiceInfo",
    "ServiceType",
    "State",
    "TaskLog",
    "TesTask",
    "View",
    "WireModel",
]

log = logging.getLogger("tesengine.tes")

SUBMISSION_TAG = "tesengine-submission"
"""Tag key that makes a submission idempotent: its value is a uuid4 per submission."""

API_PREFIXES = ("/ga4gh/tes/v1", "/v1")
"""Where servers mount the API: the spec's base path first, then Funnel's older one."""

MAX_PAGE_SIZE = 2047
"""The largest ListTasks page the spec allows ("must be less than 2048")."""

READ_ONLY_TASK_FIELDS = frozenset({"id", "state", "logs", "creation_time"})
"""Task fields the server sets: never sent in a CreateTask request."""

_T = TypeVar("_T")
_warned: set[tuple[str, str]] = set()
_MAX_WARNED = 256  # bounded: a misbehaving server must not grow memory without end


def _warn_once(kind: str, value: object, then: str) -> None:
    key = (kind, str(value)[:100])
    if key not in _warned and len(_warned) < _MAX_WARNED:
        _warned.add(key)
        log.warning("TES server sent unknown %s %r; %s", kind, key[1], then)


class State(StrEnum):
    """``tesState``: the 11 states of a task."""

    UNKNOWN = "UNKNOWN"
    QUEUED = "QUEUED"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETE = "COMPLETE"
    EXECUTOR_ERROR = "EXECUTOR_ERROR"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    CANCELED = "CANCELED"
    PREEMPTED = "PREEMPTED"
    CANCELING = "CANCELING"

    @property
    def is_final(self) -> bool:
        """True when the task will not change state any more."""
        return self in _FINAL

    @property
    def is_active(self) -> bool:
        """True while the task may still change state (the opposite of :attr:`is_final`)."""
        return self not in _FINAL

    @property
    def is_failure(self) -> bool:
        """True for EXECUTOR_ERROR, SYSTEM_ERROR and CANCELED (PREEMPTED is separate)."""
        return self in _FAILED

    @classmethod
    def parse(cls, value: object) -> State:
        """``value`` as a State; an unknown string is UNKNOWN, with a warning once per value."""
        if isinstance(value, State):
            return value
        known = _STATES.get(value) if isinstance(value, str) else None
        if known is not None:  # the spec's own spelling: a dict look-up, not Enum's call
            return known
        text = str(value).strip().upper()
        try:
            return cls(text)
        except ValueError:
            _warn_once("task state", value, "treating it as UNKNOWN")
            return cls.UNKNOWN


_FINAL = frozenset(
    {State.COMPLETE, State.EXECUTOR_ERROR, State.SYSTEM_ERROR, State.CANCELED, State.PREEMPTED}
)
_FAILED = frozenset({State.EXECUTOR_ERROR, State.SYSTEM_ERROR, State.CANCELED})
_STATES: dict[str, State] = {state.value: state for state in State}


class View(StrEnum):
    """How much of a task the server returns."""

    MINIMAL = "MINIMAL"
    BASIC = "BASIC"
    FULL = "FULL"


class FileType(StrEnum):
    """``tesFileType``."""

    FILE = "FILE"
    DIRECTORY = "DIRECTORY"


def _drop_nulls(value: Any) -> Any:
    if value is None:
        return []  # only reached for lists that are not optional: TaskLog.outputs, ...
    if isinstance(value, list) and None in value:
        # Rare: one C-level scan is cheaper than rebuilding a dozen lists per FULL view.
        return [item for item in value if item is not None]
    return value


def _file_type(value: Any) -> Any:
    if isinstance(value, str) and value.upper() in FileType.__members__:
        return FileType(value.upper())
    if isinstance(value, str):
        _warn_once("file type", value, "ignoring it")
        return None
    return value


def _int_to_str(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


NonNullList = Annotated[list[_T], BeforeValidator(_drop_nulls)]
StateField = Annotated[State, BeforeValidator(State.parse)]
FileTypeField = Annotated[FileType | None, BeforeValidator(_file_type)]


def _snake_or_camel(name: str) -> AliasChoices:
    return AliasChoices(name, to_camel(name))


class WireModel(BaseModel):
    """Base of every TES model: tolerant parsing, null-free serialisation."""

    model_config = ConfigDict(
        extra="allow",
        populate_by_name=True,
        alias_generator=AliasGenerator(validation_alias=_snake_or_camel),
    )

    def to_wire(self, **kwargs: Any) -> dict[str, Any]:
        """The JSON-ready dict, without unset (``None``) fields."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True, **kwargs)

    def to_json(self, **kwargs: Any) -> bytes:
        """The JSON document as bytes, without unset (``None``) fields."""
        return self.model_dump_json(exclude_none=True, by_alias=True, **kwargs).encode()

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Inputs and outputs carry URLs with SAS tokens and signatures: never shown.
        for name, value in super().__repr_args__():
            yield name, _Redacted(value)


class _Redacted:
    """Shows a field value through :func:`~tesengine.redact.redact_repr`."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __repr__(self) -> str:
        return redact_repr(self.value)


class Input(WireModel):
    """``tesInput``: a file or directory put into the container before it runs."""

    path: str
    url: str | None = None
    name: str | None = None
    description: str | None = None
    type: FileTypeField = None
    content: str | None = None
    streamable: bool | None = None


class Output(WireModel):
    """``tesOutput``: a file, directory or glob uploaded after the task ran."""

    path: str
    url: str
    name: str | None = None
    description: str | None = None
    path_prefix: str | None = None
    type: FileTypeField = None


class Resources(WireModel):
    """``tesResources``."""

    cpu_cores: int | None = None
    preemptible: bool | None = None
    ram_gb: float | None = None
    disk_gb: float | None = None
    zones: NonNullList[str] | None = None
    backend_parameters: dict[str, str] | None = None
    backend_parameters_strict: bool | None = None


class Executor(WireModel):
    """``tesExecutor``: one command in one container image."""

    image: str
    command: list[str]
    workdir: str | None = None
    stdin: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    env: dict[str, str] | None = None
    ignore_error: bool | None = None


class ExecutorLog(WireModel):
    """``tesExecutorLog``. ``exit_code`` is None when the server did not say."""

    exit_code: int | None = None
    start_time: str | None = None
    end_time: str | None = None
    stdout: str | None = None
    stderr: str | None = None


class OutputFileLog(WireModel):
    """``tesOutputFileLog``. ``size_bytes`` is a string on the wire (int64 in JSON)."""

    url: str
    path: str
    size_bytes: Annotated[str | None, BeforeValidator(_int_to_str)] = None

    @property
    def size(self) -> int | None:
        """``size_bytes`` as an int, or None when absent or not a number."""
        try:
            return int(self.size_bytes) if self.size_bytes is not None else None
        except ValueError:
            return None


class TaskLog(WireModel):
    """``tesTaskLog``: one attempt of a task."""

    logs: NonNullList[ExecutorLog] = Field(default_factory=list)
    outputs: NonNullList[OutputFileLog] = Field(default_factory=list)
    metadata: dict[str, str] | None = None
    start_time: str | None = None
    end_time: str | None = None
    system_logs: NonNullList[str] | None = None


class TesTask(WireModel):
    """``tesTask``. ``id``, ``state``, ``logs`` and ``creation_time`` are set by the server.

    ``executors`` is required by the spec but absent from MINIMAL views, so
    it defaults to an empty list. ``state`` is None when the server did not
    send one; :attr:`current_state` then reads UNKNOWN, as the spec advises.
    """

    executors: NonNullList[Executor] = Field(default_factory=list)
    id: str | None = None
    state: StateField | None = None
    name: str | None = None
    description: str | None = None
    inputs: NonNullList[Input] | None = None
    outputs: NonNullList[Output] | None = None
    resources: Resources | None = None
    volumes: NonNullList[str] | None = None
    tags: dict[str, str] | None = None
    logs: NonNullList[TaskLog] | None = None
    creation_time: str | None = None

    @property
    def current_state(self) -> State:
        """The state, UNKNOWN when the server sent none."""
        return self.state if self.state is not None else State.UNKNOWN

    def request_json(self) -> bytes:
        """The CreateTask request body: the task without its server-set fields."""
        return self.to_json(exclude=set(READ_ONLY_TASK_FIELDS))


class ListTasksResponse(WireModel):
    """``tesListTasksResponse``. An empty ``next_page_token`` means the last page."""

    tasks: NonNullList[TesTask] = Field(default_factory=list)
    next_page_token: str | None = None


class CreateTaskResponse(WireModel):
    """``tesCreateTaskResponse``."""

    id: str


class CancelTaskResponse(WireModel):
    """``tesCancelTaskResponse``: an empty object (servers may add fields)."""


def _camel(name: str) -> Any:
    """Field options for a service-info key that is camelCase on the wire."""
    wire = to_camel(name)
    return Field(default=None, validation_alias=AliasChoices(wire, name), serialization_alias=wire)


class ServiceType(WireModel):
    """GA4GH service-info ``ServiceType``; for TES, ``artifact`` is ``tes``."""

    group: str = "org.ga4gh"
    artifact: str = "tes"
    version: str = "1.1.0"


class Organization(WireModel):
    """GA4GH service-info ``Organization``."""

    name: str
    url: str


class ServiceInfo(WireModel):
    """``tesServiceInfo``: GA4GH service-info plus TES's ``storage`` and backend parameters."""

    id: str | None = None
    name: str | None = None
    type: ServiceType | None = None
    description: str | None = None
    organization: Organization | None = None
    contact_url: str | None = _camel("contact_url")
    documentation_url: str | None = _camel("documentation_url")
    created_at: str | None = _camel("created_at")
    updated_at: str | None = _camel("updated_at")
    environment: str | None = None
    version: str | None = None
    storage: NonNullList[str] | None = None
    tes_resources_backend_parameters: NonNullList[str] | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "tesResources_backend_parameters",
            "tes_resources_backend_parameters",
            "tesResourcesBackendParameters",
        ),
        serialization_alias="tesResources_backend_parameters",
    )
