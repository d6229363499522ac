"""Schema-driven fuzzing of ``tesengine serve`` (noop) with schemathesis.

Not part of the default test run (the file name does not match ``test_*``);
run it with ``nox -s fuzz`` or ``pytest tests/fuzz_server.py``. Every
generated request must get an answer below 500, and every 200 must match the
spec's response schema (a MINIMAL task may lack ``executors``: the spec's
own view definition says so). ``FUZZ_EXAMPLES`` bounds examples per operation.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings

from tests.fixtures.tes_server import ServedTes
from tests.fixtures.tes_spec import SERVICE_INFO_STAND_IN, SERVICE_INFO_URI, TesSpec
from tests.support import tes_spec_path

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
RESPONSE_SCHEMAS = {
    ("GET", "/service-info"): "tesServiceInfo",
    ("GET", "/tasks"): "tesListTasksResponse",
    ("POST", "/tasks"): "tesCreateTaskResponse",
    ("GET", "/tasks/{id}"): "tesTask",
    ("POST", "/tasks/{id}:cancel"): "tesCancelTaskResponse",
}
MINIMAL_GAP = "'executors' is a required property"


def _offline_spec() -> dict[str, Any]:
    """The spec with its one external document (service-info) inlined."""
    raw = yaml.safe_load(tes_spec_path().read_text(encoding="utf-8"))
    # YAML reads the spec's example timestamps as datetimes; JSON has strings.
    doc = json.loads(json.dumps(raw, default=str))
    schemas = doc["components"]["schemas"]
    for name, schema in SERVICE_INFO_STAND_IN["components"]["schemas"].items():
        schemas[f"ServiceInfo{name}"] = _relink(copy.deepcopy(schema), "#/components/schemas/")
    return _relink(doc, f"{SERVICE_INFO_URI}#/components/schemas/")


def _relink(node: Any, prefix: str) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(prefix):
            node["$ref"] = "#/components/schemas/ServiceInfo" + ref.removeprefix(prefix)
        for value in node.values():
            _relink(value, prefix)
    elif isinstance(node, list):
        for value in node:
            _relink(value, prefix)
    return node


schema = schemathesis.openapi.from_dict(_offline_spec())


@pytest.fixture(scope="module")
def fuzz_base(noop_tes: ServedTes) -> str:
    return noop_tes.api


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any, fuzz_base: str, tes_spec: TesSpec) -> None:
    response = case.call(base_url=fuzz_base, timeout=10)
    assert response.status_code < 500, (case.method, case.formatted_path, response.text)
    body = response.json()
    if response.status_code != 200:
        assert isinstance(body.get("error"), str), body
        return
    name = RESPONSE_SCHEMAS[(case.method.upper(), case.path)]
    problems = tes_spec.errors(name, body)
    if case.method.upper() == "GET" and (case.query or {}).get("view", "MINIMAL") == "MINIMAL":
        problems = [p for p in problems if not p.endswith(MINIMAL_GAP)]
    assert not problems, (case.method, case.formatted_path, problems)
