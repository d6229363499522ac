"""tesengine.blocking.Backend: many threads share one TesBackend on a real tesengine serve."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import textwrap
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tesengine import Executor, Task, TaskFailed, TesEngineError
from tesengine.blocking import Backend
from tests.fixtures.tes_server import ServedTes
from tests.support import REPO, file_config, user_env, wait_until


def listed(served: ServedTes) -> list[dict[str, object]]:
    """Every task on the server (MINIMAL view), straight from its API."""
    with urllib.request.urlopen(f"{served.api}/tasks?view=MINIMAL&page_size=2047") as reply:
        return list(json.load(reply).get("tasks", []))


def echo(name: str, **inputs: Path) -> Task:
    return Task(
        name=name,
        executors=[Executor("alpine", ["sh", "-c", f"echo {name}"])],
        inputs={f"/in/{k}": v for k, v in inputs.items()},
    )


@pytest.fixture
def slow_tes(serve_tes: Callable[..., ServedTes]) -> ServedTes:
    """A noop server whose executors take 30 s: tasks stay RUNNING until cancelled."""
    return serve_tes(runtime="noop", args=["--noop-delay", "30"])


@pytest.fixture
def backend_on(tmp_path: Path) -> Iterator[Callable[[ServedTes], Backend]]:
    made: list[Backend] = []

    def make(served: ServedTes) -> Backend:
        backend = Backend(file_config(served.url, served.storage_dir, tmp_path / "cache"))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def test_many_threads_share_one_backend_staging_and_polling(
    noop_tes: ServedTes, backend_on: Callable[[ServedTes], Backend], tmp_path: Path
) -> None:
    shared = tmp_path / "shared.txt"
    shared.write_text("the same input for every thread\n")
    backend = backend_on(noop_tes)
    results: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        futures = [backend.submit(echo(f"t{n}-{i}", x=shared)) for i in range(5)]
        for future in futures:
            result = future.result(timeout=120)
            with lock:
                results.append(result.id)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert len(results) == 40
    assert len(set(results)) == 40
    stats = backend.tes.stager.stats
    # 40 submissions of one file from 8 threads: one digest, one upload (single-flight).
    assert stats.files_uploaded == 1, stats
    assert stats.heads <= 1, stats
    assert backend.tes.polling == "batch"


def test_task_failure_is_raised_by_the_future(
    local_tes: ServedTes, backend_on: Callable[[ServedTes], Backend]
) -> None:
    backend = backend_on(local_tes)
    task = Task(
        name="fails",
        executors=[Executor("alpine", ["sh", "-c", "echo broken >&2; exit 3"])],
    )
    future = backend.submit(task)
    with pytest.raises(TaskFailed) as info:
        future.result(timeout=120)
    assert list(info.value.exit_codes) == [3]
    assert "broken" in info.value.stderr_tail


def test_outputs_are_read_through_call(
    local_tes: ServedTes, backend_on: Callable[[ServedTes], Backend]
) -> None:
    backend = backend_on(local_tes)
    task = Task(
        name="writes",
        executors=[Executor("alpine", ["sh", "-c", "echo 42 > /out/n.txt"])],
        outputs={"n": "/out/n.txt"},
    )
    result = backend.run(task, timeout=120)
    assert backend.call(result.outputs["n"].read_text) == "42\n"


def test_cancelling_the_future_cancels_the_remote_task(
    slow_tes: ServedTes, backend_on: Callable[[ServedTes], Backend]
) -> None:
    backend = backend_on(slow_tes)
    future = backend.submit(echo("slow"))
    wait_until(lambda: [t["state"] for t in listed(slow_tes)] == ["RUNNING"], what="RUNNING")
    assert backend.cancel(future)
    assert future.cancelled()
    wait_until(lambda: [t["state"] for t in listed(slow_tes)] == ["CANCELED"], what="CANCELED")


def test_a_cancel_during_creation_leaves_nothing_running(
    slow_tes: ServedTes, backend_on: Callable[[ServedTes], Backend]
) -> None:
    backend = backend_on(slow_tes)
    futures = [backend.submit(echo(f"racy{i}")) for i in range(5)]
    for future in futures:  # at once: most land before or during the POST
        future.cancel()
    wait_until(lambda: len(listed(slow_tes)) == 5, what="five tasks created")
    wait_until(lambda: {t["state"] for t in listed(slow_tes)} == {"CANCELED"}, what="all CANCELED")


def test_close_cancels_tasks_in_flight_and_refuses_new_work(
    slow_tes: ServedTes, backend_on: Callable[[ServedTes], Backend]
) -> None:
    backend = backend_on(slow_tes)
    futures = [backend.submit(echo(f"slow{i}")) for i in range(3)]
    wait_until(lambda: len(listed(slow_tes)) == 3, what="three tasks created")
    backend.close()
    assert {t["state"] for t in listed(slow_tes)} <= {"CANCELING", "CANCELED"}
    for future in futures:
        assert future.done()
        with pytest.raises((concurrent.futures.CancelledError, TaskFailed)):
            future.result(timeout=0)
    with pytest.raises(TesEngineError, match="closed"):
        backend.submit(echo("late"))
    backend.close()  # twice is fine


def test_embedded_backend_runs_without_configuration(tmp_path: Path) -> None:
    with Backend.embedded(tmp_path / "embedded", runtime="noop") as backend:
        assert backend.config.backend_name == "embedded"
        result = backend.run(echo("hi"), timeout=60)
    assert result.state.value == "COMPLETE"
    assert backend.closed


def test_a_bad_configuration_fails_in_the_constructor(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="config"):
        Backend()


EXIT_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from tesengine import Executor, Task
    from tesengine.blocking import Backend
    from tests.support import file_config

    url, storage, work, mode = sys.argv[1:5]
    work = Path(work)
    backend = Backend(file_config(url, Path(storage), work / "cache"))
    small = work / "small.txt"
    small.write_text("hi\\n")
    task = Task(name="t", executors=[Executor("alpine", ["true"])], inputs={"/in/x": small})
    print(backend.run(task, timeout=60).state.value, flush=True)
    if mode == "mid-staging":
        big = work / "big.bin"
        with big.open("wb") as f:
            f.write(os.urandom(1 << 20) * 64)
        backend.submit(Task(name="big", executors=[Executor("alpine", ["true"])],
                            inputs={"/in/big": big}))
        time.sleep(0.3)
    # no close(): the interpreter exits with the loop thread and sessions alive
    """
)


@pytest.mark.parametrize("mode", ["after-run", "mid-staging"])
def test_exit_without_close_is_clean(noop_tes: ServedTes, tmp_path: Path, mode: str) -> None:
    script = tmp_path / "exit.py"
    script.write_text(EXIT_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), noop_tes.url, str(noop_tes.storage_dir), str(tmp_path), mode],
        capture_output=True,
        text=True,
        timeout=120,
        env=user_env(),
        cwd=REPO,
        check=False,
    )
    # 134 would be the obstore runtime aborting during interpreter finalisation.
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "COMPLETE"
    for noise in ("Unclosed", "Task was destroyed", "Traceback", "never awaited"):
        assert noise not in proc.stderr, proc.stderr
