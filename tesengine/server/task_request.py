"""The CreateTask body ``tesengine serve`` accepts: strict pydantic models.

The wire models in :mod:`tesengine.tes.models` are tolerant on purpose (a
client must read whatever a server sends); a server must be strict instead,
so that a typo in a task is a 400 naming the field rather than a task that
silently does something else. These models share the wire models' field
names (a test holds both to the spec) but forbid unknown fields, take JSON
types exactly (``"8"`` is not a number, ``1`` not a boolean) and constrain
values: absolute container paths written plainly, URLs of a scheme in the
storage registry (outputs: one it can write), finite sizes, int32 cores.

``null`` means "not set", as in the wire models. :func:`validate_task`
returns the clean document, or raises :class:`~tesengine.errors.InvalidTask`
whose message names each offending field (``inputs[0].url: ...``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Self, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..errors import InvalidTask
from ..storage.urls import scheme_problem
from ..tes.models import READ_ONLY_TASK_FIELDS, FileType
from ..validation_errors import problems
from .task_doc import ResourcesDoc, TaskRequestDoc

__all__ = [
    "WILDCARD_CHARS",
    "Executor",
    "Input",
    "Output",
    "Resources",
    "TaskRequest",
    "ValidTask",
    "before_wildcard",
    "has_wildcard",
    "validate_task",
]

INT32_MAX = 2**31 - 1
WILDCARD_CHARS = frozenset("*?[")
#: Problems listed in one 400 reply; a body with thousands of bad items names the first few.
MAX_PROBLEMS = 10


def has_wildcard(path: str) -> bool:
    """True when ``path`` holds a POSIX pattern character (``*``, ``?``, ``[``)."""
    return any(c in WILDCARD_CHARS for c in path)


def before_wildcard(path: str) -> str:
    """``path`` up to its first pattern character (all of it when it has none)."""
    return path[: min((path.find(c) for c in WILDCARD_CHARS if c in path), default=len(path))]


def _text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid UTF-8 (no lone surrogates)") from None
    return value


def _nonempty(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


def _container_path(path: str, *, allow_root: bool) -> str:
    if not path.startswith("/"):
        raise ValueError(f"must be an absolute path, got {path[:200]!r}")
    # Checks (reserved dirs, mounts) work on the names; an ambiguous spelling such as
    # '/./etc' or '/usr//x' is refused rather than rewritten behind the client's back.
    inner = path[1:].removesuffix("/")
    parts = inner.split("/") if inner else []
    if path.startswith("//") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(
            f"must not contain '.', '..' or '//' (write a plain path), got {path[:200]!r}"
        )
    if not parts and not allow_root:
        raise ValueError("must name a path below '/'")
    return path


def _file_path(path: str) -> str:
    return _container_path(path, allow_root=False)


def _dir_path(path: str) -> str:
    return _container_path(path, allow_root=True)


def _url(url: str, *, writable: bool) -> str:
    # The storage registry decides; the message names the scheme, never the URL (it may
    # carry a token).
    if not url.startswith("/") and (problem := scheme_problem(url, writable=writable)):
        raise ValueError(f"{problem}, or a /path")
    return url


def _input_url(url: str) -> str:
    return _url(url, writable=False)


def _output_url(url: str) -> str:
    return _url(url, writable=True)


def _keys(mapping: dict[str, str]) -> dict[str, str]:
    for key in mapping:
        try:
            _text(key)
        except ValueError as exc:
            raise ValueError(f"key {key[:100]!r} {exc}") from None
    return mapping


def _env_names(env: dict[str, str]) -> dict[str, str]:
    for name in env:
        if not name or "=" in name:
            raise ValueError(f"invalid variable name {name[:100]!r}")
    return env


Text = Annotated[str, AfterValidator(_text)]
NonEmptyText = Annotated[Text, AfterValidator(_nonempty)]
#: A container path below ``/`` (an input, an output, a volume, a stream).
ContainerPath = Annotated[NonEmptyText, AfterValidator(_file_path)]
#: A container directory that may be ``/`` itself (a workdir, a path prefix).
ContainerDir = Annotated[NonEmptyText, AfterValidator(_dir_path)]
InputUrl = Annotated[NonEmptyText, AfterValidator(_input_url)]
OutputUrl = Annotated[NonEmptyText, AfterValidator(_output_url)]
StrMap = Annotated[dict[str, Text], AfterValidator(_keys)]
Cores = Annotated[int, Field(ge=0, le=INT32_MAX)]
Gigabytes = Annotated[float, Field(ge=0, allow_inf_nan=False)]
# Enum values arrive as JSON strings, which strict mode would refuse.
Kind = Annotated[FileType, Field(strict=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        # The wire models leave unset fields out; a client sending null means the same.
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class Executor(_Strict):
    """``tesExecutor``: an image and a command naming a program."""

    image: NonEmptyText
    command: list[Text]
    workdir: ContainerDir | None = None
    stdin: ContainerPath | None = None
    stdout: ContainerPath | None = None
    stderr: ContainerPath | None = None
    env: Annotated[StrMap, AfterValidator(_env_names)] | None = None
    ignore_error: bool | None = None

    @field_validator("command")
    @classmethod
    def _names_a_program(cls, command: list[str]) -> list[str]:
        if not command or not command[0]:
            raise ValueError("must be a non-empty array whose first item names a program")
        return command


class Input(_Strict):
    """``tesInput``: a URL or inline ``content`` put at a container path."""

    path: ContainerPath
    name: Text | None = None
    description: Text | None = None
    type: Kind = FileType.FILE
    url: InputUrl | None = None
    content: Text | None = None
    streamable: bool | None = None

    @field_validator("content")
    @classmethod
    def _content_is_a_file(cls, content: str | None, info: ValidationInfo) -> str | None:
        if content is not None and info.data.get("type", FileType.FILE) is not FileType.FILE:
            raise ValueError("is only allowed for FILE inputs")
        return content

    @model_validator(mode="after")
    def _has_a_source(self) -> Self:
        # Both may be set: the spec says a non-empty content wins and the url is ignored.
        if self.url is None and self.content is None:
            raise ValueError("one of url and content must be set")
        return self


class Output(_Strict):
    """``tesOutput``: a path (or glob, with its ``path_prefix``) uploaded to a URL."""

    path: ContainerPath
    url: OutputUrl
    name: Text | None = None
    description: Text | None = None
    type: Kind = FileType.FILE
    path_prefix: Text | None = Field(default=None, validate_default=True)

    @field_validator("path_prefix")
    @classmethod
    def _prefix_of_a_glob(cls, prefix: str | None, info: ValidationInfo) -> str | None:
        path = info.data.get("path")
        if path is None or not has_wildcard(path):
            return prefix  # a plain path: the prefix is kept, unused
        if prefix is None:
            raise ValueError("required when path contains wildcards")
        _dir_path(prefix)
        if not path.startswith(prefix):
            raise ValueError(f"{prefix!r} is not a prefix of {path!r}")
        return prefix


class Resources(_Strict):
    """``tesResources``."""

    cpu_cores: Cores | None = None
    preemptible: bool | None = None
    ram_gb: Gigabytes | None = None
    disk_gb: Gigabytes | None = None
    zones: list[Text] | None = None
    backend_parameters: StrMap | None = None
    backend_parameters_strict: bool | None = None


class TaskRequest(_Strict):
    """``tesTask`` as a CreateTask body, without the fields the server sets."""

    name: Text | None = None
    description: Text | None = None
    inputs: list[Input] | None = None
    outputs: list[Output] | None = None
    resources: Resources | None = None
    executors: list[Executor]
    volumes: list[ContainerPath] | None = None
    tags: StrMap | None = None

    @field_validator("executors")
    @classmethod
    def _at_least_one(cls, executors: list[Executor]) -> list[Executor]:
        if not executors:
            raise ValueError("must hold at least one executor")
        return executors


@dataclass(frozen=True, slots=True)
class ValidTask:
    """A validated task document (known keys only) and warnings for its system log."""

    doc: TaskRequestDoc
    warnings: tuple[str, ...]


def validate_task(body: object, *, backend_parameters: frozenset[str] = frozenset()) -> ValidTask:
    """Validate a CreateTask body; read-only fields (id, state, logs...) are dropped.

    ``backend_parameters`` are the supported keys (lower case); unsupported
    keys are an error when ``backend_parameters_strict`` is true, and are
    dropped with a warning otherwise, as the spec asks.
    """
    if not isinstance(body, dict):
        raise InvalidTask(f"body: must be a JSON object, got {_kind(body)}")
    writable = {k: v for k, v in body.items() if k not in READ_ONLY_TASK_FIELDS}
    try:
        request = TaskRequest.model_validate(writable)
    except ValidationError as exc:
        raise InvalidTask(_describe(exc)) from None
    # The one cast of a request: the strict models above have the same fields as TaskRequestDoc.
    doc = cast(TaskRequestDoc, request.model_dump(mode="json", exclude_none=True))
    warnings = _keep_supported(doc.get("resources"), backend_parameters)
    return ValidTask(doc, warnings)


def _keep_supported(resources: ResourcesDoc | None, supported: frozenset[str]) -> tuple[str, ...]:
    """Drop unsupported backend parameters from ``resources``; the warnings to log."""
    params: Mapping[str, str] = (resources or {}).get("backend_parameters") or {}
    unknown = sorted(k for k in params if k.lower() not in supported)
    if not unknown:
        return ()
    assert resources is not None
    names = ", ".join(unknown)
    if resources.get("backend_parameters_strict"):
        raise InvalidTask(f"resources.backend_parameters: unsupported keys (strict): {names}")
    kept = {k: v for k, v in params.items() if k.lower() in supported}
    if kept:
        resources["backend_parameters"] = kept
    else:
        del resources["backend_parameters"]
    return (f"ignored unsupported backend_parameters: {names}",)


def _describe(exc: ValidationError) -> str:
    found = problems(exc, TaskRequest)
    lines = [f"{p.where[:300]}: {p.reason}" for p in found[:MAX_PROBLEMS]]
    if len(found) > MAX_PROBLEMS:
        lines.append(f"... and {len(found) - MAX_PROBLEMS} more problems")
    return "; ".join(lines)


def _kind(value: object) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")
