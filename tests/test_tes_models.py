"""TES wire models: everything they send validates against the official spec,
and what real servers send (extra fields, nulls, camelCase, odd states) parses."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from pydantic import BaseModel

from tesengine.tes import (
    CancelTaskResponse,
    CreateTaskResponse,
    Executor,
    ExecutorLog,
    FileType,
    Input,
    ListTasksResponse,
    Organization,
    Output,
    OutputFileLog,
    Resources,
    ServiceInfo,
    ServiceType,
    State,
    TaskLog,
    TesTask,
    View,
)
from tests.fixtures.tes_spec import TesSpec

MODELS: dict[str, type[BaseModel]] = {
    "tesCancelTaskResponse": CancelTaskResponse,
    "tesCreateTaskResponse": CreateTaskResponse,
    "tesExecutor": Executor,
    "tesExecutorLog": ExecutorLog,
    "tesInput": Input,
    "tesListTasksResponse": ListTasksResponse,
    "tesOutput": Output,
    "tesOutputFileLog": OutputFileLog,
    "tesResources": Resources,
    "tesServiceInfo": ServiceInfo,
    "tesServiceType": ServiceType,
    "tesTask": TesTask,
    "tesTaskLog": TaskLog,
}
ENUMS: dict[str, Any] = {"tesState": State, "tesFileType": FileType}


def full_task() -> TesTask:
    """A task that sets every field a client may send."""
    return TesTask(
        name="align",
        description="every field",
        inputs=[
            Input(name="ref", description="d", url="s3://b/ref.fa", path="/in/ref.fa"),
            Input(path="/in/dir", url="gs://b/dir", type=FileType.DIRECTORY, streamable=True),
            Input(path="/in/literal.txt", content="hello\n"),
        ],
        outputs=[
            Output(name="bam", description="d", url="s3://b/out.bam", path="/out/out.bam"),
            Output(url="s3://b/logs/", path="/out/logs/*.log", path_prefix="/out/logs/"),
            Output(url="s3://b/d", path="/out/d", type=FileType.DIRECTORY),
        ],
        resources=Resources(
            cpu_cores=4,
            preemptible=True,
            ram_gb=8.5,
            disk_gb=40,
            zones=["us-west-1"],
            backend_parameters={"VmSize": "Standard_D64_v3"},
            backend_parameters_strict=False,
        ),
        executors=[
            Executor(
                image="ubuntu:20.04",
                command=["/bin/md5", "/in/ref.fa"],
                workdir="/out",
                stdin="/in/literal.txt",
                stdout="/out/stdout",
                stderr="/out/stderr",
                env={"A": "1"},
                ignore_error=True,
            )
        ],
        volumes=["/vol/A/"],
        tags={"WORKFLOW_ID": "cwl-01234", "empty": ""},
    )


def server_task() -> TesTask:
    """The task as a FULL view would return it, with logs."""
    return full_task().model_copy(
        update={
            "id": "job-1",
            "state": State.COMPLETE,
            "creation_time": "2020-10-02T10:00:00-05:00",
            "logs": [
                TaskLog(
                    logs=[ExecutorLog(exit_code=0, start_time="t0", end_time="t1", stdout="o")],
                    outputs=[
                        OutputFileLog(url="s3://b/out.bam", path="/out/out.bam", size_bytes="1024")
                    ],
                    metadata={"host": "worker-001"},
                    start_time="t0",
                    end_time="t1",
                    system_logs=["started"],
                )
            ],
        }
    )


def full_service_info() -> ServiceInfo:
    return ServiceInfo(
        id="org.example.tes",
        name="tes",
        type=ServiceType(group="org.ga4gh", artifact="tes", version="1.1.0"),
        description="d",
        organization=Organization(name="example", url="https://example.org"),
        contact_url="mailto:a@example.org",
        documentation_url="https://example.org/docs",
        created_at="2020-01-01T00:00:00Z",
        updated_at="2020-01-01T00:00:00Z",
        environment="test",
        version="1.0",
        storage=["file:///tmp", "s3://bucket"],
        tes_resources_backend_parameters=["VmSize"],
    )


def _no_nulls(value: Any) -> bool:
    if isinstance(value, dict):
        return all(v is not None and _no_nulls(v) for v in value.values())
    if isinstance(value, list):
        return all(v is not None and _no_nulls(v) for v in value)
    return True


# --- sending: what we serialise is what the spec says -------------------------------------


def test_create_task_body_with_every_field_validates(tes_spec: TesSpec) -> None:
    body = json.loads(full_task().request_json())
    tes_spec.validate("tesTask", body)
    assert body["inputs"][2] == {"path": "/in/literal.txt", "content": "hello\n"}
    assert body["outputs"][1]["path_prefix"] == "/out/logs/"
    assert body["resources"]["backend_parameters"] == {"VmSize": "Standard_D64_v3"}
    assert body["executors"][0]["ignore_error"] is True


def test_request_body_drops_server_fields() -> None:
    body = json.loads(server_task().request_json())
    assert not {"id", "state", "logs", "creation_time"} & body.keys()
    assert body["name"] == "align"


@pytest.mark.parametrize(
    ("schema", "model"),
    [
        ("tesTask", server_task()),
        ("tesTask", TesTask(executors=[Executor(image="alpine", command=["true"])])),
        ("tesListTasksResponse", ListTasksResponse(tasks=[server_task()], next_page_token="p2")),
        ("tesListTasksResponse", ListTasksResponse()),
        ("tesCreateTaskResponse", CreateTaskResponse(id="job-1")),
        ("tesCancelTaskResponse", CancelTaskResponse()),
        ("tesServiceInfo", full_service_info()),
        ("tesTaskLog", TaskLog()),
        ("tesExecutorLog", ExecutorLog(exit_code=3)),
        ("tesOutputFileLog", OutputFileLog(url="u", path="/p", size_bytes="0")),
        ("tesResources", Resources()),
        ("tesInput", Input(path="/in/a", url="file:///a")),
        ("tesOutput", Output(path="/out/a", url="file:///a")),
        ("tesExecutor", Executor(image="alpine", command=[])),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_serialised_models_validate(tes_spec: TesSpec, schema: str, model: Any) -> None:
    wire = model.to_wire()
    assert _no_nulls(wire)
    tes_spec.validate(schema, wire)
    assert json.loads(model.to_json()) == wire


def test_unset_fields_are_left_out_not_null() -> None:
    wire = TesTask(executors=[Executor(image="alpine", command=["true"])]).to_wire()
    assert wire == {"executors": [{"image": "alpine", "command": ["true"]}]}


def test_service_info_uses_the_wire_names() -> None:
    wire = full_service_info().to_wire()
    assert {"contactUrl", "documentationUrl", "createdAt", "updatedAt"} <= wire.keys()
    assert wire["tesResources_backend_parameters"] == ["VmSize"]
    assert ServiceInfo.model_validate(wire) == full_service_info()


def test_spec_rejects_a_broken_document(tes_spec: TesSpec) -> None:
    # The validator itself must be able to fail, or the tests above prove nothing.
    assert tes_spec.errors("tesTask", {"executors": [{"image": "x"}]})
    assert tes_spec.errors("tesOutputFileLog", {"url": "u", "path": "/p", "size_bytes": 3})
    assert tes_spec.errors("tesServiceInfo", {"id": "x"})


# --- coverage of the spec ------------------------------------------------------------------


def test_every_spec_schema_has_a_model(tes_spec: TesSpec) -> None:
    assert set(tes_spec.schema_names) == set(MODELS) | set(ENUMS)


def _spec_properties(tes_spec: TesSpec, schema: str) -> set[str]:
    node = tes_spec.document["components"]["schemas"][schema]
    parts = node.get("allOf", [node])
    names = {k for part in parts for k in part.get("properties", {})}
    if schema == "tesServiceInfo":  # the external GA4GH Service part (see the fixture)
        from tests.fixtures.tes_spec import SERVICE_INFO_STAND_IN

        names |= set(SERVICE_INFO_STAND_IN["components"]["schemas"]["Service"]["properties"])
    return names


@pytest.mark.parametrize("schema", sorted(MODELS))
def test_models_cover_every_spec_property(tes_spec: TesSpec, schema: str) -> None:
    model = MODELS[schema]
    wire_names = {f.serialization_alias or name for name, f in model.model_fields.items()}
    assert _spec_properties(tes_spec, schema) <= wire_names


@pytest.mark.parametrize(("schema", "enum"), sorted(ENUMS.items()))
def test_enums_match_the_spec(tes_spec: TesSpec, schema: str, enum: Any) -> None:
    assert {m.value for m in enum} == set(
        tes_spec.document["components"]["schemas"][schema]["enum"]
    )


def test_view_matches_the_spec(tes_spec: TesSpec) -> None:
    spec_views = tes_spec.document["components"]["parameters"]["view"]["schema"]["enum"]
    assert [v.value for v in View] == spec_views


def test_state_helpers() -> None:
    assert len(State) == 11
    final = {s for s in State if s.is_final}
    assert final == {
        State.COMPLETE,
        State.EXECUTOR_ERROR,
        State.SYSTEM_ERROR,
        State.CANCELED,
        State.PREEMPTED,
    }
    assert {s for s in State if s.is_failure} == {
        State.EXECUTOR_ERROR,
        State.SYSTEM_ERROR,
        State.CANCELED,
    }
    assert State.CANCELING.is_active and State.PAUSED.is_active
    assert State.parse("running") is State.RUNNING


# --- receiving: tolerant parsing -----------------------------------------------------------


def test_unknown_fields_are_kept_and_sent_back() -> None:
    raw = {
        "id": "t1",
        "state": "RUNNING",
        "executors": [{"image": "a", "command": ["b"], "x_gpu": "1"}],
        "funnel_extra": {"k": [1, 2]},
    }
    task = TesTask.model_validate(raw)
    assert task.model_extra == {"funnel_extra": {"k": [1, 2]}}
    assert task.executors[0].model_extra == {"x_gpu": "1"}
    assert task.to_wire() == raw


def test_minimal_view_parses() -> None:
    task = TesTask.model_validate_json(b'{"id": "t1", "state": "QUEUED"}')
    assert (task.id, task.state, task.executors, task.logs) == ("t1", State.QUEUED, [], None)


def test_missing_state_reads_unknown() -> None:
    task = TesTask.model_validate({"id": "t1"})
    assert task.state is None
    assert task.current_state is State.UNKNOWN


def test_nulls_from_servers_are_tolerated() -> None:
    task = TesTask.model_validate(
        {
            "id": "t1",
            "state": "SYSTEM_ERROR",
            "inputs": None,
            "logs": [
                {
                    "logs": [{"exit_code": None, "stdout": None}, None],
                    "outputs": None,
                    "system_logs": [None, "disk full", None],
                },
                None,
            ],
        }
    )
    assert task.logs is not None and len(task.logs) == 1
    log = task.logs[0]
    assert log.system_logs == ["disk full"]
    assert [e.exit_code for e in log.logs] == [None]
    assert log.outputs == []
    assert task.inputs is None


def test_unknown_state_becomes_unknown_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tesengine")
    states = [
        TesTask.model_validate({"id": str(i), "state": "HIBERNATING"}).state for i in range(3)
    ]
    assert states == [State.UNKNOWN] * 3
    warnings = [r for r in caplog.records if "HIBERNATING" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


def test_camel_case_keys_from_old_servers() -> None:
    raw = {
        "id": "t1",
        "state": "COMPLETE",
        "creationTime": "2020-10-02T10:00:00Z",
        "resources": {"cpuCores": 2, "ramGb": 1.5, "diskGb": 3, "backendParametersStrict": True},
        "executors": [{"image": "a", "command": ["b"], "ignoreError": True}],
        "outputs": [{"url": "s3://b/", "path": "/o/*", "pathPrefix": "/o/"}],
        "logs": [
            {
                "startTime": "t0",
                "endTime": "t1",
                "systemLogs": ["x"],
                "logs": [{"exitCode": 2, "startTime": "t0"}],
                "outputs": [{"url": "u", "path": "/p", "sizeBytes": "7"}],
            }
        ],
    }
    task = TesTask.model_validate(raw)
    assert task.creation_time == "2020-10-02T10:00:00Z"
    assert task.resources == Resources(
        cpu_cores=2, ram_gb=1.5, disk_gb=3, backend_parameters_strict=True
    )
    assert task.executors[0].ignore_error is True
    assert task.outputs is not None and task.outputs[0].path_prefix == "/o/"
    assert task.logs is not None
    assert task.logs[0].logs[0].exit_code == 2
    assert task.logs[0].system_logs == ["x"]
    assert task.logs[0].outputs[0].size == 7
    assert task.model_extra == {}
    page = ListTasksResponse.model_validate({"tasks": [], "nextPageToken": "abc"})
    assert page.next_page_token == "abc"


def test_size_bytes_as_number_is_kept_as_string(tes_spec: TesSpec) -> None:
    log = OutputFileLog.model_validate({"url": "u", "path": "/p", "size_bytes": 1024})
    assert log.size_bytes == "1024" and log.size == 1024
    tes_spec.validate("tesOutputFileLog", log.to_wire())


def test_file_type_is_case_insensitive_and_unknown_is_dropped() -> None:
    assert Input.model_validate({"path": "/a", "type": "directory"}).type is FileType.DIRECTORY
    assert Input.model_validate({"path": "/a", "type": "SOCKET"}).type is None


def test_service_info_from_a_sparse_server() -> None:
    info = ServiceInfo.model_validate({"name": "funnel", "storage": ["file:///x", None]})
    assert info.name == "funnel" and info.storage == ["file:///x"]
    assert info.tes_resources_backend_parameters is None


def test_the_wire_models_import_without_the_client() -> None:
    """The server imports tes.models: that must load neither the client nor aiohttp."""
    import subprocess
    import sys

    probe = (
        "import sys, tesengine.tes.models, tesengine.tes.query, tesengine.testing\n"
        "heavy = {'aiohttp', 'tesengine.tes.client', 'tesengine.config'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
        "from tesengine.tes import State, TesClient\n"
        "print(State.RUNNING.is_active, TesClient.__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines() == ["[]", "True TesClient"]


def test_the_lazy_package_exports_what_it_lists() -> None:
    import tesengine.tes as tes

    assert set(tes._EXPORTS) == set(tes.__all__)
    assert all(getattr(tes, name) is not None for name in tes.__all__)
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        _ = tes.Nope  # type: ignore[attr-defined]
