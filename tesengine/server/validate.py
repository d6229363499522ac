"""Strict validation of TES requests, on the raw JSON values.

The wire models in :mod:`tesengine.tes.models` are tolerant on purpose (a client
must read whatever a server sends); a server must be strict instead, so that a
typo in a task is a 400 naming the field rather than a task that silently does
something else. Every function here is pure: it returns a clean value or raises
:class:`~tesengine.errors.InvalidTask` whose message names the offending field.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import InvalidTask
from ..tes.models import State, View

__all__ = [
    "STATES",
    "VIEWS",
    "ListQuery",
    "ValidTask",
    "decode_page_token",
    "encode_page_token",
    "has_wildcard",
    "validate_list_query",
    "validate_task",
    "validate_view",
]

STATES = tuple(state.value for state in State)
VIEWS = tuple(view.value for view in View)
DEFAULT_PAGE_SIZE = 256
MAX_PAGE_SIZE = 2047
INT32_MAX = 2**31 - 1

#: Input URL schemes the server can read; outputs cannot go to http(s).
INPUT_SCHEMES = frozenset(
    {"file", "s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "http", "https", "memory"}
)
OUTPUT_SCHEMES = INPUT_SCHEMES - {"http", "https"}

_READ_ONLY_KEYS = frozenset({"id", "state", "logs", "creation_time"})
_WILDCARD_CHARS = frozenset("*?[")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ValidTask:
    """A validated task document (known keys only) and warnings for its system log."""

    doc: dict[str, Any]
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ListQuery:
    """Validated ListTasks parameters."""

    view: str
    name_prefix: str | None
    state: str | None
    tags: tuple[tuple[str, str], ...]
    page_size: int
    after_seq: int | None


def _fail(field: str, problem: str) -> InvalidTask:
    return InvalidTask(f"{field}: {problem}")


def _str(value: object, field: str, *, nonempty: bool = False) -> str:
    if not isinstance(value, str):
        raise _fail(field, f"must be a string, got {_kind(value)}")
    if nonempty and not value:
        raise _fail(field, "must not be empty")
    if "\x00" in value:
        raise _fail(field, "must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _fail(field, "must be valid UTF-8 (no lone surrogates)") from None
    return value


def _bool(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(field, f"must be a boolean, got {_kind(value)}")
    return value


def _number(value: object, field: str, *, integer: bool = False) -> float | int:
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok:
        want = "an integer" if integer else "a number"
        raise _fail(field, f"must be {want}, got {_kind(value)}")
    assert isinstance(value, int | float)
    if value < 0 or not math.isfinite(value):
        raise _fail(field, "must be a finite number >= 0")
    if integer and value > INT32_MAX:
        raise _fail(field, "is out of the int32 range")
    return value


def _object(value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(field, f"must be an object, got {_kind(value)}")
    return value


def _list(value: object, field: str, item: Callable[[object, str], T]) -> list[T]:
    if not isinstance(value, list):
        raise _fail(field, f"must be an array, got {_kind(value)}")
    return [item(v, f"{field}[{i}]") for i, v in enumerate(value)]


def _str_map(value: object, field: str) -> dict[str, str]:
    obj = _object(value, field)
    return {_str(k, f"{field} key"): _str(v, f"{field}.{k}") for k, v in obj.items()}


def _abs_path(value: object, field: str, *, allow_root: bool = False) -> str:
    path = _str(value, field, nonempty=True)
    if not path.startswith("/"):
        raise _fail(field, f"must be an absolute path, got {path!r}")
    # Checks (reserved dirs, mounts) work on the names; an ambiguous spelling such as
    # '/./etc' or '/usr//x' is refused rather than rewritten behind the client's back.
    inner = path[1:].removesuffix("/")
    parts = inner.split("/") if inner else []
    if path.startswith("//") or any(p in ("", ".", "..") for p in parts):
        raise _fail(
            field, f"must not contain '.', '..' or '//' (write a plain path), got {path[:200]!r}"
        )
    if not parts and not allow_root:
        raise _fail(field, "must name a path below '/'")
    return path


def _url(value: object, field: str, schemes: frozenset[str]) -> str:
    url = _str(value, field, nonempty=True)
    if url.startswith("/"):
        return url
    scheme, sep, _rest = url.partition("://")
    if not sep or scheme.lower() not in schemes:
        allowed = ", ".join(sorted(schemes))
        raise _fail(field, f"unsupported URL {url[:200]!r} (schemes: {allowed}, or a /path)")
    return url


def _check_keys(obj: Mapping[str, Any], field: str, known: frozenset[str]) -> None:
    for key in obj:
        if key not in known:
            where = f"{field}.{key}" if field else key
            raise _fail(where, "unknown field")


def _file_type(value: object, field: str) -> str:
    kind = _str(value, field)
    if kind not in ("FILE", "DIRECTORY"):
        raise _fail(field, f"must be FILE or DIRECTORY, got {kind!r}")
    return kind


def has_wildcard(path: str) -> bool:
    """True when ``path`` holds a POSIX pattern character (``*``, ``?``, ``[``)."""
    return any(c in _WILDCARD_CHARS for c in path)


_EXECUTOR_KEYS = frozenset(
    {"image", "command", "workdir", "stdin", "stdout", "stderr", "env", "ignore_error"}
)


def _executor(value: object, field: str) -> dict[str, Any]:
    obj = _object(value, field)
    _check_keys(obj, field, _EXECUTOR_KEYS)
    for key in ("image", "command"):
        if key not in obj:
            raise _fail(f"{field}.{key}", "required")
    out: dict[str, Any] = {"image": _str(obj["image"], f"{field}.image", nonempty=True)}
    command = _list(obj["command"], f"{field}.command", _str)
    if not command or not command[0]:
        raise _fail(
            f"{field}.command", "must be a non-empty array whose first item names a program"
        )
    out["command"] = command
    if obj.get("workdir") is not None:
        out["workdir"] = _abs_path(obj["workdir"], f"{field}.workdir", allow_root=True)
    for key in ("stdin", "stdout", "stderr"):
        if obj.get(key) is not None:
            out[key] = _abs_path(obj[key], f"{field}.{key}")
    if obj.get("env") is not None:
        out["env"] = env = _str_map(obj["env"], f"{field}.env")
        for name in env:
            if not name or "=" in name:
                raise _fail(f"{field}.env", f"invalid variable name {name[:100]!r}")
    if obj.get("ignore_error") is not None:
        out["ignore_error"] = _bool(obj["ignore_error"], f"{field}.ignore_error")
    return out


_INPUT_KEYS = frozenset({"name", "description", "url", "path", "type", "content", "streamable"})


def _input(value: object, field: str) -> dict[str, Any]:
    obj = _object(value, field)
    _check_keys(obj, field, _INPUT_KEYS)
    out: dict[str, Any] = {}
    for key in ("name", "description"):
        if obj.get(key) is not None:
            out[key] = _str(obj[key], f"{field}.{key}")
    if obj.get("path") is None:
        raise _fail(f"{field}.path", "required")
    out["path"] = _abs_path(obj["path"], f"{field}.path")
    kind = _file_type(obj["type"], f"{field}.type") if obj.get("type") is not None else "FILE"
    out["type"] = kind
    url, content = obj.get("url"), obj.get("content")
    if url is None and content is None:
        raise _fail(f"{field}", "one of url and content must be set")
    # Both may be set: the spec says a non-empty content wins and the url is ignored.
    if content is not None:
        if kind != "FILE":
            raise _fail(f"{field}.content", "is only allowed for FILE inputs")
        out["content"] = _str(content, f"{field}.content")
    if url is not None:
        out["url"] = _url(url, f"{field}.url", INPUT_SCHEMES)
    if obj.get("streamable") is not None:
        out["streamable"] = _bool(obj["streamable"], f"{field}.streamable")
    return out


_OUTPUT_KEYS = frozenset({"name", "description", "url", "path", "path_prefix", "type"})


def _output(value: object, field: str) -> dict[str, Any]:
    obj = _object(value, field)
    _check_keys(obj, field, _OUTPUT_KEYS)
    out: dict[str, Any] = {}
    for key in ("name", "description"):
        if obj.get(key) is not None:
            out[key] = _str(obj[key], f"{field}.{key}")
    for key in ("path", "url"):
        if obj.get(key) is None:
            raise _fail(f"{field}.{key}", "required")
    out["path"] = path = _abs_path(obj["path"], f"{field}.path")
    out["url"] = _url(obj["url"], f"{field}.url", OUTPUT_SCHEMES)
    out["type"] = _file_type(obj["type"], f"{field}.type") if obj.get("type") else "FILE"
    prefix = obj.get("path_prefix")
    if has_wildcard(path):
        if prefix is None:
            raise _fail(f"{field}.path_prefix", "required when path contains wildcards")
        prefix = _abs_path(prefix, f"{field}.path_prefix", allow_root=True)
        if not path.startswith(prefix):
            raise _fail(f"{field}.path_prefix", f"{prefix!r} is not a prefix of {path!r}")
        out["path_prefix"] = prefix
    elif prefix is not None:
        out["path_prefix"] = _str(prefix, f"{field}.path_prefix")
    return out


_RESOURCE_KEYS = frozenset(
    {
        "cpu_cores",
        "preemptible",
        "ram_gb",
        "disk_gb",
        "zones",
        "backend_parameters",
        "backend_parameters_strict",
    }
)


def _resources(value: object, supported: frozenset[str], warnings: list[str]) -> dict[str, Any]:
    obj = _object(value, "resources")
    _check_keys(obj, "resources", _RESOURCE_KEYS)
    out: dict[str, Any] = {}
    if obj.get("cpu_cores") is not None:
        out["cpu_cores"] = _number(obj["cpu_cores"], "resources.cpu_cores", integer=True)
    for key in ("ram_gb", "disk_gb"):
        if obj.get(key) is not None:
            out[key] = _number(obj[key], f"resources.{key}")
    for key in ("preemptible", "backend_parameters_strict"):
        if obj.get(key) is not None:
            out[key] = _bool(obj[key], f"resources.{key}")
    if obj.get("zones") is not None:
        out["zones"] = _list(obj["zones"], "resources.zones", _str)
    if obj.get("backend_parameters") is not None:
        params = _str_map(obj["backend_parameters"], "resources.backend_parameters")
        kept = {k: v for k, v in params.items() if k.lower() in supported}
        unknown = sorted(set(params) - set(kept))
        if unknown and out.get("backend_parameters_strict"):
            names = ", ".join(unknown)
            raise _fail("resources.backend_parameters", f"unsupported keys (strict): {names}")
        if unknown:
            warnings.append(f"ignored unsupported backend_parameters: {', '.join(unknown)}")
        if kept:
            out["backend_parameters"] = kept
    return out


_TASK_KEYS = frozenset(
    {"name", "description", "inputs", "outputs", "resources", "executors", "volumes", "tags"}
)


def validate_task(body: object, *, backend_parameters: frozenset[str] = frozenset()) -> ValidTask:
    """Validate a CreateTask body; read-only fields (id, state, logs...) are dropped.

    ``backend_parameters`` are the supported keys (lower case); unsupported
    keys are an error when ``backend_parameters_strict`` is true, and are
    dropped with a warning otherwise, as the spec asks.
    """
    obj = _object(body, "body")
    _check_keys(obj, "", _TASK_KEYS | _READ_ONLY_KEYS)
    doc: dict[str, Any] = {}
    warnings: list[str] = []
    for key in ("name", "description"):
        if obj.get(key) is not None:
            doc[key] = _str(obj[key], key)
    if obj.get("executors") is None:
        raise _fail("executors", "required")
    doc["executors"] = _list(obj["executors"], "executors", _executor)
    if not doc["executors"]:
        raise _fail("executors", "must hold at least one executor")
    if obj.get("inputs") is not None:
        doc["inputs"] = _list(obj["inputs"], "inputs", _input)
    if obj.get("outputs") is not None:
        doc["outputs"] = _list(obj["outputs"], "outputs", _output)
    if obj.get("resources") is not None:
        doc["resources"] = _resources(obj["resources"], backend_parameters, warnings)
    if obj.get("volumes") is not None:
        doc["volumes"] = _list(obj["volumes"], "volumes", _abs_path)
    if obj.get("tags") is not None:
        doc["tags"] = _str_map(obj["tags"], "tags")
    return ValidTask(doc, tuple(warnings))


def validate_view(value: str | None, default: str = "MINIMAL") -> str:
    """The ``view`` query parameter, or ``default`` when absent."""
    if value is None:
        return default
    if value not in VIEWS:
        raise _fail("view", f"must be one of {', '.join(VIEWS)}, got {value[:100]!r}")
    return value


def validate_list_query(
    params: Mapping[str, str], tag_keys: list[str], tag_values: list[str]
) -> ListQuery:
    """ListTasks query parameters; tag keys and values are zipped, a missing value matches any."""
    state = params.get("state")
    if state is not None and state not in STATES:
        raise _fail("state", f"must be one of {', '.join(STATES)}, got {state[:100]!r}")
    if len(tag_values) > len(tag_keys):
        raise _fail("tag_value", "given more often than tag_key")
    tags = tuple(
        (key, tag_values[i] if i < len(tag_values) else "") for i, key in enumerate(tag_keys)
    )
    raw_size = params.get("page_size")
    page_size = DEFAULT_PAGE_SIZE
    if raw_size is not None:
        try:
            page_size = int(raw_size)
        except ValueError:
            raise _fail("page_size", f"must be an integer, got {raw_size[:100]!r}") from None
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise _fail("page_size", f"must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
    token = params.get("page_token")
    return ListQuery(
        view=validate_view(params.get("view")),
        name_prefix=params.get("name_prefix"),
        state=state,
        tags=tags,
        page_size=page_size,
        after_seq=decode_page_token(token) if token else None,
    )


_TOKEN_TAG = "p1:"  # noqa: S105 - a format marker, not a secret


def encode_page_token(seq: int) -> str:
    """An opaque token that resumes listing after the task with sequence ``seq``."""
    return base64.urlsafe_b64encode(f"{_TOKEN_TAG}{seq}".encode()).decode().rstrip("=")


def decode_page_token(token: str) -> int:
    """The sequence number inside a token from :func:`encode_page_token`."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if raw.startswith(_TOKEN_TAG):
            return int(raw.removeprefix(_TOKEN_TAG))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise _fail("page_token", "is not a token this server issued")


def _kind(value: object) -> str:
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__
    )
