"""The engine's end-to-end scenarios against TESK, TES on Azure and Funnel, as faked.

Each test runs once per :data:`~tests.peers.quirk_profiles.PROFILES` entry
(the ``quirky`` fixture), over real HTTP on loopback, with ``file://``
storage that the fake reads inputs from and writes outputs to.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tesengine import Executor, Task, TaskFailed, TesBackend
from tesengine.tes import State, TesClient
from tests.peers.quirky_tes import QuirkyTes
from tests.support import await_until, file_config

pytestmark = pytest.mark.usefixtures("fast_retries")

SH = "debian:stable-slim"


def sh(script: str) -> Executor:
    return Executor(image=SH, command=["sh", "-c", script])


def backend(server: QuirkyTes, tmp_path: Path, **kw: Any) -> TesBackend:
    config = file_config(server.url, tmp_path / "storage", tmp_path / "cache", **kw)
    return TesBackend(config)


async def test_inputs_outputs_and_chaining(quirky: QuirkyTes, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_text("alpha\n")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "x.txt").write_text("x")
    async with backend(quirky, tmp_path) as engine:
        first = await engine.submit(
            Task(
                name="first",
                executors=[sh("cat /in/a.txt > /out/o.txt")],
                inputs={"/in/a.txt": source, "/in/tree": tree},
                outputs={"o": "/out/o.txt", "d": "/out/d/"},
            )
        )
        one = await first
        # a server that omits exit_code 0 (Funnel) still reports a clean exit
        assert one.exit_codes == (0,)
        assert await one.outputs["o"].read_bytes() == b"alpha\nfirst\n"
        second = await engine.submit(
            Task(
                name="second",
                executors=[sh("cat /in/prev.txt > /out/o.txt")],
                inputs={"/in/prev.txt": one.outputs["o"]},
                outputs={"o": "/out/o.txt"},
            )
        )
        two = await second
        assert await two.outputs["o"].read_bytes() == b"alpha\nfirst\nsecond\n"
    assert quirky.creates == 2  # throttled (429) or not, nothing was posted twice


async def test_failing_task_raises_with_exit_code(quirky: QuirkyTes, tmp_path: Path) -> None:
    async with backend(quirky, tmp_path) as engine:
        run = await engine.submit(Task(name="boom", executors=[sh("true"), sh("exit 3")]))
        with pytest.raises(TaskFailed) as info:
            await run
    failed = info.value
    assert failed.state == "EXECUTOR_ERROR"
    # the first executor ran to its end before the second one started: it exited 0
    assert failed.exit_codes == (0, 3)
    assert "executor 1 exited 3" in str(failed)
    if not quirky.profile.logs_as_urls:
        assert failed.stderr_tail == "exit 3"


async def test_cancel_running_task(quirky: QuirkyTes, tmp_path: Path) -> None:
    async with backend(quirky, tmp_path) as engine:
        run = await engine.submit(Task(name="sleepy", executors=[sh("sleep 600")]))
        await await_until(lambda: run.state is State.RUNNING, what="RUNNING")
        await run.cancel()
        with pytest.raises(TaskFailed, match="CANCELED"):
            await asyncio.wait_for(run, 30)


async def test_cancel_of_a_finished_task_is_quiet(quirky: QuirkyTes, tmp_path: Path) -> None:
    """Cancelling a task that ended meanwhile is not an error (Funnel answers 500)."""
    async with backend(quirky, tmp_path) as engine:
        result = await (await engine.submit(Task(name="quick", executors=[sh("true")])))
        async with TesClient(quirky.url) as client:
            await client.cancel_task(result.id)
            assert (await client.get_task(result.id)).current_state is State.COMPLETE


async def test_auto_polling_detects_tag_filters(quirky: QuirkyTes, tmp_path: Path) -> None:
    n = 20
    async with backend(quirky, tmp_path, polling="auto") as engine:
        runs = [await engine.submit(Task(name=f"t{i}", executors=[sh("true")])) for i in range(n)]
        results = await asyncio.gather(*runs)
        mode = engine.polling
    assert all(r.exit_codes == (0,) for r in results)
    assert quirky.creates == n
    minimal_gets = quirky.count("GET", r"/tasks/[^?]+\?view=MINIMAL")
    listings = quirky.count("GET", r"/tasks\?view=MINIMAL&tag_key=tesengine-run")
    if quirky.profile.honours_tags:
        assert mode == "batch"
        assert listings >= 1
        assert minimal_gets < n  # the listing answered the pollers
    else:
        assert mode == "per-task"
        assert listings <= 1  # the probe, then never again
        assert minimal_gets >= n  # every poller read its own task


async def test_listing_pages_follow_the_servers_tokens(quirky: QuirkyTes, tmp_path: Path) -> None:
    """iter_tasks walks every page whatever the token format and page rules."""
    async with backend(quirky, tmp_path) as engine:
        runs = [await engine.submit(Task(name=f"p{i}", executors=[sh("true")])) for i in range(5)]
        await asyncio.gather(*runs)
    async with TesClient(quirky.url) as client:
        seen = [t.id async for t in client.iter_tasks(page_size=2)]
        assert sorted(seen) == sorted(quirky.order)
        assert len(seen) == len(set(seen))
        task = await client.get_task(quirky.order[0])
        assert task.current_state is State.COMPLETE


async def test_the_fakes_are_quirky_on_the_wire(quirky: QuirkyTes, tmp_path: Path) -> None:
    """Guard the fakes themselves: each quirk the engine must tolerate is really served."""
    import aiohttp

    async with backend(quirky, tmp_path) as engine:
        result = await (await engine.submit(Task(name="w", executors=[sh("true")])))
    profile = quirky.profile
    base = quirky.url + profile.prefixes[-1]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/tasks/{result.id}?view=FULL") as resp:
            full = await resp.json(content_type=None)
        async with http.get(f"{base}/tasks?view=MINIMAL&tag_key=nobody&tag_value=x") as resp:
            listing = await resp.json(content_type=None)
        async with http.get(f"{quirky.url}/ga4gh/tes/v1/service-info") as resp:
            spec_path = resp.status
    executor_log = full["logs"][0]["logs"][0]
    if profile.name == "Funnel":
        assert "exit_code" not in executor_log  # protojson drops the zero
        assert listing == {}  # no "tasks" key at all
    else:
        assert executor_log["exit_code"] == 0
    if profile.name == "TES on Azure":
        assert spec_path == 404  # /v1 only
        assert executor_log["stdout"].startswith("https://")
        assert quirky.throttled > 0
    if profile.name == "TESK":
        assert [t["id"] for t in listing["tasks"]] == [result.id]  # the tag filter is ignored
        assert result.id.startswith("task-")
