"""A task's own files on a real ``tesengine serve`` (local runtime, real bubblewrap).

Stream files are truncated, inputs at directory paths are refused clearly,
unpublishable names and symbolic links in outputs get messages that name
the output and the file.
"""

from __future__ import annotations

import uuid

import pytest

from tests.fixtures.tes_server import ServedTes
from tests.security.support import post, run, sh, system_logs


def _dest(served: ServedTes) -> tuple[str, str]:
    """A fresh output URL in the server's storage, and its directory name."""
    name = f"out-{uuid.uuid4().hex}"
    return (served.storage_dir / name).as_uri(), name


def test_an_executor_stdout_file_that_exists_is_truncated(local_tes: ServedTes) -> None:
    url, name = _dest(local_tes)
    doc = run(
        local_tes,
        {
            "executors": [
                sh("echo PREVIOUS-CONTENT-LONGER > /out/o"),
                sh("echo new", stdout="/out/o"),
            ],
            "outputs": [{"path": "/out/o", "url": url}],
        },
    )
    assert doc["state"] == "COMPLETE", system_logs(doc)
    assert (local_tes.storage_dir / name).read_text() == "new\n"


def test_stdout_and_stderr_to_one_file_both_land(local_tes: ServedTes) -> None:
    url, name = _dest(local_tes)
    script = "echo out; echo err >&2; echo out2"
    executor = sh(script, stdout="/out/both", stderr="/out/both")
    doc = run(local_tes, {"executors": [executor], "outputs": [{"path": "/out/both", "url": url}]})
    assert doc["state"] == "COMPLETE", system_logs(doc)
    assert sorted((local_tes.storage_dir / name).read_text().split()) == ["err", "out", "out2"]


def test_a_content_input_at_the_task_tmp_directory_is_a_400(local_tes: ServedTes) -> None:
    task = {"executors": [sh("true")], "inputs": [{"path": "/tmp", "content": "x"}]}
    resp = post(local_tes, task)
    assert resp.status_code == 400, resp.text
    assert "inputs[0].path: /tmp is a directory" in resp.text


def test_a_content_input_at_another_path_parent_is_a_400(local_tes: ServedTes) -> None:
    task = {
        "executors": [sh("true", workdir="/data/work")],
        "inputs": [{"path": "/data", "content": "x"}],
    }
    resp = post(local_tes, task)
    assert resp.status_code == 400, resp.text
    assert "inputs[0].path: /data is a directory" in resp.text


def test_a_file_named_with_a_newline_in_a_directory_output(local_tes: ServedTes) -> None:
    url, name = _dest(local_tes)
    doc = run(
        local_tes,
        {
            "executors": [sh("echo ok > /out/d/good; echo bad > \"/out/d/a$(printf '\\nb')\"")],
            "outputs": [{"path": "/out/d", "url": url, "type": "DIRECTORY"}],
        },
    )
    logs = system_logs(doc)
    assert doc["state"] == "SYSTEM_ERROR"
    assert "outputs[0] (/out/d): cannot publish '/out/d/a\\nb'" in logs, logs
    assert "control character" in logs
    assert "ValueError" not in logs
    assert not (local_tes.storage_dir / name).exists()  # nothing half-published


def test_a_directory_output_that_links_to_a_directory_in_the_task(local_tes: ServedTes) -> None:
    url, name = _dest(local_tes)
    script = "mkdir -p /out/real && echo hi > /out/real/f && rmdir /out/d && ln -s real /out/d"
    doc = run(
        local_tes,
        {
            "executors": [sh(script)],
            "outputs": [{"path": "/out/d", "url": url, "type": "DIRECTORY"}],
        },
    )
    assert doc["state"] == "COMPLETE", system_logs(doc)
    assert (local_tes.storage_dir / name / "f").read_text() == "hi\n"


def test_an_absolute_link_inside_the_task_is_read_as_the_task_sees_it(
    local_tes: ServedTes,
) -> None:
    url, name = _dest(local_tes)
    doc = run(
        local_tes,
        {
            "executors": [sh("echo real > /out/real && ln -s /out/real /out/x")],
            "outputs": [{"path": "/out/x", "url": url}],
        },
    )
    assert doc["state"] == "COMPLETE", system_logs(doc)
    assert (local_tes.storage_dir / name).read_text() == "real\n"


def test_a_link_to_a_host_file_is_named_as_a_link_and_not_followed(local_tes: ServedTes) -> None:
    url, name = _dest(local_tes)
    doc = run(
        local_tes,
        {
            "executors": [sh("ln -s /etc/passwd /out/x")],
            "outputs": [{"path": "/out/x", "url": url}],
        },
    )
    logs = system_logs(doc)
    assert doc["state"] == "SYSTEM_ERROR"
    assert "/out/x is a symbolic link to /etc/passwd, which does not exist in the task" in logs
    assert not (local_tes.storage_dir / name).exists()


@pytest.mark.parametrize("target", ["/out/real", "../real"])
def test_links_inside_a_directory_output_are_named_when_it_looks_empty(
    local_tes: ServedTes, target: str
) -> None:
    url, name = _dest(local_tes)
    script = f"mkdir -p /out/real && echo hi > /out/real/f && ln -s {target} /out/d/real"
    doc = run(
        local_tes,
        {
            "executors": [sh(script)],
            "outputs": [{"path": "/out/d", "url": url, "type": "DIRECTORY"}],
        },
    )
    logs = system_logs(doc)
    assert doc["state"] == "COMPLETE", logs
    assert "holds no file, nothing was uploaded (/out/d/real is a symbolic link" in logs
    assert not (local_tes.storage_dir / name).exists()


def test_an_empty_directory_output_completes_uploading_nothing(local_tes: ServedTes) -> None:
    # Sprocket declares every task's work directory a DIRECTORY output; Funnel
    # completes a task that left it empty (a warning), and so does this server.
    url, name = _dest(local_tes)
    missing_url, missing = _dest(local_tes)
    doc = run(
        local_tes,
        {
            "executors": [sh("mkdir -p /out/d/empty/deeper")],
            "outputs": [{"name": "work", "path": "/out/d", "url": url, "type": "DIRECTORY"}],
        },
    )
    assert doc["state"] == "COMPLETE", system_logs(doc)
    assert "output 'work' (/out/d): the directory holds no file" in system_logs(doc)
    assert doc["logs"][-1]["outputs"] == []
    assert not (local_tes.storage_dir / name).exists()
    # a FILE output the task did not write still fails, naming it
    doc = run(
        local_tes,
        {"executors": [sh("true")], "outputs": [{"path": "/out/f", "url": missing_url}]},
    )
    assert doc["state"] == "SYSTEM_ERROR"
    assert "(/out/f): the task did not produce it" in system_logs(doc)
    assert not (local_tes.storage_dir / missing).exists()
