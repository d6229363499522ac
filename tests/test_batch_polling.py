"""Coalesced status polling, counted at the server.

Every test runs ``tesengine serve`` (noop runtime, in process) behind a small
recording proxy on loopback: real HTTP both ways. The proxy can also ignore
tag filters (as some servers do), hide tasks from listings, or shrink pages.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tesengine import Executor, Task
from tesengine.engine.batch import BatchStatus
from tesengine.engine.request import RUN_TAG
from tesengine.tes import State, TesClient
from tesengine.tes import models as wire
from tests.fixtures.listing_proxy import rig


def task(name: str) -> Task:
    return Task(
        name=name,
        executors=[Executor(image="alpine", command=["true"])],
        outputs={"out": "/out/x"},
    )


@dataclass
class States:
    """An EngineEvents hook recording the states each task went through."""

    by_task: dict[str, list[State]] = field(default_factory=dict)

    def task_submitted(self, run: Any) -> None:
        pass

    def task_state(self, run: Any, state: State) -> None:
        self.by_task.setdefault(run.name, []).append(state)

    def input_staged(self, result: Any) -> None:
        pass


async def test_states_propagate_and_completions_resolve_from_listings(tmp_path: Path) -> None:
    async with rig(tmp_path, delay=0.3) as r:
        states = States()
        async with r.backend(states) as backend:
            runs = [await backend.submit(task(f"t{i}")) for i in range(20)]
            results = await asyncio.gather(*runs)
            assert backend.polling == "batch"
        assert all(result.state is State.COMPLETE for result in results)
        assert all(State.RUNNING in seen for seen in states.by_task.values())
        assert all(seen[-1] is State.COMPLETE for seen in states.by_task.values())
        assert len(states.by_task) == 20
        assert r.proxy.gets("MINIMAL") == []  # no poller read a state on its own
        # FULL views of COMPLETE tasks come from listings; one GET checked the first
        assert len(r.proxy.gets("FULL")) == 1
        assert all(result.exit_codes == (0,) and result.end_time for result in results)
        probe, sample, *walks = r.proxy.lists()
        assert probe.arg("tag_value") != backend.run_tag  # a random tag: must list nothing
        assert (sample.arg("view"), sample.arg("tag_value")) == ("BASIC", backend.run_tag)
        assert walks and all(s.arg("tag_value") == backend.run_tag for s in walks)
        minimal = [s for s in walks if s.arg("view") == "MINIMAL"]
        finals = [s for s in walks if s.arg("view") == "FULL"]
        assert minimal and all(s.arg("page_size") == "2047" for s in minimal)
        assert finals and len(finals) < 20  # fewer listings than the GETs they replace
        assert all((s.arg("state"), s.arg("page_size")) == ("COMPLETE", "256") for s in finals)
        assert len(minimal) + len(finals) == len(walks)
        assert not backend._status.refreshing  # type: ignore[attr-defined]
        assert not backend._status._finals  # type: ignore[attr-defined]  # every view taken


async def test_listing_cost_is_pages_not_tasks(tmp_path: Path) -> None:
    """3,000 tasks in flight: each interval costs two list pages and no GETs."""
    async with rig(tmp_path, delay=3600) as r:
        async with r.backend(on_close="leave", max_concurrency=64) as backend:
            tag = backend.run_tag
            await asyncio.gather(*(backend.submit(task(f"n{i}")) for i in range(3000)))
            settled = len(r.proxy.seen)

            def starts() -> list[int]:
                return [
                    i
                    for i, s in enumerate(r.proxy.seen)
                    if i >= settled
                    and s.arg("tag_value") == tag
                    and s.arg("view") == "MINIMAL"
                    and not s.arg("page_token")
                ]

            await r.proxy.until(lambda: len(starts()) >= 7)
            first, last = starts()[1], starts()[6]  # five whole walks, all in flight
            window = r.proxy.seen[first:last]
            assert backend.polling == "batch"
        assert len(window) == 10, [(s.method, s.path, s.query) for s in window]
        assert all(s.is_list and s.arg("tag_value") == tag for s in window)
        assert sum(1 for s in window if s.arg("page_token")) == 5
        assert r.proxy.gets("MINIMAL") == []


async def test_server_ignoring_tag_filters_falls_back_to_per_task(tmp_path: Path) -> None:
    async with rig(tmp_path, delay=0.1, strip_tags=True) as r:
        async with r.backend() as backend:
            runs = [await backend.submit(task(f"t{i}")) for i in range(5)]
            results = await asyncio.gather(*runs)
            assert backend.polling == "per-task"
        assert all(result.state is State.COMPLETE for result in results)
        assert len(r.proxy.lists()) == 1  # only the probe with a random tag
        assert r.proxy.lists()[0].arg("tag_value") != backend.run_tag
        assert {s.task_id for s in r.proxy.gets("MINIMAL")} == {run.id for run in runs}


@pytest.mark.parametrize(
    "unlike",
    [{"full_listed_as": "MINIMAL"}, {"listed_stdout": "listed"}, {"full_listed_as": "BASIC"}],
)
async def test_server_listing_less_than_full_views_costs_gets_not_results(
    tmp_path: Path, unlike: dict[str, str]
) -> None:
    (tmp_path / "full").mkdir()
    async with rig(tmp_path / "full", delay=0.05) as r, r.backend() as backend:
        runs = [await backend.submit(task(f"t{i}")) for i in range(6)]
        expected = await asyncio.gather(*runs)
    async with rig(tmp_path, delay=0.05, **unlike) as r:
        async with r.backend() as backend:
            runs = [await backend.submit(task(f"t{i}")) for i in range(6)]
            results = await asyncio.gather(*runs)
            assert backend.polling == "batch"
        if unlike != {"full_listed_as": "BASIC"}:  # noop tasks' BASIC views equal their FULL
            assert len(r.proxy.gets("FULL")) == 6  # every FULL view was read by its own GET
    for got, want in zip(results, expected, strict=True):
        assert (got.state, got.exit_codes) == (want.state, want.exit_codes)
        assert got.exit_codes == (0,)
        tails = [(e.stdout, e.stderr) for e in got.executors]
        assert tails == [(e.stdout, e.stderr) for e in want.executors]


async def test_server_refusing_listing_falls_back_to_per_task(tmp_path: Path) -> None:
    async with rig(tmp_path, delay=0.05, list_status=501) as r:
        async with r.backend() as backend:
            result = await (await backend.submit(task("t")))
            assert backend.polling == "per-task"
        assert result.state is State.COMPLETE
        assert len(r.proxy.gets("MINIMAL")) >= 1


async def test_task_missing_from_listing_is_read_alone(tmp_path: Path) -> None:
    async with rig(tmp_path, delay=0.2) as r:
        async with r.backend() as backend:
            runs = [await backend.submit(task(f"t{i}")) for i in range(5)]
            r.proxy.hidden.add(runs[2].id)
            results = await asyncio.gather(*runs)
            assert backend.polling == "batch"
        assert all(result.state is State.COMPLETE for result in results)
        minimal = r.proxy.gets("MINIMAL")
        assert minimal and {s.task_id for s in minimal} == {runs[2].id}
        assert len(r.proxy.lists(backend.run_tag)) >= 2


async def test_attach_lists_the_earlier_run_tag(tmp_path: Path) -> None:
    async with rig(tmp_path, delay=0.5) as r:
        async with r.backend(on_close="leave") as first:
            old = await first.submit(task("old"))
        old_tag = first.run_tag
        async with r.backend() as second:
            start = len(r.proxy.seen)
            attached = await second.attach(old.id)
            fresh = await second.submit(task("fresh"))
            results = await asyncio.gather(attached, fresh)
        assert [res.state for res in results] == [State.COMPLETE, State.COMPLETE]
        assert results[0].outputs["out"].url.startswith(old.prefix)
        later = r.proxy.seen[start:]
        assert any(s.is_list and s.arg("tag_value") == old_tag for s in later)
        assert any(s.is_list and s.arg("tag_value") == second.run_tag for s in later)
        assert r.proxy.gets("MINIMAL") == []


async def test_walk_stops_once_every_waiting_task_was_seen(tmp_path: Path) -> None:
    async with rig(tmp_path, delay=0.2, page_size=5) as r:
        async with r.backend() as backend:
            await asyncio.gather(*[await backend.submit(task(f"a{i}")) for i in range(10)])
            walked = len(r.proxy.lists(backend.run_tag))
            late = [await backend.submit(task(f"b{i}")) for i in range(2)]
            await asyncio.gather(*late)
        first = r.proxy.lists(backend.run_tag)[:walked]
        second = r.proxy.lists(backend.run_tag)[walked:]
        assert any(s.arg("page_token") for s in first)  # 10 in flight: two pages of 5
        assert second and not any(s.arg("page_token") for s in second)  # newest first: 1 page
        assert not any(r.proxy.gets("MINIMAL", run.id) for run in late)


async def test_walk_through_old_history_costs_no_more_than_gets(tmp_path: Path) -> None:
    """An attached task listed behind many others: one page, then its own GET."""
    async with rig(tmp_path, delay=0.6, page_size=5) as r:
        async with r.backend(on_close="leave") as first:
            target = await first.submit(task("oldest"))  # listed last: newest first
            for i in range(15):
                await first.submit(task(f"o{i}"))
        async with r.backend() as second:
            start = len(r.proxy.seen)
            result = await (await second.attach(target.id))
        assert result.state is State.COMPLETE
        later = r.proxy.seen[start:]
        walks = [s for s in later if s.is_list and s.arg("tag_value") == first.run_tag]
        assert walks and not any(s.arg("page_token") for s in walks)
        # Only the attaching backend's reads count: the first one's own walks may
        # fall back to a GET for a task its capped walk did not reach.
        minimal_gets = {s.task_id for s in later if s.task_id and s.arg("view") == "MINIMAL"}
        assert minimal_gets == {target.id}


async def test_batch_mode_skips_the_probe(tmp_path: Path) -> None:
    async with rig(tmp_path, delay=0.05) as r:
        async with r.backend(polling="batch") as backend:
            assert backend.polling == "batch"
            result = await (await backend.submit(task("t")))
        assert result.state is State.COMPLETE
        assert {s.arg("tag_value") for s in r.proxy.lists()} == {backend.run_tag}
        assert "BASIC" not in {s.arg("view") for s in r.proxy.lists()}  # no sample listed


async def test_per_task_mode_does_one_get_per_poll(tmp_path: Path) -> None:
    async with rig(tmp_path, delay=0.1) as r:
        async with r.backend(polling="per-task") as backend:
            runs = [await backend.submit(task(f"t{i}")) for i in range(5)]
            await asyncio.gather(*runs)
            assert backend.polling == "per-task"
        assert r.proxy.lists() == []
        per_task = {s.task_id for s in r.proxy.gets("MINIMAL")}
        assert per_task == {run.id for run in runs}


async def test_refresh_loop_ends_with_the_last_task_and_on_close(tmp_path: Path) -> None:
    async with rig(tmp_path, delay=3600) as r:
        backend = r.backend(on_close="leave")
        async with backend:
            await backend.submit(task("long"))
            await r.proxy.until(lambda: len(r.proxy.lists(backend.run_tag)) >= 2)
            source = backend._status
            assert source.refreshing  # type: ignore[attr-defined]
        assert not source.refreshing  # type: ignore[attr-defined]


@pytest.mark.parametrize("polling", ["auto", "per-task"])
async def test_test_mode_interval_is_honoured(tmp_path: Path, polling: str) -> None:
    import tesengine.testing

    async with rig(tmp_path, delay=0.05) as r, r.backend(interval=3600, polling=polling) as b:
        with tesengine.testing.testing():
            result = await asyncio.wait_for(await b.submit(task("fast")), 30)
    assert result.state is State.COMPLETE


async def test_failed_walk_falls_back_to_gets_for_that_tick(tmp_path: Path) -> None:
    async with rig(tmp_path, delay=0.3) as r:
        async with r.backend(retries=0) as backend:
            runs = [await backend.submit(task(f"t{i}")) for i in range(3)]
            await r.proxy.until(lambda: backend.polling == "batch")
            r.proxy.list_status = 503  # the server now fails every listing
            results = await asyncio.gather(*runs)
            assert backend.polling == "batch"  # a transient failure changes nothing for good
        assert all(result.state is State.COMPLETE for result in results)
        assert {s.task_id for s in r.proxy.gets("MINIMAL")} == {run.id for run in runs}


async def test_one_failed_walk_leaves_the_waiters_to_the_next(tmp_path: Path) -> None:
    """A listing that fails once costs no GET per task: the next walk answers them."""
    async with rig(tmp_path, delay=3600) as r, r.backend(retries=0) as backend:
        runs = [await backend.submit(task(f"t{i}")) for i in range(3)]
        await r.proxy.until(lambda: backend.polling == "batch")
        before = len(r.proxy.lists())
        r.proxy.list_status = 503
        await r.proxy.until(lambda: len(r.proxy.lists()) > before)  # that one is refused
        r.proxy.list_status = None
        after = len(r.proxy.lists())
        await r.proxy.until(lambda: len(r.proxy.lists()) >= after + 2)  # two walks since
        assert r.proxy.gets("MINIMAL") == []  # no poller asked on its own
        assert backend.polling == "batch" and all(not run.done() for run in runs)


async def test_a_known_state_keeps_the_waiter_asleep(tmp_path: Path) -> None:
    async with rig(tmp_path, delay=3600) as r, TesClient(r.url) as client:
        request = wire.TesTask(
            executors=[wire.Executor(image="alpine", command=["true"])], tags={RUN_TAG: "old"}
        )
        task_id = await client.create_task(request)
        source = BatchStatus(client)
        source.watch(task_id, "old")
        state = await source.next_state(task_id, 0.01, State.QUEUED)
        while state is not State.RUNNING:
            state = await source.next_state(task_id, 0.01, state)
        assert source.mode == "batch"
        asleep = asyncio.ensure_future(source.next_state(task_id, 0.01, State.RUNNING))
        walks = len(r.proxy.lists("old"))
        await r.proxy.until(lambda: len(r.proxy.lists("old")) >= walks + 3)
        assert not asleep.done()  # three walks saw RUNNING again: nothing to wake it for
        await source.aclose()
        await asyncio.wait([asleep])
        assert asleep.cancelled()
        assert not source.refreshing


async def test_page_size_refused_uses_the_servers_default(tmp_path: Path) -> None:
    async with rig(tmp_path, delay=0.1, max_page_size=1000) as r:
        async with r.backend() as backend:
            result = await (await backend.submit(task("t")))
            assert backend.polling == "batch"
        assert result.state is State.COMPLETE
        refused, *rest = [s for s in r.proxy.lists() if s.arg("view") == "MINIMAL"]
        assert refused.arg("page_size") == "2047"
        assert rest and all(s.arg("page_size") is None for s in rest)
        assert r.proxy.gets("MINIMAL") == []
