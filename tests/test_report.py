"""The run report: ``tesengine run --report`` and the embedder's :class:`RunRecorder`.

Real runs against ``tesengine serve`` (subprocess) or an in-process server;
the report is read back from the file a person would open.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tesengine import Executor, Task, TesBackend
from tesengine.report import (
    ReportError,
    RunRecorder,
    RunSnapshot,
    TaskRow,
    Transfers,
    render,
    request_counts,
)
from tesengine.server import LocalTesServer
from tests.faults.procs import PYTHON, clean_env, server_states, write_sprocket_toml
from tests.fixtures.tes_server import ServedTes
from tests.support import file_config, run_cli, stop_process, wait_until
from tests.support.report import report_data, tasks_by_name

FAILING = 'echo "first line"; echo "it broke: no such sample" >&2; exit 3'


def tesengine_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("run", *args, cwd=cwd, env=clean_env(cwd), timeout=240)


def test_report_of_a_failing_run_shows_every_outcome(local_tes: ServedTes, tmp_path: Path) -> None:
    config = write_sprocket_toml(tmp_path / "sprocket.toml", local_tes.url, local_tes.storage_dir)
    (tmp_path / "in.txt").write_text("hello\n")
    tasks = tmp_path / "tasks.toml"
    tasks.write_text(
        '[[tasks]]\nname = "ok"\ncommand = ["sh", "-c", "cat /in/x > /out/y"]\n'
        'inputs = { "/in/x" = "in.txt" }\noutputs = { y = "/out/y" }\n\n'
        f'[[tasks]]\nname = "bad"\ncommand = ["sh", "-c", \'{FAILING}\']\n'
        'outputs = { o = "/out/o" }\n\n'
        '[[tasks]]\nname = "after"\ncommand = ["cat", "/in/o"]\n'
        'inputs = { "/in/o" = { from = "bad.outputs.o" } }\n'
    )
    report = tmp_path / "run.html"
    result = tesengine_run(
        "--config", str(config), "-f", str(tasks), "--report", str(report), cwd=tmp_path
    )
    assert result.returncode == 1, result.stderr
    doc = report_data(report)
    assert doc["outcome"] == "failed"
    assert doc["states"] == {"COMPLETE": 1, "EXECUTOR_ERROR": 1, "NOT_RUN": 1}
    rows = tasks_by_name(doc)
    assert rows["after"]["r"] == "not run: task 'bad' failed"
    bad, ok = rows["bad"], rows["ok"]
    assert bad["x"] == [3]
    assert bad["t"] == "it broke: no such sample"
    assert ok["o"][0][0] == "y" and ok["o"][0][1].endswith("/y")
    assert [state for state, _ in ok["e"]][-1] == "COMPLETE"
    times = [ok["g"], *(at for _, at in ok["e"])]
    assert times == sorted(times), "phases out of order"
    assert doc["transfers"]["uploaded"] == 6
    sent, retries = doc["requests"]  # the client's counters reach the CLI's report
    assert sent >= 4, doc["requests"]  # two creates, and each task read at least once
    assert retries == 0, doc["requests"]


def test_ctrl_c_still_writes_the_report(
    serve_tes: Callable[..., ServedTes], tmp_path: Path
) -> None:
    served = serve_tes(args=["--noop-delay", "60", "--max-tasks", "8"])
    config = write_sprocket_toml(tmp_path / "sprocket.toml", served.url, served.storage_dir)
    tasks = tmp_path / "tasks.toml"
    tasks.write_text("".join(f'[[tasks]]\nname = "s{i}"\ncommand = ["true"]\n\n' for i in range(5)))
    report = tmp_path / "run.html"
    err = tmp_path / "err.txt"
    argv = [PYTHON, "-m", "tesengine", "run", "--config", str(config), "-f", str(tasks)]
    with err.open("wb") as stderr:
        proc = subprocess.Popen(
            [*argv, "--report", str(report)],
            env=clean_env(tmp_path),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        # The client has seen every task running (its progress lines say so).
        wait_until(lambda: err.read_text().count(": RUNNING") == 5, what="5 RUNNING lines")
        assert not report.exists()
        proc.send_signal(signal.SIGINT)
        status = proc.wait(timeout=60)
    finally:
        stop_process(proc)  # type: ignore[arg-type]
    assert status == 130, err.read_text()
    doc = report_data(report)
    assert doc["outcome"] == "interrupted"
    assert sorted(row["n"] for row in doc["tasks"]) == [f"s{i}" for i in range(5)]
    for row in doc["tasks"]:
        assert row["s"] == "RUNNING" and row.get("u") == 1, row
    wait_until(lambda: server_states(served)["CANCELED"] == 5, what="5 CANCELED")


async def test_embedder_report_counts_uploads_and_dedup(tmp_path: Path) -> None:
    data = tmp_path / "sample.txt"
    data.write_bytes(b"x" * 1000)
    async with LocalTesServer(tmp_path / "srv", runtime="noop") as server:
        config = file_config(server.url, tmp_path / "srv" / "storage", tmp_path / "cache")
        report = tmp_path / "embedded.html"
        recorder = RunRecorder(report, title="my workflow", counts=lambda: (7, 1))
        async with recorder:
            for name in ("first", "second"):  # the second backend finds the input stored
                async with TesBackend(config, events=recorder, progress=recorder) as backend:
                    task = Task(name, [Executor("img", ["true"])], inputs={"/in/s.txt": data})
                    await (await backend.submit(task))
    doc = report_data(report)
    assert doc["title"] == "my workflow"
    assert doc["outcome"] == "completed"
    assert doc["states"] == {"COMPLETE": 2}
    assert doc["requests"] == [7, 1]
    transfers = doc["transfers"]
    assert (transfers["uploaded"], transfers["present"], transfers["dedup"]) == (1000, 1000, 0.5)
    assert (transfers["inputs"], transfers["reused"]) == (2, 1)
    assert "g" not in doc["tasks"][0]  # not told when staging began: no staging phase


async def test_report_is_written_when_the_embedder_fails(tmp_path: Path) -> None:
    async with LocalTesServer(tmp_path / "srv", runtime="noop") as server:
        config = file_config(server.url, tmp_path / "srv" / "storage", tmp_path / "cache")
        recorder = RunRecorder(tmp_path / "r.html")

        async def workflow() -> None:
            async with recorder, TesBackend(config, events=recorder) as backend:
                recorder.counts = request_counts(backend.client)
                await (await recorder.submit(backend, Task("t", [Executor("img", ["true"])])))
                raise RuntimeError("workflow bug")

        with pytest.raises(RuntimeError, match="workflow bug"):
            await workflow()
    doc = report_data(tmp_path / "r.html")
    assert doc["outcome"] == "failed"
    assert "workflow bug" in doc["error"]
    assert doc["requests"][0] >= 2 and doc["requests"][1] == 0  # create + FULL view at least
    assert doc["tasks"][0]["s"] == "COMPLETE" and "g" in doc["tasks"][0]


async def test_a_task_that_fails_before_submission_is_in_the_report(tmp_path: Path) -> None:
    async with LocalTesServer(tmp_path / "srv", runtime="noop") as server:
        config = file_config(server.url, tmp_path / "srv" / "storage", tmp_path / "cache")
        recorder = RunRecorder(tmp_path / "r.html")
        async with recorder, TesBackend(config, events=recorder) as backend:
            missing = {"/in/x": tmp_path / "no-such-file"}
            with pytest.raises(Exception, match="no-such-file"):
                await recorder.submit(backend, Task("t", [Executor("i", ["true"])], inputs=missing))
    row = report_data(tmp_path / "r.html")["tasks"][0]
    assert row["s"] == "NOT_SUBMITTED"
    assert "no-such-file" in row["r"]


def test_task_text_cannot_break_out_of_the_page() -> None:
    name = "</script><img src=x onerror=alert(1)>{{js}}<!--"
    row = TaskRow(name, "id", "EXECUTOR_ERROR", None, (("QUEUED", 0.0),), stderr_tail=name)
    page = render(RunSnapshot("t", "now", 1.0, "failed", (row,), Transfers()))
    assert "<img" not in page
    body = page.split('<script id="report-data" type="application/json">', 1)[1]
    assert body.index("</script>") > body.index("\\u003c/script\\u003e")


def test_ten_thousand_tasks_stay_under_five_megabytes() -> None:
    # Sizes as a real run has them: 32-hex ids, output URLs, failures' stderr tails.
    rows = tuple(
        TaskRow(
            f"sample-{i:05d}",
            f"{i:032x}",
            "EXECUTOR_ERROR" if i % 50 == 0 else "COMPLETE",
            i * 0.01,
            (("QUEUED", i * 0.01 + 0.5), ("RUNNING", i * 0.01 + 2), ("COMPLETE", i * 0.01 + 9)),
            exit_codes=(0,),
            outputs=(("out", f"s3://bucket/outputs/sample-{i:05d}-20260101T000000Z-abcd1234/out"),),
            stderr_tail="error: something went wrong\n" * 20 if i % 50 == 0 else "",
        )
        for i in range(10_000)
    )
    page = render(RunSnapshot("big", "now", 200.0, "failed", rows, Transfers()))
    assert len(page.encode()) < 5 * 1024 * 1024


def test_report_in_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    where = tmp_path / "no-such-dir" / "run.html"
    result = tesengine_run("--report", str(where), "--", "true", cwd=tmp_path)
    assert result.returncode == 2
    assert f"--report {where}: not a file in an existing directory" in result.stderr
    assert "Traceback" not in result.stderr


async def test_an_unwritable_report_keeps_the_runs_own_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = RunRecorder(tmp_path / "gone" / "r.html")  # its directory does not exist

    async def workflow() -> None:
        async with recorder:
            raise RuntimeError("the workflow's own failure")

    with pytest.raises(RuntimeError, match="own failure"):
        await workflow()
    assert "could not write the run report" in caplog.text
    with pytest.raises(ReportError, match="could not write the run report"):
        async with recorder:
            pass
    assert not list(tmp_path.iterdir())  # no partial file left behind
