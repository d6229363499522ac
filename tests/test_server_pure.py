"""Pure parts of the server: request validation, views, filters, page tokens, mount plans."""

from __future__ import annotations

import ast
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import tesengine.server
from tesengine import errors
from tesengine.errors import InvalidTask, StagingError
from tesengine.server import task_request
from tesengine.server.access import AllowedDirs
from tesengine.server.list_query import (
    decode_page_token,
    encode_page_token,
    validate_list_query,
)
from tesengine.server.task_request import validate_task
from tesengine.server.task_tree import plan_mounts
from tesengine.server.views import matches, project
from tesengine.tes import models as wire
from tests.fixtures.tes_spec import TesSpec


def _task(**extra: Any) -> dict[str, Any]:
    return {"executors": [{"image": "alpine", "command": ["true"]}], **extra}


BAD_TASKS: list[tuple[object, str]] = [
    ([], "body: must be a JSON object, got an array"),
    ({}, "executors: required"),
    ({"executors": []}, "executors: must hold at least one"),
    ({"executors": [{"command": ["true"]}]}, "executors[0].image: required"),
    ({"executors": [{"image": "a"}]}, "executors[0].command: required"),
    ({"executors": [{"image": "a", "command": []}]}, "executors[0].command"),
    (
        {"executors": [{"image": "a", "command": "true"}]},
        "executors[0].command: Input should be a valid list",
    ),
    ({"executors": [{"image": "", "command": ["x"]}]}, "executors[0].image: must not be empty"),
    (_task(executors=[{"image": "a", "command": ["x"], "workdir": "rel"}]), "executors[0].workdir"),
    (
        _task(executors=[{"image": "a", "command": ["x"], "env": {"A": 1}}]),
        "executors[0].env['A']: Input should be a valid string",
    ),
    (_task(executors=[{"image": "a", "command": ["x"], "ignore_error": "yes"}]), "ignore_error"),
    (_task(executors=[{"image": "a", "command": ["x"], "bogus": 1}]), "executors[0].bogus"),
    (_task(inputs=[{"url": "s3://b/k"}]), "inputs[0].path: required"),
    (_task(inputs=[{"path": "data/x", "url": "s3://b/k"}]), "inputs[0].path: must be an absolute"),
    (_task(inputs=[{"path": "/d/../../x", "url": "s3://b/k"}]), "inputs[0].path: must not contain"),
    (_task(inputs=[{"path": "/d/x"}]), "inputs[0]: one of url and content"),
    (_task(inputs=[{"path": "/d/x", "url": "ftp://h/k"}]), "inputs[0].url: unsupported URL"),
    (_task(inputs=[{"path": "/d/x", "content": "x", "type": "DIRECTORY"}]), "inputs[0].content"),
    (_task(inputs=[{"path": "/d/x", "content": "x", "type": "DIR"}]), "inputs[0].type"),
    (_task(outputs=[{"path": "/d/x"}]), "outputs[0].url: required"),
    (_task(outputs=[{"path": "/d/x", "url": "https://h/k"}]), "outputs[0].url: unsupported"),
    (_task(outputs=[{"path": "/d/*.txt", "url": "s3://b/k"}]), "outputs[0].path_prefix: required"),
    (
        _task(outputs=[{"path": "/d/*.txt", "url": "s3://b/k", "path_prefix": "/e"}]),
        "outputs[0].path_prefix",
    ),
    (_task(resources={"cpu_cores": -1}), "resources.cpu_cores"),
    (_task(resources={"cpu_cores": 1.5}), "resources.cpu_cores: Input should be a valid integer"),
    (_task(resources={"cpu_cores": True}), "resources.cpu_cores"),
    (_task(resources={"ram_gb": "8"}), "resources.ram_gb"),
    (
        _task(resources={"backend_parameters": {"VmSize": "x"}, "backend_parameters_strict": True}),
        "resources.backend_parameters: unsupported keys (strict): VmSize",
    ),
    (_task(volumes=["rel"]), "volumes[0]"),
    (_task(tags={"a": None}), "tags['a']: Input should be a valid string"),
    (_task(name=5), "name: Input should be a valid string"),
    (_task(executor=[]), "executor: unknown key (did you mean 'executors'?)"),
    (_task(name="bad\ud800"), "name: must be valid UTF-8"),
    (_task(executors=[{"image": "a", "command": ["x"], "env": {"A=B": "1"}}]), "env: invalid"),
    (_task(tags={"a": "nul\x00"}), "tags['a']: must not contain NUL"),
    (_task(tags={"a\x00": "v"}), "tags: key 'a\\x00' must not contain NUL"),
    (_task(resources={"ram_gb": float("nan")}), "resources.ram_gb: Input should be a finite"),
    (_task(resources={"cpu_cores": 2**31}), "resources.cpu_cores: Input should be less than"),
    (
        _task(outputs=[{"path": "/d/*.txt", "url": "s3://b/k", "path_prefix": "d"}]),
        "outputs[0].path_prefix: must be an absolute path",
    ),
    (_task(inputs=[{"path": "/d/x", "content": "", "streamable": 1}]), "inputs[0].streamable"),
    (_task(executors=[{"image": "a", "command": [""]}]), "executors[0].command: must be a non"),
]


@pytest.mark.parametrize(("body", "message"), BAD_TASKS)
def test_bad_tasks_name_the_field(body: object, message: str) -> None:
    with pytest.raises(InvalidTask) as info:
        validate_task(body)
    assert message in str(info.value)


def test_valid_task_is_cleaned() -> None:
    body = _task(
        id="client-chosen",
        state="COMPLETE",
        logs=[],
        name="n",
        inputs=[{"path": "/in/a", "url": "/host/a"}, {"path": "/in/b", "content": ""}],
        outputs=[{"path": "/out/*.txt", "path_prefix": "/out", "url": "file:///o"}],
        resources={"cpu_cores": 2, "backend_parameters": {"VmSize": "big"}},
        tags={"k": "v"},
    )
    valid = validate_task(body)
    assert "id" not in valid.doc and "state" not in valid.doc and "logs" not in valid.doc
    assert valid.doc["inputs"][0]["type"] == "FILE"
    assert valid.doc["outputs"][0]["type"] == "FILE"
    # Unsupported keys are dropped (not stored) with a warning, as the spec asks.
    assert "backend_parameters" not in valid.doc["resources"]
    assert valid.warnings == ("ignored unsupported backend_parameters: VmSize",)


def test_null_means_unset_and_defaults_are_filled() -> None:
    body = _task(name=None, inputs=[{"path": "/in/a", "content": "", "type": None, "url": None}])
    doc = validate_task(body).doc
    assert "name" not in doc
    assert doc["inputs"] == [{"path": "/in/a", "type": "FILE", "content": ""}]
    with pytest.raises(InvalidTask, match=r"^executors: required"):
        validate_task({"executors": None})


def test_every_problem_is_named_once_in_one_message() -> None:
    body = {"executors": [{"image": 1, "command": ["x"]}], "volumes": ["a", "/b", "c"]}
    with pytest.raises(InvalidTask) as info:
        validate_task(body)
    assert str(info.value).split("; ") == [
        "executors[0].image: Input should be a valid string",
        "volumes[0]: must be an absolute path, got 'a'",
        "volumes[2]: must be an absolute path, got 'c'",
    ]
    many = _task(volumes=[f"rel{i}" for i in range(50)])
    with pytest.raises(InvalidTask, match=r"volumes\[9\]: .*; \.\.\. and 40 more problems$"):
        validate_task(many)


STRICT_AND_WIRE = [
    (task_request.TaskRequest, wire.TesTask, "tesTask"),
    (task_request.Executor, wire.Executor, "tesExecutor"),
    (task_request.Input, wire.Input, "tesInput"),
    (task_request.Output, wire.Output, "tesOutput"),
    (task_request.Resources, wire.Resources, "tesResources"),
]


@pytest.mark.parametrize(("strict", "tolerant", "schema"), STRICT_AND_WIRE)
def test_strict_models_have_the_wire_and_spec_fields(
    strict: type[BaseModel], tolerant: type[BaseModel], schema: str, tes_spec: TesSpec
) -> None:
    spec_fields = set(tes_spec.document["components"]["schemas"][schema]["properties"])
    writable = set(tolerant.model_fields) - wire.READ_ONLY_TASK_FIELDS
    assert set(strict.model_fields) == writable == spec_fields - wire.READ_ONLY_TASK_FIELDS


def test_a_clean_task_is_a_spec_task(tes_spec: TesSpec) -> None:
    body = _task(
        inputs=[{"path": "/in/a", "url": "s3://b/a", "streamable": True}],
        outputs=[{"path": "/out/*.txt", "path_prefix": "/out", "url": "gs://b/o"}],
        resources={"cpu_cores": 2, "ram_gb": 1, "zones": ["z"], "preemptible": False},
        volumes=["/vol"],
    )
    doc = validate_task(body).doc
    tes_spec.validate("tesTask", {"id": "x", "state": "QUEUED", **doc})
    assert doc["resources"]["ram_gb"] == 1.0


def test_list_query_defaults_and_errors() -> None:
    q = validate_list_query({}, [], [])
    assert (q.view, q.page_size, q.after_seq, q.tags) == ("MINIMAL", 256, None, ())
    q = validate_list_query({"page_size": "2047"}, ["a", "b"], ["1"])
    assert q.page_size == 2047 and q.tags == (("a", "1"), ("b", ""))
    for params, field in [
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "2048"}, "page_size"),
        ({"page_size": "x"}, "page_size"),
        ({"view": "ALL"}, "view"),
        ({"state": "DONE"}, "state"),
        ({"page_token": "garbage!"}, "page_token"),
    ]:
        with pytest.raises(InvalidTask, match=f"^{field}:"):
            validate_list_query(params, [], [])
    with pytest.raises(InvalidTask, match=r"^tag_value:"):
        validate_list_query({}, [], ["v"])


def test_page_token_round_trip() -> None:
    token = encode_page_token(12345)
    assert "12345" not in token
    assert decode_page_token(token) == 12345


def _doc() -> dict[str, Any]:
    return {
        "id": "t1",
        "state": "COMPLETE",
        "name": "align",
        "executors": [{"image": "a", "command": ["x"]}],
        "inputs": [{"path": "/a", "content": "secret-ish"}],
        "tags": {"foo": "bar", "baz": "bat"},
        "logs": [
            {
                "logs": [{"exit_code": 0, "stdout": "o", "stderr": "e"}],
                "outputs": [],
                "system_logs": ["s"],
            }
        ],
    }


def test_views() -> None:
    doc = _doc()
    assert project(doc, "MINIMAL") == {"id": "t1", "state": "COMPLETE"}
    basic = project(doc, "BASIC")
    assert basic["inputs"] == [{"path": "/a"}]
    assert basic["logs"] == [{"logs": [{"exit_code": 0}], "outputs": []}]
    assert project(doc, "FULL") == doc
    assert doc["inputs"][0]["content"] == "secret-ish", "projection must not mutate"


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ((("foo", "bar"),), True),
        ((("foo", "bat"),), False),
        ((("foo", ""),), True),
        ((("foo", "bar"), ("baz", "bat")), True),
        ((("foo", "bar"), ("nope", "")), False),
        ((("nope", ""),), False),
    ],
)
def test_tag_filter_table(tags: tuple[tuple[str, str], ...], expected: bool) -> None:
    assert matches(_doc(), name_prefix=None, state=None, tags=tags) is expected


def test_name_and_state_filters() -> None:
    assert matches(_doc(), name_prefix="al", state="COMPLETE", tags=())
    assert not matches(_doc(), name_prefix="x", state=None, tags=())
    assert not matches(_doc(), name_prefix=None, state="QUEUED", tags=())


def test_mount_plan(tmp_path: Path) -> None:
    doc = _task(
        inputs=[{"path": "/data/in/a", "content": ""}],
        outputs=[{"path": "/out/r.txt", "url": "file:///x"}],
        volumes=["/vol/A"],
    )
    mounts = plan_mounts(tmp_path, doc, frozenset({"usr", "etc"}))
    rw = [(m.container, m.host) for m in mounts if not m.read_only]
    assert rw == [(f"/{t}", tmp_path / t) for t in ("data", "out", "tmp", "vol")]
    assert [(m.container, m.read_only) for m in mounts][-1] == ("/data/in/a", True)
    with pytest.raises(StagingError, match="/usr"):
        plan_mounts(tmp_path, _task(inputs=[{"path": "/usr/x", "content": ""}]), frozenset({"usr"}))


def test_allowed_dirs(tmp_path: Path) -> None:
    allowed = AllowedDirs.of([tmp_path])
    assert allowed.local_problem((tmp_path / "x").as_uri()) is None
    assert allowed.local_problem("s3://b/k") is None
    assert "outside" in (allowed.local_problem("file:///etc/shadow") or "")
    assert "outside" in (allowed.local_problem(f"{tmp_path}/../../etc/passwd") or "")
    assert str(tmp_path.resolve().as_uri()) in (allowed.local_problem("/etc/passwd") or "")


def _imported_modules(path: Path, package: str) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            name = ".".join(base + ([node.module] if node.module else [])) if node.level else ""
            yield name or str(node.module)


def test_the_server_never_imports_the_package_root() -> None:
    # `from .. import x` would run the public door's lazy loader (the engine and more).
    server = Path(tesengine.server.__file__).parent
    for path in server.rglob("*.py"):
        rel = path.relative_to(server.parent.parent).with_suffix("")
        package = ".".join(rel.parts[:-1] if rel.name != "__init__" else rel.parts)
        assert "tesengine" not in set(_imported_modules(path, package)), path
    code = "import sys, tesengine.server.app; print('tesengine.engine' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _drawn_tree() -> dict[str, str]:
    """``name -> parent`` as drawn in the docstring of :mod:`tesengine.errors`."""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = [(-1, "TesEngineError")]
    for line in (errors.__doc__ or "").splitlines():
        if "── " not in line:
            continue
        column = line.index("── ")
        name = line[column + 3 :].split()[0]
        while stack[-1][0] >= column:
            stack.pop()
        parents[name] = stack[-1][1]
        stack.append((column, name))
    return parents


def test_server_errors_are_drawn_in_the_one_tree() -> None:
    drawn = _drawn_tree()
    server = [
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, (errors.ServerError, errors.StoreUnavailable))
    ]
    assert len(server) >= 9
    for cls in server:
        assert cls.__module__ == "tesengine.errors"
        assert drawn.get(cls.__name__) == cls.__mro__[1].__name__, cls


ODD_VALUES: list[object] = [None, 0, -1, 2**40, 1.5, float("inf"), True, "", "x", "\x00", "\ud800"]
ODD_VALUES += [[], {}, ["x"], {"x": 1}, {"": ""}, "/a", "s3://b/k", "/a/*"]


def _mutate(node: Any, rng: random.Random) -> Any:
    """``node`` with one value somewhere in it replaced, added or dropped."""
    if isinstance(node, dict) and node and rng.random() < 0.7:
        key = rng.choice(sorted(node))
        return {**node, key: _mutate(node[key], rng)}
    if isinstance(node, list) and node and rng.random() < 0.7:
        i = rng.randrange(len(node))
        return [*node[:i], _mutate(node[i], rng), *node[i + 1 :]]
    if isinstance(node, dict) and rng.random() < 0.3:
        return {
            **node,
            rng.choice(["path", "url", "type", "bogus", "[key]"]): rng.choice(ODD_VALUES),
        }
    return rng.choice(ODD_VALUES)


def test_any_mutated_task_is_accepted_or_an_invalid_task_naming_a_place() -> None:
    rng = random.Random(16)
    base = _task(
        inputs=[{"path": "/in/a", "url": "s3://b/a"}, {"path": "/in/b", "content": "c"}],
        outputs=[{"path": "/out/*.txt", "path_prefix": "/out", "url": "s3://b/o"}],
        resources={"cpu_cores": 1, "ram_gb": 1.0, "backend_parameters": {"k": "v"}},
        volumes=["/vol"],
        tags={"t": "v"},
    )
    refused = 0
    for _ in range(400):
        body = _mutate(_mutate(base, rng), rng)
        try:
            validate_task(body)
        except InvalidTask as exc:  # anything else fails the test
            refused += 1
            message = str(exc)
        else:
            continue
        # Each problem starts with a field of the task, an unknown key it holds, or the body.
        names = {*task_request.TaskRequest.model_fields, "body", "document"}
        names |= set(body) if isinstance(body, dict) else set()
        for problem in message.split("; "):
            place, _sep, reason = problem.partition(": ")
            top = place if place in names else re.split(r"[.\[]", place, maxsplit=1)[0]
            assert reason and top in names, problem
    assert refused > 200


@pytest.mark.parametrize(
    ("path", "static"),
    [("/out/*.txt", "/out/"), ("/x/a?[bc]", "/x/a"), ("/x/[a]/*", "/x/"), ("/plain", "/plain")],
)
def test_before_wildcard(path: str, static: str) -> None:
    assert task_request.before_wildcard(path) == static
    assert task_request.has_wildcard(path) is (static != path)


def test_a_refused_url_is_named_by_its_field_and_scheme_never_echoed() -> None:
    body = _task(inputs=[{"path": "/d/x", "url": "ftp://u:hunter2@h/k?sig=abc"}])
    with pytest.raises(InvalidTask) as info:
        validate_task(body)
    message = str(info.value)
    assert message.startswith("inputs[0].url: unsupported URL scheme 'ftp' (use ")
    assert "hunter2" not in message and "sig=abc" not in message
