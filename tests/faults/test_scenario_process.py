"""Scenarios 5-7: the TES server restarts, the engine's process dies, the user hits Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tesengine import Executor, Task, TaskFailed, TesBackend
from tests.faults.conftest import make_config
from tests.faults.procs import (
    PYTHON,
    clean_env,
    server_states,
    task_state,
    write_sprocket_toml,
)
from tests.fixtures.proxy import FaultProxy
from tests.fixtures.tes_server import ServedTes, start_serve
from tests.support import stop_process, wait_until

Proxy = Callable[[str], Awaitable[FaultProxy]]
FINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}


def _task(name: str) -> Task:
    return Task(name, [Executor("alpine", ["sleep", "1"])])


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
async def test_server_restart_mid_run(
    tmp_path: Path, fault_proxy: Proxy, fast_retries: None, how: str
) -> None:
    """Scenario 5: running tasks end SYSTEM_ERROR (or run again), queued ones run; no hang."""
    base = tmp_path / "srv"
    args = ["--noop-delay", "3", "--max-tasks", "2"]
    served = start_serve(base, args=args)
    proxy = await fault_proxy(served.url)
    config = make_config(f"{proxy.url}/ga4gh/tes/v1", served.storage_dir, tmp_path / "c")
    try:
        async with TesBackend(config) as backend:
            runs = [await backend.submit(_task(f"r{i}")) for i in range(4)]
            await asyncio.to_thread(
                wait_until, lambda: server_states(served)["RUNNING"] == 2, what="2 RUNNING"
            )
            if how == "SIGTERM":
                await asyncio.to_thread(stop_process, served.proc)
            else:
                served.proc.kill()
                await asyncio.to_thread(served.proc.wait)
            # the proxy answers 502 while the server is down: the engine keeps polling
            port = served.url.rsplit(":", 1)[1]
            served = await asyncio.to_thread(start_serve, base, args=[*args, "--port", port])
            outcomes = await asyncio.wait_for(
                asyncio.gather(*runs, return_exceptions=True), timeout=60
            )
    finally:
        stop_process(served.proc)
    states = []
    for outcome in outcomes:
        if isinstance(outcome, TaskFailed):
            assert outcome.state == "SYSTEM_ERROR"
            assert "shut down" in str(outcome) or "restarted" in str(outcome)
            states.append(outcome.state)
        else:
            assert not isinstance(outcome, BaseException), outcome
            states.append(outcome.state.value)
    assert set(states) <= {"COMPLETE", "SYSTEM_ERROR"}
    assert states[2:] == ["COMPLETE", "COMPLETE"]  # queued at the restart: run afterwards
    if how == "SIGTERM":  # a clean stop ends the running tasks and says so
        assert states[:2] == ["SYSTEM_ERROR", "SYSTEM_ERROR"]


SUBMIT = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from tesengine import Executor, Task, TesBackend

    async def main():
        backend = TesBackend.from_file(sys.argv[1])
        runs = [await backend.submit(Task(f"k{i}", [Executor("alpine", ["true"])]))
                for i in range(int(sys.argv[3]))]
        with open(sys.argv[2] + ".tmp", "w") as fh:
            json.dump([run.id for run in runs], fh)
        os.replace(sys.argv[2] + ".tmp", sys.argv[2])
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)

ATTACH = textwrap.dedent(
    """
    import asyncio, json, sys
    from tesengine import TesBackend

    async def main():
        async with TesBackend.from_file(sys.argv[1]) as backend:
            ids = json.load(open(sys.argv[2]))
            runs = [await backend.attach(task_id) for task_id in ids]
            results = await asyncio.gather(*runs)
            print(json.dumps([[r.id, r.state.value] for r in results]))

    asyncio.run(main())
    """
)


def test_attach_after_the_submitting_process_was_killed(
    serve_tes: Callable[..., ServedTes], tmp_path: Path
) -> None:
    """Scenario 6: SIGKILL after submit; a new process attaches by id and resolves."""
    served = serve_tes(args=["--noop-delay", "2", "--max-tasks", "8"])
    config = write_sprocket_toml(tmp_path / "sprocket.toml", served.url, served.storage_dir)
    ids_file = tmp_path / "ids.json"
    env = clean_env(tmp_path)
    submitter = subprocess.Popen(
        [PYTHON, "-c", SUBMIT, str(config), str(ids_file), "5"], env=env, cwd=tmp_path
    )
    try:
        wait_until(lambda: ids_file.exists() or submitter.poll() is not None, what="task ids")
        assert submitter.poll() is None, "the submitting process ended early"
        submitter.kill()
        assert submitter.wait(timeout=10) == -signal.SIGKILL
    finally:
        stop_process(submitter)  # type: ignore[arg-type]
    ids = json.loads(ids_file.read_text())
    assert len(set(ids)) == 5
    assert any(task_state(served, i) not in FINAL for i in ids)  # still in flight when killed
    attached = subprocess.run(
        [PYTHON, "-c", ATTACH, str(config), str(ids_file)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert attached.returncode == 0, attached.stderr
    assert json.loads(attached.stdout) == [[i, "COMPLETE"] for i in ids]
    assert sum(server_states(served).values()) == 5  # nothing submitted again


def test_ctrl_c_cancels_every_running_task(
    serve_tes: Callable[..., ServedTes], tmp_path: Path
) -> None:
    """Scenario 7: SIGINT on ``tesengine run`` with 20 running tasks: 20 CANCELED, exit 130."""
    served = serve_tes(args=["--noop-delay", "60", "--max-tasks", "32"])
    config = write_sprocket_toml(tmp_path / "sprocket.toml", served.url, served.storage_dir)
    tasks = tmp_path / "tasks.toml"
    tasks.write_text(
        "".join(f'[[tasks]]\nname = "s{i}"\ncommand = ["sleep", "60"]\n\n' for i in range(20))
    )
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [PYTHON, "-m", "tesengine", "run", "--config", str(config), "--file", str(tasks)],
            env=clean_env(tmp_path),
            cwd=tmp_path,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        wait_until(lambda: server_states(served)["RUNNING"] == 20, what="20 RUNNING")
        proc.send_signal(signal.SIGINT)
        status = proc.wait(timeout=30)
    finally:
        stop_process(proc)  # type: ignore[arg-type]
    assert status == 130, err.read_text()
    assert "Traceback" not in err.read_text()
    wait_until(lambda: server_states(served)["CANCELED"] == 20, timeout=30, what="20 CANCELED")
    assert server_states(served) == {"CANCELED": 20}
