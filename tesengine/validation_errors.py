"""One formatter for pydantic validation errors, shared by the config and task files.

A pydantic error reads ``tasks.0.output: Extra inputs are not permitted``; a
user wants ``tasks[0].output: unknown key (did you mean 'outputs'?)``. This
module walks the model's type annotations along each error's location, so
it knows which parts are field names (``.name``), list indexes (``[0]``) and
dictionary keys (``['/in/x']``), which parts are only union tags (dropped),
and which keys were valid where an unknown one was found (the suggestion).
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["Problem", "describe", "did_you_mean", "problems"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation failure: where (rendered, and the raw field path) and why."""

    where: str
    fields: tuple[str, ...]
    reason: str


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or the empty string."""
    close = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def problems(exc: ValidationError, model: type[BaseModel], prefix: str = "") -> list[Problem]:
    """Every error of ``exc`` (raised validating ``model``), located and explained."""
    found: list[Problem] = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = tuple(err["loc"])
        where, fields, parent_keys = _locate(model, loc)
        reason = _reason(err, str(loc[-1]) if loc else "", parent_keys)
        where = f"{prefix}{where}" if where else prefix.rstrip(".") or "document"
        same = next((i for i, p in enumerate(found) if p.where == where), None)
        if same is None:
            found.append(Problem(where, fields, reason))
        elif reason not in found[same].reason:  # one place, several union branches
            found[same] = Problem(where, fields, f"{found[same].reason}, or {reason}")
    return found


def describe(exc: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    """All problems in one line: ``key: reason; key: reason``."""
    return "; ".join(f"{p.where}: {p.reason}" for p in problems(exc, model, prefix))


def _reason(err: Any, last: str, parent_keys: frozenset[str]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key" + did_you_mean(last, parent_keys)
    if kind == "missing":
        return "required key is missing"
    ctx = err.get("ctx") or {}
    if kind.startswith("union_tag") and "expected_tags" in ctx:
        return f"expected one of {ctx['expected_tags']}"
    return str(err["msg"]).removeprefix("Value error, ")


def _locate(
    model: type[BaseModel], loc: Sequence[Any]
) -> tuple[str, tuple[str, ...], frozenset[str]]:
    """Render ``loc``; also the field-name parts alone and the keys valid at its last step."""
    candidates: list[Any] = [model]
    rendered: list[str] = []
    fields: list[str] = []
    parent_keys: frozenset[str] = frozenset()
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        options = _flatten(candidates)
        parent_keys = frozenset(k for t in options for k in _model_keys(t))
        if isinstance(part, int):
            rendered.append(f"[{part}]")
            candidates = [a for t in options for a in _items(t)]
        elif any(_is_dict(t) for t in options):
            rendered.append(f"[{part!r}]")
            fields.append(str(part))
            candidates = [a for t in options for a in _values(t)]
        elif part not in parent_keys and _is_tag(part, options, last=last):
            continue  # a union branch or discriminator tag: not a place in the document
        else:
            rendered.append(f".{part}" if rendered else str(part))
            fields.append(str(part))
            candidates = [a for t in options for a in _field_types(t, str(part))]
    return "".join(rendered), tuple(fields), parent_keys


def _flatten(candidates: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for candidate in candidates:
        tp = candidate
        while typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            out += _flatten(typing.get_args(tp))
        elif tp is not type(None):
            out.append(tp)
    return out


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _model_keys(tp: Any) -> list[str]:
    if not _is_model(tp):
        return []
    return [info.alias or name for name, info in tp.model_fields.items()]


def _field_types(tp: Any, key: str) -> list[Any]:
    if not _is_model(tp):
        return []
    for name, info in tp.model_fields.items():
        if key in (name, info.alias):
            return [info.annotation]
    return []


def _is_dict(tp: Any) -> bool:
    return typing.get_origin(tp) is dict or tp is dict


def _values(tp: Any) -> list[Any]:
    args = typing.get_args(tp) if _is_dict(tp) else ()
    return [args[1]] if len(args) == 2 else []


def _items(tp: Any) -> list[Any]:
    if typing.get_origin(tp) in (list, tuple, set, frozenset):
        return [typing.get_args(tp)[0]] if typing.get_args(tp) else []
    return []


def _is_tag(part: object, options: Sequence[Any], *, last: bool) -> bool:
    """A union's branch label in a location: a discriminator value or a type's name.

    An unknown key is always the last part, so only a type's name can end a location.
    """
    if _names_a_type(part, options):
        return True
    return not last and isinstance(part, str) and len(options) > 1


def _names_a_type(part: object, options: Sequence[Any]) -> bool:
    if not isinstance(part, str):
        return False
    names = {getattr(t, "__name__", "") for t in options}
    return part in names or part.split("[")[0] in {"str", "int", "float", "bool", "list", "dict"}
