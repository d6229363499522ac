"""The query parameters of GetTask and ListTasks, and ListTasks' opaque page tokens.

Pure functions: they return typed values (:class:`~tesengine.tes.models.View`,
:class:`~tesengine.tes.models.State`) or raise
:class:`~tesengine.errors.InvalidTask` naming the parameter.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from ..errors import InvalidTask
from ..tes.models import MAX_PAGE_SIZE, State, View

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "ListQuery",
    "decode_page_token",
    "encode_page_token",
    "validate_list_query",
    "validate_view",
]

DEFAULT_PAGE_SIZE = 256
_E = TypeVar("_E", bound=StrEnum)


@dataclass(frozen=True, slots=True)
class ListQuery:
    """Validated ListTasks parameters."""

    view: View
    name_prefix: str | None
    state: State | None
    tags: tuple[tuple[str, str], ...]
    page_size: int
    after_seq: int | None


def _fail(field: str, problem: str) -> InvalidTask:
    return InvalidTask(f"{field}: {problem}")


def validate_view(value: str | None, default: View = View.MINIMAL) -> View:
    """The ``view`` query parameter, or ``default`` when absent."""
    return default if value is None else _one_of(View, "view", value)


def _one_of(kind: type[_E], field: str, value: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(kind)
        raise _fail(field, f"must be one of {allowed}, got {value[:100]!r}") from None


def _page_size(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise _fail("page_size", f"must be an integer, got {raw[:100]!r}") from None
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise _fail("page_size", f"must be between 1 and {MAX_PAGE_SIZE}, got {size}")
    return size


def validate_list_query(
    params: Mapping[str, str], tag_keys: list[str], tag_values: list[str]
) -> ListQuery:
    """ListTasks query parameters; tag keys and values are zipped, a missing value matches any."""
    raw_state = params.get("state")
    state = None if raw_state is None else _one_of(State, "state", raw_state)
    if len(tag_values) > len(tag_keys):
        raise _fail("tag_value", "given more often than tag_key")
    tags = tuple(
        (key, tag_values[i] if i < len(tag_values) else "") for i, key in enumerate(tag_keys)
    )
    token = params.get("page_token")
    return ListQuery(
        view=validate_view(params.get("view")),
        name_prefix=params.get("name_prefix"),
        state=state,
        tags=tags,
        page_size=_page_size(params.get("page_size")),
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
