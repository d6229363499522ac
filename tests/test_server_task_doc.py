"""The server's task-document TypedDicts hold to the TES spec and to the documents it stores."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

import pytest

from tesengine.server.lifecycle import new_task_doc
from tesengine.server.task_doc import (
    ExecutorDoc,
    ExecutorLogDoc,
    FileTypeName,
    InputDoc,
    OutputDoc,
    OutputFileLogDoc,
    ResourcesDoc,
    StateName,
    TaskDoc,
    TaskLogDoc,
    TaskRequestDoc,
)
from tesengine.server.task_request import validate_task
from tesengine.server.views import basic_view
from tesengine.tes import models as wire
from tests.fixtures.tes_spec import TesSpec

DOCS_AND_SCHEMAS: list[tuple[Any, str]] = [
    (TaskDoc, "tesTask"),
    (ExecutorDoc, "tesExecutor"),
    (InputDoc, "tesInput"),
    (OutputDoc, "tesOutput"),
    (ResourcesDoc, "tesResources"),
    (TaskLogDoc, "tesTaskLog"),
    (ExecutorLogDoc, "tesExecutorLog"),
    (OutputFileLogDoc, "tesOutputFileLog"),
]


def _keys(doc_type: Any) -> frozenset[str]:
    return frozenset(doc_type.__required_keys__ | doc_type.__optional_keys__)


@pytest.mark.parametrize(("doc_type", "schema"), DOCS_AND_SCHEMAS)
def test_each_doc_has_the_spec_fields_and_requires_what_it_requires(
    doc_type: Any, schema: str, tes_spec: TesSpec
) -> None:
    node = tes_spec.document["components"]["schemas"][schema]
    assert _keys(doc_type) == set(node["properties"])
    # The server always sets a task's id and state; any other key it requires, the spec does.
    server_set = {"id", "state"} if doc_type is TaskDoc else set()
    assert doc_type.__required_keys__ == set(node.get("required", ())) | server_set


def test_the_request_doc_is_the_task_without_what_the_server_sets() -> None:
    assert _keys(TaskRequestDoc) == _keys(TaskDoc) - wire.READ_ONLY_TASK_FIELDS
    assert TaskRequestDoc.__required_keys__ == {"executors"}


def test_state_and_file_type_names_are_the_wire_enums() -> None:
    assert set(get_args(StateName)) == {s.value for s in wire.State}
    assert set(get_args(FileTypeName)) == {t.value for t in wire.FileType}


def _check(doc: Mapping[str, object], doc_type: Any, where: str) -> None:
    assert doc.keys() <= _keys(doc_type), f"{where}: undeclared {doc.keys() - _keys(doc_type)}"
    assert doc_type.__required_keys__ <= doc.keys(), f"{where}: a required key is missing"


def test_a_stored_task_and_its_basic_view_are_what_the_types_declare() -> None:
    body = {
        "name": "n",
        "executors": [{"image": "alpine", "command": ["true"], "env": {"A": "1"}}],
        "inputs": [{"path": "/in/a", "content": "x"}, {"path": "/in/b", "url": "/data/b"}],
        "outputs": [{"path": "/out/*.txt", "path_prefix": "/out", "url": "/data/o"}],
        "resources": {"cpu_cores": 2, "backend_parameters": {"unknown": "1"}},
        "volumes": ["/vol"],
        "tags": {"k": "v"},
    }
    doc: Any = new_task_doc(validate_task(body))
    doc["logs"][0]["logs"].append({"exit_code": 0, "stdout": "out", "stderr": "err"})
    doc["logs"][0]["outputs"].append({"url": "/data/o/a.txt", "path": "/out/a", "size_bytes": "1"})
    for view in (doc, basic_view(doc)):
        _check(view, TaskDoc, "task")
        _check(view["resources"], ResourcesDoc, "resources")
        for i, executor in enumerate(view["executors"]):
            _check(executor, ExecutorDoc, f"executors[{i}]")
        for i, item in enumerate(view["inputs"]):
            _check(item, InputDoc, f"inputs[{i}]")
        for i, output in enumerate(view["outputs"]):
            _check(output, OutputDoc, f"outputs[{i}]")
        for log in view["logs"]:
            _check(log, TaskLogDoc, "logs[0]")
            _check(log["logs"][0], ExecutorLogDoc, "logs[0].logs[0]")
            _check(log["outputs"][0], OutputFileLogDoc, "logs[0].outputs[0]")
    basic = basic_view(doc)
    assert "content" not in basic["inputs"][0] and "system_logs" not in basic["logs"][0]
    assert basic["logs"][0]["logs"][0] == {"exit_code": 0}
    assert doc["inputs"][0]["content"] == "x"  # the stored document is not changed
