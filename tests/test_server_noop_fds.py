"""The noop runtime holds no descriptor per task: 200 in flight fit in 256 descriptors.

It runs no process, so its executors get no streams. It used to open
``/dev/null`` three times per running executor, and at ~6,600 tasks in flight
under ``ulimit -n 20000`` tasks failed SYSTEM_ERROR "Too many open files".
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tesengine.tes.client import TesClient
from tesengine.tes.models import Executor, State, TesTask
from tests.fixtures.tes_server import ServedTes, start_serve
from tests.support import await_until, stop_process

TASKS = 200
#: Far below 3 descriptors per task (600), with room for the server's own.
FD_LIMIT = 256
#: Each noop executor holds its task RUNNING this long: time to submit them all and look.
HOLD = 10.0
FINAL = {State.COMPLETE, State.EXECUTOR_ERROR, State.SYSTEM_ERROR, State.CANCELED}


def _open_fds(served: ServedTes) -> int:
    return len(os.listdir(f"/proc/{served.proc.pid}/fd"))


async def _wait_states(
    tes: TesClient, done: Callable[[Counter[State]], bool], timeout: float, what: str
) -> Counter[State]:
    """Poll the server's task states until ``done`` holds; fail showing the last ones."""
    seen: Counter[State] = Counter()

    async def check() -> bool:
        page = await tes.list_states(page_size=1000)
        seen.clear()
        seen.update(state for _, state in page.states)
        return done(seen)

    try:
        await await_until(check, timeout=timeout, what=what)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; server states: {dict(seen)}") from None
    return seen


def _all_running(seen: Counter[State]) -> bool:
    # on the old code tasks ended SYSTEM_ERROR "Too many open files" here: fail at once
    assert not seen.keys() & FINAL, f"a task ended while all {TASKS} should run: {dict(seen)}"
    return seen[State.RUNNING] == TASKS


async def test_noop_tasks_in_flight_hold_no_descriptors(tmp_path: Path) -> None:
    args = ["--noop-delay", str(HOLD), "--max-tasks", str(2 * TASKS)]
    served = start_serve(tmp_path, runtime="noop", args=args, max_fds=FD_LIMIT)
    try:
        # a small pool: the server's sockets must not be what fills its descriptors
        async with TesClient(served.api, max_concurrency=8) as tes:
            idle = _open_fds(served)
            task = TesTask(executors=[Executor(image="alpine", command=["true"])])
            await asyncio.gather(*(tes.create_task(task) for _ in range(TASKS)))
            await _wait_states(tes, _all_running, HOLD, f"{TASKS} tasks RUNNING")
            in_flight = _open_fds(served)
            assert in_flight < idle + 20, f"{in_flight} fds with {TASKS} running, {idle} idle"

            def all_final(seen: Counter[State]) -> bool:
                return sum(seen[state] for state in FINAL) == TASKS

            seen = await _wait_states(tes, all_final, HOLD + 30, f"{TASKS} tasks final")
    finally:
        stop_process(served.proc)
    assert seen == Counter({State.COMPLETE: TASKS}), served.log()[-2000:]
