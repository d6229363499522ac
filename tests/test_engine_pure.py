"""The engine's pure parts: validation, request building, result interpretation."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tesengine.engine.outputs import RemoteDirectory, RemoteFile, safe_relpath
from tesengine.engine.request import (
    LOG_DIR,
    LOG_OUTPUT,
    PREFIX_TAG,
    build_task,
    layout,
    logs_url,
    output_prefix,
    output_targets,
)
from tesengine.engine.result import describe, executor_results, interpret, make_outputs
from tesengine.engine.spec import Executor, Resources, Task
from tesengine.engine.validate import validate
from tesengine.errors import InvalidTask, TaskFailed, TesEngineError
from tesengine.storage import join_url
from tesengine.tes import models as wire

SH = Executor(image="ubuntu:24.04", command=["sh", "-c", "true"])


def make(**kw: object) -> Task:
    return Task(**{"name": "count", "executors": [SH], **kw})  # type: ignore[arg-type]


def test_plan_sorts_inputs(tmp_path: Path) -> None:
    (tmp_path / "reads.txt").write_text("a\n")
    (tmp_path / "ref").mkdir()
    upstream = RemoteDirectory("s3://b/out/x/results")
    plan = validate(
        make(
            inputs={
                "/in/reads.txt": tmp_path / "reads.txt",
                "/in/ref": str(tmp_path / "ref"),
                "/in/db.txt": "s3://bucket/db.txt",
                "/in/up": upstream,
                "/in/n.txt": RemoteFile("gs://b/n.txt"),
            },
            outputs={"n": "/out/n.txt", "results": "/out/dir/"},
        )
    )
    assert [(i.container_path, i.directory) for i in plan.local] == [
        ("/in/reads.txt", False),
        ("/in/ref", True),
    ]
    assert [(i.url, i.directory) for i in plan.remote] == [
        ("s3://bucket/db.txt", False),
        ("s3://b/out/x/results", True),
        ("gs://b/n.txt", False),
    ]
    assert [(o.name, o.directory) for o in plan.outputs] == [("n", False), ("results", True)]


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        (make(name=""), "name must be a non-empty string"),
        (make(executors=[]), "executors: at least one executor"),
        (make(executors=[Executor(image="", command=["x"])]), r"executors\[0\]\.image"),
        (make(executors=[Executor(image="i", command="ls -l")]), r"executors\[0\]\.command"),
        (make(executors=[Executor(image="i", command=[])]), r"executors\[0\]\.command"),
        (
            make(executors=[Executor(image="i", command=["x"], workdir="rel")]),
            r"executors\[0\]\.workdir: container path must be absolute",
        ),
        (make(inputs={"in/x": "s3://b/x"}), r"inputs\['in/x'\]: container path must be absolute"),
        (make(inputs={"/in/x": "ftp://h/x"}), r"inputs\['/in/x'\]: unsupported URL scheme 'ftp'"),
        (
            make(inputs={"/in/x": "/definitely/not/here.txt"}),
            r"inputs\['/in/x'\]: local path does not exist: /definitely/not/here.txt",
        ),
        (
            make(inputs={"/in/x": "s3://b/1", "/in//x/": "s3://b/2"}),
            r"inputs\['/in//x/'\]: container path '/in/x' also used by inputs\['/in/x'\]",
        ),
        (make(outputs={"n": "out/n.txt"}), r"outputs\['n'\]: container path must be absolute"),
        (make(outputs={"../n": "/out/n"}), r"outputs\['../n'\]: output names use"),
        (make(outputs={"_logs": "/out/n"}), r"outputs\['_logs'\]: output names use"),
        (
            make(inputs={"/data/a": "s3://b/a"}, outputs={"a": "/data/a"}),
            r"outputs\['a'\]: container path '/data/a' also used by inputs\['/data/a'\]",
        ),
        (make(volumes=["tmp"]), r"volumes\[0\]: container path must be absolute"),
    ],
)
def test_validation_names_the_key(task: Task, expected: str) -> None:
    with pytest.raises(InvalidTask, match=expected):
        validate(task)


def test_fifo_input_rejected(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InvalidTask, match=r"inputs\['/in/p'\]: not a regular file or directory"):
        validate(make(inputs={"/in/p": fifo}))


def test_output_prefix_is_unique_and_keeps_query() -> None:
    now = datetime(2026, 11, 26, 3, 4, 5, tzinfo=UTC)
    a = output_prefix("az://c/outputs?sv=1&sig=abc", "my task/1", now)
    b = output_prefix("az://c/outputs?sv=1&sig=abc", "my task/1", now)
    assert a != b
    assert a.startswith("az://c/outputs/my-task-1-20261126T030405Z-")
    assert a.endswith("?sv=1&sig=abc")
    target = output_targets(validate(make(outputs={"n": "/o/n"})).outputs, a)[0]
    assert target.url.startswith(a.partition("?")[0] + "/n")
    assert target.url.endswith("?sv=1&sig=abc")


@pytest.mark.parametrize(
    "outputs_url",
    [
        "az://c/outputs?sv=1&sig=abc",
        "s3://b",
        "s3://b/deep/er/",
        "file:///tmp/out dir",
        "https://acct.blob.core.windows.net/c/o?sig=x",
        "https://host:8080/a%20b/o",
        "gs://g/o",
    ],
)
def test_layout_builds_the_urls_join_url_would(outputs_url: str) -> None:
    # Each URL is built once, without join_url's parse per call: the same URLs all the same.
    now = datetime(2026, 11, 26, 3, 4, 5, tzinfo=UTC)
    plan = validate(make(outputs={"n": "/o/n", "d.v-1": "/o/d/", "x..y": "/o/x"}))
    where = layout(outputs_url, plan.outputs, "my task/1", now)
    stamp = "my-task-1-20261126T030405Z-"
    assert where.prefix.partition("?")[0].rstrip("/").rpartition("/")[2].startswith(stamp)
    segment = where.prefix.partition("?")[0].rstrip("/").rpartition("/")[2]
    assert where.prefix == join_url(outputs_url, segment)
    assert where.logs_url == join_url(where.prefix, LOG_OUTPUT) == logs_url(where.prefix)
    assert where.targets == output_targets(plan.outputs, where.prefix)
    assert [t.url for t in where.targets] == [join_url(where.prefix, o.name) for o in plan.outputs]
    built = build_task(plan, {}, where, {"run": "r1"})
    assert built == build_task(plan, {}, where.prefix, {"run": "r1"})


def test_build_task_is_spec_shaped(tmp_path: Path) -> None:
    (tmp_path / "r.txt").write_text("x")
    task = make(
        inputs={"/in/r.txt": tmp_path / "r.txt", "/in/db": "s3://b/db/"},
        outputs={"n": "/out/n.txt", "d": "/out/d/"},
        resources=Resources(cpu_cores=2, ram_gb=1.5),
        executors=[SH, Executor(image="alpine", command=["ls"], env={"A": "1"})],
        tags={"project": "p"},
    )
    plan = validate(task)
    built = build_task(plan, {"/in/r.txt": "s3://b/in/file/abc"}, "s3://b/out/p1", {"run": "r1"})
    body = built.to_wire()
    assert body["name"] == "count"
    assert body["inputs"] == [
        {"url": "s3://b/in/file/abc", "path": "/in/r.txt", "type": "FILE"},
        {"url": "s3://b/db/", "path": "/in/db", "type": "DIRECTORY"},
    ]
    assert body["outputs"][:2] == [
        {"name": "n", "url": "s3://b/out/p1/n", "path": "/out/n.txt", "type": "FILE"},
        {"name": "d", "url": "s3://b/out/p1/d", "path": "/out/d", "type": "DIRECTORY"},
    ]
    assert body["outputs"][2]["path"] == LOG_DIR
    assert body["executors"][1]["stdout"] == f"{LOG_DIR}/1.stdout"
    assert body["executors"][1]["env"] == {"A": "1"}
    assert "ignore_error" not in body["executors"][0]
    assert body["resources"] == {"cpu_cores": 2, "ram_gb": 1.5}
    assert body["tags"] == {"project": "p", "run": "r1", PREFIX_TAG: "s3://b/out/p1"}
    assert LOG_DIR in body["volumes"]


def _full(
    state: str, *logs: tuple[int | None, str], syslogs: list[str] | None = None
) -> wire.TesTask:
    return wire.TesTask.model_validate(
        {
            "id": "t1",
            "state": state,
            "executors": [{"image": "i", "command": ["c"]}],
            "logs": [
                {
                    "logs": [{"exit_code": code, "stderr": err} for code, err in logs],
                    "outputs": [],
                    "system_logs": syslogs,
                    "start_time": "2026-01-01T00:00:00Z",
                    "end_time": "2026-01-01T00:00:09Z",
                }
            ],
        }
    )


def test_interpret_complete() -> None:
    targets = output_targets(
        validate(make(outputs={"n": "/o/n", "d": "/o/d/"})).outputs, "s3://b/p"
    )
    outputs = make_outputs(targets, None)
    result = interpret(_full("COMPLETE", (0, ""), (0, "")), "count", outputs, None)
    assert result.exit_codes == (0, 0)
    assert isinstance(result.outputs["n"], RemoteFile)
    assert isinstance(result.outputs["d"], RemoteDirectory)
    assert result.outputs["d"].url == "s3://b/p/d"
    assert result.end_time == "2026-01-01T00:00:09Z"
    assert result.file("n") is result.outputs["n"]
    assert result.directory("d") is result.outputs["d"]


def test_typed_outputs_name_the_output_on_a_wrong_kind_or_name() -> None:
    targets = output_targets(
        validate(make(outputs={"n": "/o/n", "d": "/o/d/"})).outputs, "s3://b/p"
    )
    result = interpret(_full("COMPLETE", (0, "")), "count", make_outputs(targets, None), None)
    with pytest.raises(TypeError, match=r"output 'd' is a directory: use result.directory\('d'\)"):
        result.file("d")
    with pytest.raises(TypeError, match=r"output 'n' is a file: use result.file\('n'\)"):
        result.directory("n")
    with pytest.raises(KeyError, match=r"task 'count' has no output 'm' \(declared: 'd', 'n'\)"):
        result.file("m")


def test_interpret_executor_error_one_line() -> None:
    task = _full("EXECUTOR_ERROR", (0, ""), (3, "warming up\ncat: /in/x: No such file\n\n"))
    with pytest.raises(TaskFailed) as info:
        interpret(task, "count", {}, None)
    failed = info.value
    assert str(failed) == (
        "task 'count' (id t1) EXECUTOR_ERROR: executor 1 exited 3: cat: /in/x: No such file"
    )
    assert failed.exit_codes == (0, 3)
    assert failed.stderr_tail.endswith("No such file")
    assert failed.state == "EXECUTOR_ERROR"


def test_interpret_system_error_and_cancel() -> None:
    with pytest.raises(TaskFailed, match=r"SYSTEM_ERROR: input /in/x: fetch failed$") as info:
        interpret(
            _full("SYSTEM_ERROR", syslogs=["boot", "input /in/x: fetch failed"]), "c", {}, None
        )
    assert info.value.system_logs == ("boot", "input /in/x: fetch failed")
    with pytest.raises(TaskFailed, match="CANCELED: the task was canceled"):
        interpret(_full("CANCELED"), "c", {}, None)


def test_executor_results_tolerate_missing_logs() -> None:
    bare = wire.TesTask.model_validate({"id": "x", "state": "COMPLETE", "executors": []})
    assert executor_results(bare) == ()
    assert describe(wire.State.SYSTEM_ERROR, (), ()) == (
        "the server reported a system error without details"
    )


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../x", "..", ""])
def test_safe_relpath_refuses_escapes(bad: str) -> None:
    with pytest.raises(TesEngineError, match="unsafe relative path"):
        safe_relpath(bad)


def test_safe_relpath_normalises() -> None:
    assert safe_relpath("a/./b//c") == "a/b/c"
    assert RemoteDirectory("s3://b/d?sig=1").file("x/y").url == "s3://b/d/x/y?sig=1"


async def test_unbound_output_says_how_to_read() -> None:
    with pytest.raises(TesEngineError, match="not bound to a backend"):
        await RemoteFile("s3://b/x").read_text()


def test_a_task_run_has_no_instance_dict_but_can_be_weakly_referenced() -> None:
    # 100,000 runs in flight: each one's attributes live in slots, not a dict.
    import weakref

    from tesengine.engine.run import Submission, TaskRun

    run = TaskRun(object(), "t", Submission("id1", "s3://b/p", (), "s3://b/p/_logs"), None)  # type: ignore[arg-type]
    assert not hasattr(run, "__dict__")
    assert weakref.ref(run)() is run
    assert (run.id, run.state, run.done()) == ("id1", wire.State.QUEUED, False)
